"""torch.backends.mps on a machine without Apple's Metal backend."""


def is_available():
    return False


def is_built():
    return False
