"""Time per eager training step (zero_grad, forward, loss, backward, optimizer step).

- digits_mlp: the demo's 64-128-10 ReLU MLP, CrossEntropyLoss, Adam, batch 64;
- mlp_784: a 784-512-512-10 ReLU MLP, CrossEntropyLoss, SGD, batch 128, random data;
- one_parameter: the tutorial loop w * x, MSELoss, SGD(lr=0.01) on 5 elements.

setup() runs `deferred.FUSE_AFTER + 1` steps, so kernel compilation (or cache loading) is
never part of a timing: from then on eager mode runs each step's forward and backward as one
fused kernel (nbgrad.fuse.deferred), and the optimizer step as one kernel per parameter.
"""

import nbgrad
from nbgrad.fuse import deferred
from nbgrad import nn, optim

from .common import classification, mlp


def _digits_mlp():
    model = mlp((64, 128, 10))
    return model, nn.CrossEntropyLoss(), optim.Adam(model.parameters(), lr=1e-3), \
        classification(64, 64, 10)


def _mlp_784():
    model = mlp((784, 512, 512, 10))
    return model, nn.CrossEntropyLoss(), optim.SGD(model.parameters(), lr=0.01), \
        classification(128, 784, 10)


def _one_parameter():
    w = nbgrad.tensor(0.0, requires_grad=True)
    x = nbgrad.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    return (lambda inputs: w * inputs), nn.MSELoss(), optim.SGD([w], lr=0.01), (x, 2 * x)


WORKLOADS = {"digits_mlp": _digits_mlp, "mlp_784": _mlp_784, "one_parameter": _one_parameter}


class TrainingStep:
    params = [list(WORKLOADS)]
    param_names = ["workload"]

    def setup(self, workload):
        nbgrad.manual_seed(0)
        self.model, self.loss_fn, self.optimizer, (self.x, self.y) = WORKLOADS[workload]()
        for _ in range(deferred.FUSE_AFTER + 1):
            self.time_step(workload)

    def time_step(self, workload):
        self.optimizer.zero_grad()
        loss = self.loss_fn(self.model(self.x), self.y)
        loss.backward()
        self.optimizer.step()
