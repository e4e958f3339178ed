"""Normalization layers as tutorials use them: an MLP with BatchNorm1d trained for a few
steps past the point where nbgrad fuses the loop (the running statistics must follow), then
eval; the state_dict's keys and buffers; LayerNorm and GroupNorm on a batch. Starting weights
come from a formula, so that every run prints the same numbers."""
import torch
import torch.nn as nn
import torch.nn.functional as F

model = nn.Sequential(nn.Linear(4, 6, bias=False), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 3))
with torch.no_grad():
    for i, p in enumerate(model.parameters()):
        p.copy_(torch.linspace(-1.0, 1.0, p.numel()).reshape(p.shape) * (0.5 + 0.1 * i))
print(model)

optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(20):
    x = torch.linspace(-2.0, 2.0, 32).reshape(8, 4) * (1 + 0.05 * step) + 0.1 * step
    y = torch.arange(8) % 3
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    if step % 5 == 4:
        print(f"step {step}: loss {loss.item():.5f}")

bn = model[1]
print("running_mean", bn.running_mean)
print("running_var", bn.running_var)
print("num_batches_tracked", bn.num_batches_tracked)
print({key: (tuple(value.shape), value.dtype) for key, value in model.state_dict().items()})

model.eval()
with torch.no_grad():
    print("eval", model(torch.linspace(-1.0, 1.0, 8).reshape(2, 4)))

batch = torch.linspace(-3.0, 3.0, 24).reshape(2, 4, 3)
print(nn.LayerNorm(3)(batch)[1])
print(nn.GroupNorm(2, 4)(batch)[0])
print(F.layer_norm(batch, (4, 3))[1, 0])
