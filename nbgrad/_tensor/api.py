"""The torch-level namespace of the Tensor layer: every function `nbgrad` exports
(`nbgrad.exp`, `nbgrad.cat`, `nbgrad.zeros`, ...), gathered from the modules that define
them. A family module's `__all__` is what it adds to `nbgrad`; its other public names
(`indexing.getitem`, `inplace.check_inplace`, ...) serve `methods` and sibling modules.
Importing this module installs the Tensor methods (see `methods`)."""
from . import arithmetic, conversion, factories, indexing, inplace, legacy, linalg, reductions, shape
from . import device as _device, random as _random, sampling as _sampling
from . import normalization
from . import pooling
from . import conv
from . import activation
from . import distance
from . import decompositions
from . import methods  # noqa: F401  (imported for its effect: installs the Tensor methods)
from .arithmetic import *  # noqa: F403
from .conversion import *  # noqa: F403
from .factories import *  # noqa: F403
from .format import set_printoptions
from .indexing import *  # noqa: F403
from .inplace import *  # noqa: F403
from .legacy import *  # noqa: F403
from .linalg import *  # noqa: F403
from .reductions import *  # noqa: F403
from .shape import *  # noqa: F403
from .device import *  # noqa: F403
from .random import *  # noqa: F403
from .sampling import *  # noqa: F403
from .normalization import *  # noqa: F403
from .conv import *  # noqa: F403
from .activation import *  # noqa: F403
from .distance import *  # noqa: F403
from .decompositions import *  # noqa: F403
from .out import with_out

# Functions that tutorials call with PyTorch's `out=` argument (the methods take none).
OUT_ARGUMENT = ("add", "sub", "subtract", "mul", "multiply", "div", "divide", "true_divide", "pow",
                "neg", "abs", "exp", "log", "sqrt", "sin", "cos", "tanh", "sigmoid", "clamp",
                "maximum", "minimum", "matmul", "mm", "bmm", "mv", "cat", "concat", "stack", "sum",
                "mean")
globals().update({name: with_out(globals()[name], name) for name in OUT_ARGUMENT})

__all__ = ["set_printoptions", *arithmetic.__all__, *reductions.__all__, *linalg.__all__, *shape.__all__,
           *indexing.__all__, *conversion.__all__, *inplace.__all__, *legacy.__all__, *factories.__all__,
           *_device.__all__, *_random.__all__, *_sampling.__all__, *normalization.__all__, *conv.__all__,
           *activation.__all__, *distance.__all__, *decompositions.__all__]
# torch's top-level pooling functions (torch.max_pool2d, ...) are not all F's (pooling.TORCH_LEVEL).
globals().update(pooling.TORCH_LEVEL)
__all__ += [*pooling.TORCH_LEVEL]
