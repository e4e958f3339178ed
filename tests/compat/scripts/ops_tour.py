"""The ops of teaching code, each once, with gradients where torch has them."""
import torch
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.linspace(-2.0, 2.0, 12).reshape(3, 4).requires_grad_()
p = torch.linspace(0.1, 3.0, 12).reshape(3, 4).requires_grad_()
ids = torch.tensor([[0, 2, 1, 3], [3, 3, 0, 1], [1, 0, 2, 2]])
pieces = [
    p.log10(), p.log2(), p.log1p(), x.expm1(), torch.erf(x), torch.atan2(x, p), x.sign() * x,
    torch.floor(x * 1.5) + x, torch.ceil(x * 1.5) + x, torch.round(x * 1.5) + x, torch.trunc(x * 1.5) + x,
    torch.remainder(x, 0.7), torch.fmod(x, 0.7), torch.nan_to_num(x / (x - x.detach()), posinf=5.0, neginf=-5.0),
    x.masked_fill(x > 1, 0.0), torch.gather(x, 1, ids), torch.index_select(x, 0, torch.tensor([2, 0])),
    torch.zeros(3, 4).scatter(1, ids[:, :2], p[:, :2]), torch.zeros(3, 4).scatter_add(1, ids, p),
    x.tril(), x.triu(1), torch.outer(x[0], p[1]), torch.einsum("ij,kj->ik", x, p), x.repeat(2, 1),
    x.tile((1, 2)), x.flip(0), x.roll(1, 1), x.cumsum(1), p.cumprod(1), x.sort(1).values,
    x.topk(2, dim=1).values, x.norm(), torch.linalg.norm(x), torch.linalg.vector_norm(x, ord=1, dim=1),
    torch.var_mean(x, 1)[0], torch.std_mean(x, 0)[1], x.sum(1, keepdims=True), x.mean(axis=0),
    F.gelu(x), F.silu(x), F.leaky_relu(x, 0.1), F.elu(x), F.hardtanh(x), F.softplus(x),
]
loss = sum(piece.sum() for piece in pieces)
loss.backward()
print(round(loss.item(), 3))
print(x.grad)
print(p.grad)
print(x.argsort(1), x.all(), (x > -3).all(1), (x > 1).any(), torch.isclose(x, x + 1e-9).all())
print(torch.isnan(x / 0.0).sum(), torch.isinf(x / 0.0).sum(), torch.histc(x.detach(), bins=4, min=-2, max=2))
print(torch.histogram(x.detach(), bins=3))
print(F.one_hot(torch.tensor([0, 2, 1]), num_classes=4), [t.shape for t in x.split([1, 3], 1)],
      [t.shape for t in x.chunk(2, 0)])
print(torch.tril(torch.ones(3, 3)), torch.triu(torch.ones(3, 3), diagonal=1))
