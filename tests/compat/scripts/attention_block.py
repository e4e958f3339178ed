"""A small transformer-style model as the lecture series builds it: heads in a ModuleList, a
causal mask through masked_fill, GELU/LeakyReLU/ELU feed-forward layers, a ModuleDict of
heads, a ParameterList of scales and nn.Unflatten; trained for a few steps, with starting
weights set from a formula, so that every run prints the same numbers. Then the elementwise
math of tutorials on a few values."""
import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
T, C, HEADS = 6, 8, 2


class Head(nn.Module):
    def __init__(self, size):
        super().__init__()
        self.key = nn.Linear(C, size, bias=False)
        self.query = nn.Linear(C, size, bias=False)
        self.value = nn.Linear(C, size, bias=False)
        self.register_buffer("tril", torch.tril(torch.ones(T, T)))

    def forward(self, x):
        k, q = self.key(x), self.query(x)
        wei = q @ k.transpose(-2, -1) * k.shape[-1] ** -0.5
        wei = wei.masked_fill(self.tril[:T, :T] == 0, float("-inf"))
        return F.softmax(wei, dim=-1) @ self.value(x)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = nn.ModuleList([Head(C // HEADS) for _ in range(HEADS)])
        self.ffwd = nn.Sequential(nn.Linear(C, 2 * C), nn.GELU(), nn.Linear(2 * C, C),
                                  nn.LeakyReLU(0.1), nn.Linear(C, C), nn.ELU(alpha=0.5))
        self.outputs = nn.ModuleDict({"mean": nn.Linear(C, 1), "spread": nn.Linear(C, 1)})
        self.scales = nn.ParameterList([nn.Parameter(torch.ones(C)) for _ in range(2)])
        self.unflatten = nn.Unflatten(1, (T, C))

    def forward(self, flat):
        x = self.unflatten(flat)
        x = x + torch.cat([h(x) for h in self.heads], dim=-1) * self.scales[0]
        x = x + self.ffwd(x) * self.scales[1]
        return self.outputs["mean"](x).squeeze(-1), F.silu(self.outputs["spread"](x)).squeeze(-1)


model = Block()
with torch.no_grad():
    for p in model.parameters():
        p.copy_(torch.linspace(-0.4, 0.5, p.numel()).reshape(p.shape).sin())
print(model)
print([name for name, _ in model.named_parameters()])
print(list(model.state_dict())[-4:])

x = torch.linspace(-1, 1, 3 * T * C).reshape(3, T * C).cos()
target = torch.linspace(0, 1, 3 * T).reshape(3, T)
optimizer = torch.optim.SGD(model.parameters(), lr=0.002)
for step in range(5):
    mean, spread = model(x)
    loss = F.mse_loss(mean, target) + spread.abs().mean()
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    print(f"step {step}: loss {loss.item():.5f}")

v = torch.tensor([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, float("nan"), float("inf")])
print(v.floor(), v.ceil(), v.round(), v.trunc(), torch.round(v * 1.234, decimals=1))
print(v.sign(), torch.nan_to_num(v), v.isnan(), torch.isinf(v), v.isfinite())
print(v % 2, torch.fmod(v, 2), torch.remainder(v, -1.5), torch.atan2(v, torch.ones(8)))
print(torch.log10(v.abs() + 1), torch.log2(v.abs() + 1), torch.erf(v), torch.log1p(v.abs()))
i = torch.arange(-3, 5)
print(i % 3, i ^ 2, i & 3, ~i, i.floor(), torch.isclose(v, v + 1e-6))
print(F.hardtanh(v), F.relu6(v * 3), F.leaky_relu(v), F.gelu(v[:6], approximate="tanh"))
print(nn.Hardtanh(-2.0, 2.0), nn.ReLU(inplace=True), nn.GELU(approximate="tanh"), nn.SiLU())
