"""The lowest layer: dtypes, threads, the generated-module cache, kernel helpers."""
from . import compile_gc  # noqa: F401  (registers its listener before anything compiles)
from . import malloc  # noqa: F401  (sets glibc's thresholds before nbgrad allocates)
