"""Convolutions as a first-CNN tutorial uses them: Conv2d-ReLU-MaxPool2d twice, Flatten,
Linear, trained for a few steps past the point where nbgrad fuses the loop; the model's repr
and state_dict; F.conv2d with padding='same', a Conv1d, and a padding mode. Starting weights
come from a formula, so that every run prints the same numbers."""
import torch
import torch.nn as nn
import torch.nn.functional as F

model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Flatten(), nn.Linear(8 * 2 * 2, 3))
with torch.no_grad():
    for i, p in enumerate(model.parameters()):
        p.copy_(torch.cos(torch.arange(p.numel(), dtype=torch.float32) * (0.7 + 0.1 * i)).reshape(p.shape)
                / p[0].numel() ** 0.5)
print(model)
print({key: tuple(value.shape) for key, value in model.state_dict().items()})

optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for step in range(20):
    x = torch.sin(torch.arange(6 * 64, dtype=torch.float32) * (0.1 + 0.01 * step)).reshape(6, 1, 8, 8)
    y = torch.arange(6) % 3
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 5 == 4:
        print(f"step {step}: loss {loss.item():.4f}")

image = torch.linspace(-1.0, 1.0, 2 * 25).reshape(1, 2, 5, 5)
kernel = torch.linspace(-0.5, 0.5, 3 * 2 * 2 * 2).reshape(3, 2, 2, 2)
print(F.conv2d(image, kernel, padding="same").shape, F.conv2d(image, kernel, stride=2).sum().item() > 0)
conv1d = nn.Conv1d(2, 4, 3, stride=2, padding=1)
print(conv1d, tuple(conv1d(torch.ones(3, 2, 9)).shape))
print(nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect", groups=2))
