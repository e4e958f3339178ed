"""Pretrained weights as torchvision names them (`ResNet18_Weights.DEFAULT`, `get_weight`,
`weights=` and the deprecated `pretrained=`), read from PyTorch's hub cache and never downloaded.

A `WeightsEnum` member stands for one checkpoint file that torchvision publishes. Its
`get_state_dict()` reads that file from where `torch.hub` keeps it
(`$TORCH_HOME/hub/checkpoints/<name from the url>`, TORCH_HOME defaulting to
`$XDG_CACHE_HOME/torch`, else `~/.cache/torch`) with `nbgrad.load(..., weights_only=True)`; so
a checkpoint that torchvision downloaded once serves nbgrad too. Where the file is missing, the
error says which file, where to put it and where to get it.
"""
import enum
import functools
import os
import warnings
from dataclasses import dataclass
from typing import Any, Callable
from urllib.parse import urlparse

from ..serialization import load

__all__ = ["Weights", "WeightsEnum", "get_weight"]


@dataclass(frozen=True)
class Weights:
    """One published checkpoint: where torchvision serves it, the preprocessing its model was
    trained with (a callable that makes the transform), and facts about it (`categories`,
    `num_params`, metrics, ...)."""

    url: str
    transforms: Callable
    meta: dict

    # NOTE: an Enum compares its values to tell members from aliases; a dict is unhashable,
    # so the dataclass must not be hashed by its fields.
    __hash__ = object.__hash__


class WeightsEnum(enum.Enum):
    """The parent of every model's weights enum (`ResNet18_Weights`): its members are `Weights`,
    and `DEFAULT` is an alias of the recommended one."""

    @classmethod
    def verify(cls, obj):
        """`obj` as a member of this enum: None stays None, a member name ("IMAGENET1K_V1" or
        "ResNet18_Weights.IMAGENET1K_V1") is looked up, a member of another enum is an error."""
        if obj is None:
            return None
        if type(obj) is str:
            return cls[obj.replace(cls.__name__ + ".", "")]
        if not isinstance(obj, cls):
            raise TypeError(f"Invalid Weight class provided; expected {cls.__name__} but "
                            f"received {obj.__class__.__name__}.")
        return obj

    def get_state_dict(self, progress=True, check_hash=False):
        """The checkpoint's state dict, read from the hub cache (see `checkpoint_path`).

        `progress` and `check_hash` are torchvision's arguments for a download; as in
        `torch.hub` for a file already in the cache, neither changes anything here (torch checks
        the hash only of a file it has just downloaded, and nbgrad downloads nothing)."""
        path = checkpoint_path(self.url)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{self!r} needs the checkpoint file {path}, which does not exist. nbgrad never "
                f"downloads: get the file from {self.url} (for example `curl -L -o {path} "
                f"{self.url}`, or load the weights once with torchvision, which caches it there) "
                f"and put it in {os.path.dirname(path)} (PyTorch's hub cache: "
                "$TORCH_HOME/hub/checkpoints, TORCH_HOME defaulting to $XDG_CACHE_HOME/torch, "
                "else ~/.cache/torch).")
        return load(path, weights_only=True)

    def __repr__(self):
        return f"{self.__class__.__name__}.{self._name_}"

    @property
    def url(self):
        return self.value.url

    @property
    def transforms(self):
        return self.value.transforms

    @property
    def meta(self):
        return self.value.meta


def torch_home():
    """PyTorch's cache root, found as `torch.hub` finds it."""
    cache = os.getenv("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    return os.path.expanduser(os.getenv("TORCH_HOME", os.path.join(cache, "torch")))


def checkpoint_path(url):
    """Where `torch.hub.load_state_dict_from_url(url)` keeps the file it downloads."""
    return os.path.join(torch_home(), "hub", "checkpoints", os.path.basename(urlparse(url).path))


def get_weight(name):
    """A weights enum member by its full name, "ResNet18_Weights.IMAGENET1K_V1"."""
    try:
        enum_name, value_name = name.split(".")
    except ValueError:
        raise ValueError(f"Invalid weight name provided: '{name}'.") from None
    for weights_enum in WeightsEnum.__subclasses__():
        if weights_enum.__name__ == enum_name:
            return weights_enum[value_name]
    raise ValueError(f"The weight enum '{enum_name}' for the specific method couldn't be "
                     "retrieved.")


def overwrite_named_param(kwargs, param, new_value):
    """Set `kwargs[param]`, which the caller may have given only with the same value (a model
    built for pretrained weights has the checkpoint's number of classes)."""
    if param in kwargs and kwargs[param] != new_value:
        raise ValueError(f"The parameter '{param}' expected value {new_value} but got "
                         f"{kwargs[param]} instead.")
    kwargs[param] = new_value


class _NotGiven:
    """The type of `_NOT_GIVEN`: an argument that was not passed (None is a valid value)."""


_NOT_GIVEN = _NotGiven()


def handle_legacy_interface(pretrained_weights):
    """A model builder `builder(*, weights=None, progress=True, **kwargs)` that also takes
    torchvision's older forms, with its deprecation warnings: `pretrained=True` (the weights
    `pretrained_weights`) or `pretrained=False` (None), and `weights`/`progress` by position
    (a boolean first argument is the old `pretrained`)."""
    def decorate(builder):
        @functools.wraps(builder)
        def build(*args: Any, **kwargs: Any):
            if args:
                named = dict(zip(("weights", "progress"), args))
                if len(args) > len(named):
                    raise TypeError(f"{builder.__name__}() takes at most 2 positional arguments "
                                    f"({len(args)} given)")
                warnings.warn(f"Using {' and '.join(repr(name) for name in named)} as positional "
                              "parameter(s) is deprecated since 0.13 and may be removed in the "
                              "future. Please use keyword parameter(s) instead.", stacklevel=2)
                kwargs.update(named)
            weights = kwargs.get("weights", _NOT_GIVEN)
            by_keyword = "pretrained" in kwargs and weights is _NOT_GIVEN
            # NOTE: as torchvision, a `weights` that is no enum member, name or None is the old
            # `pretrained` flag given by position (or by the new name).
            by_position = not isinstance(weights, (WeightsEnum, str, type(None), _NotGiven))
            if by_keyword or by_position:
                pretrained = kwargs.pop("pretrained") if by_keyword else kwargs.pop("weights")
                if by_keyword:
                    warnings.warn("The parameter 'pretrained' is deprecated since 0.13 and may be "
                                  "removed in the future, please use 'weights' instead.",
                                  stacklevel=2)
                chosen = pretrained_weights if pretrained else None
                message = ("Arguments other than a weight enum or `None` for 'weights' are "
                           "deprecated since 0.13 and may be removed in the future. The current "
                           f"behavior is equivalent to passing `weights={chosen}`.")
                if pretrained:
                    message += (f" You can also use `weights={type(chosen).__name__}.DEFAULT` to "
                                "get the most up-to-date weights.")
                warnings.warn(message, stacklevel=2)
                kwargs["weights"] = chosen
            return builder(**kwargs)
        return build
    return decorate
