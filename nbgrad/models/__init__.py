"""nbgrad.models: torchvision's model zoo over nbgrad.nn (`torchvision.models`' names).

`resnet18(weights=ResNet18_Weights.DEFAULT)` builds torchvision's ResNet-18 and loads its
checkpoint from PyTorch's hub cache (nothing is downloaded); `weights.transforms()` is the
preprocessing the weights expect and `weights.meta["categories"]` the class names.
"""
from ._api import Weights, WeightsEnum, get_weight
from ._presets import ImageClassification, InterpolationMode
from .resnet import (BasicBlock, Bottleneck, ResNet, ResNet18_Weights, ResNet34_Weights, resnet18,
                     resnet34)

__all__ = ["Weights", "WeightsEnum", "get_weight", "ImageClassification", "InterpolationMode",
           "ResNet", "BasicBlock", "Bottleneck", "ResNet18_Weights", "ResNet34_Weights",
           "resnet18", "resnet34"]
