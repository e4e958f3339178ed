"""Data that torchvision's weights carry in their `meta`: the 1000 ImageNet-1K class names.

`imagenet_categories.txt` holds one name a line, in class-index order: the list
`_IMAGENET_CATEGORIES` of torchvision 0.28.0 (torchvision/models/_meta.py; torchvision is
BSD 3-Clause licensed, Copyright (c) Soumith Chintala 2016), written out unchanged.
"""
from importlib import resources

IMAGENET_CATEGORIES = resources.files(__package__).joinpath(
    "imagenet_categories.txt").read_text(encoding="utf-8").splitlines()
