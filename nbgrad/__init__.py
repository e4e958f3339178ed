"""nbgrad: reverse-mode automatic differentiation with PyTorch's API and Numba kernels."""
from ._version import __version__  # noqa: F401

from ._core.dtype import dtype, float32, float64, int64, bool_ as bool  # noqa: E402
from ._core.dtype import uint8, int8, int16, int32, float16, bfloat16  # noqa: E402
from ._tensor.tensor import Tensor, Size  # noqa: E402
from .autograd import no_grad, enable_grad, set_grad_enabled, is_grad_enabled, inference_mode  # noqa: E402
from . import autograd  # noqa: E402
from .autograd.anomaly_mode import is_anomaly_enabled, is_anomaly_check_nan_enabled  # noqa: E402,F401
from ._tensor.api import *  # noqa: E402,F401,F403
from ._tensor.api import abs, max, min, sum, pow  # noqa: E402,F401  (shadow builtins on purpose)

float = float32
double = float64
long = int64
int = int32
short = int16
half = float16
from ._core.dtype import get_default_dtype, set_default_dtype  # noqa: E402,F401
from ._core.threads import set_num_threads, get_num_threads  # noqa: E402,F401
from . import nn, optim, data, utils, linalg, special, cuda, backends, accelerator, random  # noqa: E402,F401
from . import distributions  # noqa: E402,F401
from .fuse import compile  # noqa: E402,F401
from . import profiler  # noqa: E402,F401
from .serialization import save, load  # noqa: E402,F401
