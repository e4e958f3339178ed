"""torch.linalg as tutorials use it: closed-form linear regression (normal equations, lstsq,
pinv), PCA through the SVD, whitening through eigh, and a Gaussian process whose length scale
is fitted by the gradient of its log marginal likelihood (cholesky, solve, slogdet). What is
printed does not depend on the signs of singular vectors or eigenvectors, which are LAPACK's
choice. Data come from formulas, so every run prints the same."""
import math

import torch

torch.set_printoptions(precision=4)
X = torch.stack([torch.linspace(-1.0, 1.0, 20), torch.linspace(0.0, 2.0, 20) ** 2,
                 torch.sin(torch.linspace(0.0, 6.0, 20))], 1).double()
y = X @ torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64) + 0.1 * torch.cos(
    torch.arange(20, dtype=torch.float64))

# ---- linear regression in closed form
design = torch.cat([X, torch.ones(20, 1, dtype=torch.float64)], 1)
normal = torch.linalg.solve(design.T @ design, design.T @ y)
fit = torch.linalg.lstsq(design, y.unsqueeze(1))
print("normal equations", normal)
print("lstsq", fit.solution.squeeze(1), "rank", fit.rank)
print("pinv", torch.linalg.pinv(design) @ y)
print("condition", torch.linalg.svdvals(design).max() / torch.linalg.svdvals(design).min())

# ---- PCA: the variance along each principal axis, and the data's rank-2 reconstruction
centered = X - X.mean(0)
U, S, Vh = torch.linalg.svd(centered, full_matrices=False)
print("explained variance", S ** 2 / (len(X) - 1))
print("ratio", S ** 2 / (S ** 2).sum())
projected = centered @ Vh[:2].T
print("reconstruction error", torch.linalg.norm(centered - projected @ Vh[:2]))
print("rank", torch.linalg.matrix_rank(centered), torch.linalg.matrix_rank(projected @ Vh[:2]))

# ---- whitening: covariance^(-1/2) from eigh
cov = centered.T @ centered / (len(X) - 1)
values, vectors = torch.linalg.eigh(cov)
whitened = centered @ vectors @ torch.diag(values.rsqrt()) @ vectors.T
print("eigenvalues", values)
identity = torch.eye(3, dtype=torch.float64)
print("whitened covariance", torch.dist(whitened.T @ whitened / (len(X) - 1), identity) < 1e-8)
print("det", torch.linalg.det(cov), torch.logdet(cov), torch.linalg.slogdet(cov).sign)

# ---- a Gaussian process: the length scale by gradient ascent on the marginal likelihood
t = torch.linspace(0.0, 5.0, 15, dtype=torch.float64)
target = torch.sin(t) + 0.05 * torch.cos(7 * t)
log_scale = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
optimizer = torch.optim.Adam([log_scale], lr=0.05)
for step in range(30):
    scale = log_scale.exp()
    K = torch.exp(-0.5 * (t[:, None] - t[None, :]) ** 2 / scale ** 2) + 1e-2 * torch.eye(15)
    L = torch.linalg.cholesky(K)
    alpha = torch.linalg.solve(K, target)
    nll = 0.5 * target @ alpha + torch.log(torch.diagonal(L)).sum() + 7.5 * math.log(2 * math.pi)
    optimizer.zero_grad()
    nll.backward()
    optimizer.step()
    if step % 10 == 9:
        logdet_gap = (torch.logdet(K) - 2 * torch.log(torch.diagonal(L)).sum()).abs().item()
        print(f"step {step}: nll {nll.item():.5f}, scale {scale.item():.5f}, "
              f"logdet from cholesky {logdet_gap < 1e-9}")
K_inv = torch.linalg.inv(K.detach())
print("inverse", torch.dist(K_inv @ K.detach(), torch.eye(15, dtype=torch.float64)) < 1e-8)
mean = K.detach()[:3] @ torch.linalg.solve(K.detach(), target)
print("posterior mean", mean)
print(type(L.grad_fn).__name__, type(torch.linalg.inv(K).grad_fn).__name__)
