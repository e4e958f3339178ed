"""Sampling with an explicit generator, as the lecture series does: torch's exact streams."""
import torch

g = torch.Generator().manual_seed(2147483647)
p = torch.rand(3, generator=g)
print(p)
p = p / p.sum()
print(torch.multinomial(p, num_samples=20, replacement=True, generator=g))
g = torch.Generator().manual_seed(2147483647)
print(torch.randn((3, 4), generator=g))
print(torch.randint(0, 10, (8,), generator=g), torch.randperm(6, generator=g))
