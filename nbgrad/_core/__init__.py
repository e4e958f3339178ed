"""The lowest layer: dtypes, threads, the generated-module cache, kernel helpers."""
from . import compile_gc  # noqa: F401  (registers its listener before anything compiles)
