"""ResNet (He et al., "Deep Residual Learning for Image Recognition", 2015) built as
torchvision builds it: the same modules under the same names in the same order (conv1, bn1,
relu, maxpool, layer1..layer4 of blocks with a `downsample` Sequential, avgpool, fc) and the same
initialization, so that `state_dict()` has torchvision's keys, shapes and order and its
checkpoints load as they are.
"""
from functools import partial

from .. import nn
from .._tensor.shape import flatten
from ._api import Weights, WeightsEnum, handle_legacy_interface, overwrite_named_param
from ._meta import IMAGENET_CATEGORIES
from ._presets import ImageClassification

__all__ = ["ResNet", "BasicBlock", "Bottleneck", "ResNet18_Weights", "ResNet34_Weights",
           "resnet18", "resnet34"]


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    """A 3x3 convolution that keeps the spatial size at stride 1 (padding = dilation)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation,
                     groups=groups, bias=False, dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm, added to the input (or to `downsample(input)`
    where the block changes the shape), then ReLU."""

    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        # The first convolution and `downsample` both take the stride.
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        # Modules run in torchvision's order (forward hooks see it): downsample last.
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 (reduce), 3x3 (carries the stride, as torchvision's "ResNet V1.5"), 1x1 (expand by
    4), each with batch norm, added to the input (or `downsample(input)`), then ReLU."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, groups=1, base_width=64,
                 dilation=1, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += x if self.downsample is None else self.downsample(x)
        return self.relu(out)


class ResNet(nn.Module):
    """A 7x7/2 stem with max pooling, four stages of `layers[i]` blocks (64, 128, 256, 512
    planes; stages 2-4 halve the resolution, or dilate instead where
    `replace_stride_with_dilation` says so), global average pooling and a linear classifier.

    Convolutions start from kaiming_normal_ (fan_out, relu), norm layers from weight 1, bias 0;
    with `zero_init_residual` the last norm layer of each block starts at weight 0, so that each
    block starts as the identity."""

    def __init__(self, block, layers, num_classes=1000, zero_init_residual=False, groups=1,
                 width_per_group=64, replace_stride_with_dilation=None, norm_layer=None):
        super().__init__()
        if norm_layer is None:
            norm_layer = nn.BatchNorm2d
        self._norm_layer = norm_layer
        self.inplanes = 64
        self.dilation = 1
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("replace_stride_with_dilation should be None or a 3-element tuple, "
                             f"got {replace_stride_with_dilation}")
        self.groups = groups
        self.base_width = width_per_group
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2,
                                       dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2,
                                       dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2,
                                       dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
        if zero_init_residual:
            for module in self.modules():
                last_norm = {Bottleneck: "bn3", BasicBlock: "bn2"}.get(type(module))
                if last_norm is not None and getattr(module, last_norm).weight is not None:
                    nn.init.constant_(getattr(module, last_norm).weight, 0)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        """One stage: its first block changes the resolution and width (with a 1x1
        convolution and a norm layer as `downsample` for the identity path), the rest keep it."""
        norm_layer = self._norm_layer
        downsample = None
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                                       norm_layer(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample, self.groups, self.base_width,
                        previous_dilation, norm_layer)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups,
                                base_width=self.base_width, dilation=self.dilation,
                                norm_layer=norm_layer))
        return nn.Sequential(*layers)

    def _forward_impl(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(flatten(self.avgpool(x), 1))

    def forward(self, x):
        return self._forward_impl(x)


def _resnet(block, layers, weights, progress, **kwargs):
    if weights is None:
        return ResNet(block, layers, **kwargs)
    overwrite_named_param(kwargs, "num_classes", len(weights.meta["categories"]))
    # Read before building: a missing file is reported at once, not after the initialization
    # (which still runs, as in torchvision: it draws from the generator as torch's does).
    state_dict = weights.get_state_dict(progress=progress, check_hash=True)
    model = ResNet(block, layers, **kwargs)
    model.load_state_dict(state_dict)
    return model


# What torchvision publishes about each checkpoint (torchvision/models/resnet.py).
_COMMON_META = {"min_size": (1, 1), "categories": IMAGENET_CATEGORIES}
_RECIPE = "https://github.com/pytorch/vision/tree/main/references/classification#resnet"
_DOCS = "These weights reproduce closely the results of the paper using a simple training recipe."


def _imagenet1k_v1(url, num_params, acc1, acc5, ops, file_size):
    """One of torchvision's original ImageNet-1K ResNet checkpoints, evaluated at 224x224
    center crops, with what torchvision publishes about it."""
    return Weights(url=url, transforms=partial(ImageClassification, crop_size=224),
                   meta={**_COMMON_META, "num_params": num_params, "recipe": _RECIPE,
                         "_metrics": {"ImageNet-1K": {"acc@1": acc1, "acc@5": acc5}},
                         "_ops": ops, "_file_size": file_size, "_docs": _DOCS})


class ResNet18_Weights(WeightsEnum):
    IMAGENET1K_V1 = _imagenet1k_v1("https://download.pytorch.org/models/resnet18-f37072fd.pth",
                                   11689512, 69.758, 89.078, 1.814, 44.661)
    DEFAULT = IMAGENET1K_V1


class ResNet34_Weights(WeightsEnum):
    IMAGENET1K_V1 = _imagenet1k_v1("https://download.pytorch.org/models/resnet34-b627a593.pth",
                                   21797672, 73.314, 91.420, 3.664, 83.275)
    DEFAULT = IMAGENET1K_V1


@handle_legacy_interface(ResNet18_Weights.IMAGENET1K_V1)
def resnet18(*, weights=None, progress=True, **kwargs):
    """ResNet-18: BasicBlocks in stages of [2, 2, 2, 2]. `weights` (a `ResNet18_Weights` member
    or its name) loads that checkpoint from PyTorch's hub cache; other keyword arguments go to
    `ResNet` (num_classes, zero_init_residual, norm_layer, ...)."""
    weights = ResNet18_Weights.verify(weights)
    return _resnet(BasicBlock, [2, 2, 2, 2], weights, progress, **kwargs)


@handle_legacy_interface(ResNet34_Weights.IMAGENET1K_V1)
def resnet34(*, weights=None, progress=True, **kwargs):
    """ResNet-34: BasicBlocks in stages of [3, 4, 6, 3]; arguments as `resnet18`."""
    weights = ResNet34_Weights.verify(weights)
    return _resnet(BasicBlock, [3, 4, 6, 3], weights, progress, **kwargs)
