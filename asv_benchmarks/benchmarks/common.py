"""Models, data and the training step shared by the eager and fused benchmarks."""
import numpy as np

import nbgrad
from nbgrad import nn


def mlp(sizes):
    """A ReLU MLP with the given layer widths."""
    layers = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def classification(batch, features, classes):
    """A fixed random batch: float32 features and int64 class labels."""
    rng = np.random.default_rng(0)
    x = nbgrad.tensor(rng.standard_normal((batch, features)).astype(np.float32))
    return x, nbgrad.tensor(rng.integers(0, classes, batch))


def train_step(model, loss_fn, optimizer):
    """The PyTorch training step: zero_grad, forward, loss, backward, optimizer step."""
    def step(x, y):
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return step
