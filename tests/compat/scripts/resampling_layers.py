"""Padding, resizing and channel dropout as tutorials use them: a small image model with
ReflectionPad2d, Upsample and Dropout2d trained for a few steps past the point where nbgrad
would fuse the loop, then eval; F.pad in each mode; an image resized as torchvision's Resize
does (bilinear, antialias). Starting weights come from a formula, so that every run prints
the same numbers."""
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
model = nn.Sequential(nn.ReflectionPad2d(1), nn.Upsample(scale_factor=2, mode="bilinear"),
                      nn.Dropout2d(0.25), nn.Flatten(), nn.Linear(2 * 8 * 10, 3))
with torch.no_grad():
    model[-1].weight.copy_(torch.linspace(-0.1, 0.1, 480).reshape(3, 160))
    model[-1].bias.zero_()
print(model)

optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
for step in range(20):
    x = torch.linspace(-1.0, 1.0, 4 * 2 * 2 * 3).reshape(4, 2, 2, 3) * (1 + 0.1 * step)
    loss = F.cross_entropy(model(x), torch.arange(4) % 3)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 5 == 4:
        print(f"step {step}: loss {loss.item():.5f}")
model.eval()
with torch.no_grad():
    print("eval", model(torch.ones(1, 2, 2, 3)))

image = torch.arange(24.0).reshape(1, 2, 3, 4)
for mode in ("constant", "reflect", "replicate", "circular"):
    print(mode, F.pad(image, (1, 2, 1, 0), mode=mode)[0, 0])
print(F.pad(image, (1, 1), value=-1.0).shape)
resized = F.interpolate(torch.linspace(0.0, 1.0, 3 * 9 * 11).reshape(1, 3, 9, 11), size=(4, 5),
                        mode="bilinear", antialias=True)
print(resized[0, 0])
print(F.interpolate(image, scale_factor=1.5)[0, 1])
