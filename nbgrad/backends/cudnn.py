"""torch.backends.cudnn without cuDNN. `deterministic` and `benchmark` are the flags
reproducibility recipes set; they change nothing on the CPU, in nbgrad as in PyTorch."""
deterministic = False
benchmark = False
enabled = True
allow_tf32 = True


def is_available():
    return False
