"""The vision models the benchmarks time, written once against PyTorch's API so that the same
function builds them with nbgrad or with torch (`T` is the framework module).

- `resnet18(T)`: torchvision's ResNet-18 (BasicBlock, [2, 2, 2, 2]), layer for layer; the
  asv benchmarks use `nbgrad.models.resnet18` itself, compare.py this one for both sides.
- `digits_cnn(T)`: the small CNN of `python -m nbgrad.examples.digits --model cnn` on 8x8
  digits.
"""
import numpy as np


def _basic_block(T, in_planes, planes, stride):
    nn = T.nn

    class BasicBlock(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or in_planes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                                nn.BatchNorm2d(planes))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    return BasicBlock()


def resnet18(T, num_classes=1000):
    nn = T.nn
    layers = []
    in_planes = 64
    for planes, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers.append(nn.Sequential(_basic_block(T, in_planes, planes, stride),
                                    _basic_block(T, planes, planes, 1)))
        in_planes = planes
    return nn.Sequential(
        nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, 1), *layers, nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(),
        nn.Linear(512, num_classes))


def digits_cnn(T):
    nn = T.nn
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 10))


def images(batch, channels, size, classes, seed=0):
    """A fixed random batch of NCHW float32 images and int64 labels (NumPy arrays)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, channels, size, size)).astype(np.float32)
    return x, rng.integers(0, classes, batch).astype(np.int64)
