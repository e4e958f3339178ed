"""The version, in a module of its own: the lowest layer (the kernel cache) reads it."""
__version__ = "0.1.0"
