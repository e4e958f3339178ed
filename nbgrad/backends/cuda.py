"""torch.backends.cuda without CUDA: the flags training scripts set (`matmul.allow_tf32`),
with PyTorch's defaults; they change nothing on the CPU."""
import types

matmul = types.SimpleNamespace(allow_tf32=False, allow_fp16_reduced_precision_reduction=True,
                               allow_bf16_reduced_precision_reduction=True)


def is_built():
    return False
