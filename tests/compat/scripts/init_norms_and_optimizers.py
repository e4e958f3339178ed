"""Initializers, layers and optimizers as tutorials use them: a ViT-style head initialized by
trunc_normal_, a PPO-style policy by orthogonal_ (with gain sqrt(2)), a self-normalizing
(SELU) network with AlphaDropout, a style-transfer block with InstanceNorm2d, a Bilinear
layer, a weight-normalized convolution, each trained a few steps by Adadelta, Rprop, ASGD or
SGD under CyclicLR; and the random fills that samplers write into buffers."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
head = nn.Linear(8, 3)
nn.init.trunc_normal_(head.weight, std=0.02)
nn.init.zeros_(head.bias)
policy = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
for layer in policy:
    if isinstance(layer, nn.Linear):
        nn.init.orthogonal_(layer.weight, gain=math.sqrt(2))
        nn.init.constant_(layer.bias, 0.0)
print(head.weight[0], policy[0].weight.sum(), policy[2].weight @ policy[2].weight.T)

selu_net = nn.Sequential(nn.Linear(8, 16), nn.SELU(), nn.AlphaDropout(0.1), nn.Linear(16, 3))
style = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.InstanceNorm2d(4, affine=True),
                      nn.ReLU(), nn.LocalResponseNorm(2))
pair = nn.Bilinear(8, 8, 3)
conv = nn.utils.weight_norm(nn.Conv1d(2, 3, 3))
print(selu_net, style, pair, conv, sep="\n")

x = torch.linspace(-1.0, 1.0, 32).reshape(4, 8)
target = torch.tensor([0, 2, 1, 0])
runs = [(selu_net, lambda: selu_net(x), torch.optim.Adadelta),
        (style, lambda: style(x.reshape(4, 2, 2, 2)).mean((2, 3))[:, :3], torch.optim.Rprop),
        (pair, lambda: pair(x, x.flip(0)), torch.optim.ASGD),
        (conv, lambda: conv(x.reshape(4, 2, 4)).flatten(1)[:, :3], torch.optim.SGD)]
for model, forward, make in runs:
    optimizer = make(model.parameters(), lr=0.05) if make is not torch.optim.SGD else \
        make(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CyclicLR(optimizer, 0.01, 0.1, step_size_up=3) \
        if make is torch.optim.SGD else None
    for step in range(6):
        loss = F.cross_entropy(forward(), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    print(type(optimizer).__name__, f"{loss.item():.5f}", scheduler and scheduler.get_last_lr())
nn.utils.remove_weight_norm(conv)
print(sorted(name for name, _ in conv.named_parameters()))

torch.manual_seed(1)
print(torch.empty(4).exponential_(), torch.empty(4).cauchy_(), torch.empty(3).log_normal_(),
      torch.empty(3).geometric_(0.4))
grid = torch.zeros(3, 3)
grid.fill_diagonal_(1.0).index_put_((torch.tensor([0, 0]), torch.tensor([2, 2])),
                                    torch.tensor([0.5, 0.25]), accumulate=True)
print(grid.tril_(1), grid.unsqueeze_(0).shape, grid.nbytes)
