"""The lowest layer: dtypes, threads, the generated-module cache, kernel helpers."""
