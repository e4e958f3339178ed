"""Vision: convolutions, ResNet-18 and the digits CNN.

- `Conv2d.time_forward` / `time_forward_backward`: F.conv2d at three ResNet-18 layer shapes
  (batch 8): the 7x7/2 stem on 3x64x64, a 3x3 64->64 layer on 16x16, a 3x3 256->256 layer
  on 4x4. The forward runs under no_grad; forward+backward seeds the output's gradient.
- `ResNet18.time_forward_backward`: nbgrad.models.resnet18, training mode, 8x3x64x64, the
  summed logits' backward; `time_inference`: eval mode under no_grad, one 3x224x224 image;
  `peakmem_forward_backward`: asv's peak resident memory of a process that runs it.
- `ResNet18Step.time_step`: a whole training step (CrossEntropyLoss, SGD with momentum),
  eager or compiled (its compile takes about 30 s: setup does it, outside the timing).
- `DigitsCNNStep.time_step`: the digits CNN (vision_models.digits_cnn), Adam, batch 64,
  eager or compiled.

setup() runs each step past `deferred.FUSE_AFTER` (eager) or a few times (compiled), so
compiling is never part of a timing.
"""
import numpy as np

import nbgrad
from nbgrad import models, nn, optim
from nbgrad.fuse import deferred

from .common import train_step
from .vision_models import digits_cnn, images

CONV_SHAPES = {
    "stem 7x7/2 3x64x64": (3, 64, 7, 2, 3, 64),
    "3x3 64x16x16": (64, 64, 3, 1, 1, 16),
    "3x3 256x4x4": (256, 256, 3, 1, 1, 4),
}


class Conv2d:
    params = [list(CONV_SHAPES)]
    param_names = ["layer"]

    def setup(self, layer):
        cin, cout, k, self.stride, self.padding, size = CONV_SHAPES[layer]
        rng = np.random.default_rng(0)
        self.x = nbgrad.tensor(rng.standard_normal((8, cin, size, size)).astype(np.float32),
                               requires_grad=True)
        self.w = nbgrad.tensor((rng.standard_normal((cout, cin, k, k)) * 0.1).astype(np.float32),
                               requires_grad=True)
        with nbgrad.no_grad():
            out = self._conv()
        self.g = nbgrad.tensor(rng.standard_normal(tuple(out.shape)).astype(np.float32))
        for _ in range(deferred.FUSE_AFTER + 1):
            self.time_forward_backward(layer)

    def _conv(self):
        return nn.functional.conv2d(self.x, self.w, stride=self.stride, padding=self.padding)

    def time_forward(self, layer):
        with nbgrad.no_grad():
            self._conv()

    def time_forward_backward(self, layer):
        self.x.grad = self.w.grad = None
        self._conv().backward(self.g)


class ResNet18:
    timeout = 300

    def setup(self):
        nbgrad.manual_seed(0)
        self.model = models.resnet18()
        self.x = nbgrad.tensor(images(8, 3, 64, 1000)[0])
        self.image = nbgrad.tensor(images(1, 3, 224, 1000)[0])
        for _ in range(deferred.FUSE_AFTER + 1):
            self.time_forward_backward()
        self.time_inference()

    def time_forward_backward(self):
        self.model.train()
        self.model.zero_grad()
        self.model(self.x).sum().backward()

    def time_inference(self):
        self.model.eval()
        with nbgrad.no_grad():
            self.model(self.image)

    def peakmem_forward_backward(self):
        self.time_forward_backward()


def _resnet_step():
    model = models.resnet18(num_classes=10)
    x, y = images(8, 3, 64, 10)
    optimizer = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return train_step(model, nn.CrossEntropyLoss(), optimizer), nbgrad.tensor(x), nbgrad.tensor(y)


def _cnn_step():
    model = digits_cnn(nbgrad)
    x, y = images(64, 1, 8, 10)
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    return train_step(model, nn.CrossEntropyLoss(), optimizer), nbgrad.tensor(x), nbgrad.tensor(y)


class _Step:
    params = [["eager", "compiled"]]
    param_names = ["mode"]
    timeout = 600

    def setup(self, mode):
        nbgrad.manual_seed(0)
        step, self.x, self.y = self.build()
        self.step = nbgrad.compile(step) if mode == "compiled" else step
        for _ in range(deferred.FUSE_AFTER + 1):
            self.step(self.x, self.y)

    def time_step(self, mode):
        self.step(self.x, self.y)


class ResNet18Step(_Step):
    build = staticmethod(_resnet_step)


class DigitsCNNStep(_Step):
    build = staticmethod(_cnn_step)
