"""The compile helper's process (nbgrad._core.compile_ahead): it reads calls described by
its parent, repeats each on stand-in arrays of the same shapes, dtypes and strides, and runs
its backward, so that the kernels are compiled into the shared cache. Values do not matter:
the stand-ins are zeros, and nothing is sent back."""
import pickle
import queue
import struct
import sys
import threading

import numpy as np

# NOTE: `python -m` imports the package `nbgrad` first, which registers every primitive.
from ..ops.primitive import PRIMITIVES
from .dispatch import dispatch
from .tensor import Tensor


def stand_in(shape, dtype, strides, writeable):
    """Zeros with exactly this layout (Numba specializes on contiguity and writeability)."""
    dtype = np.dtype(dtype)
    low = sum((n - 1) * s for n, s in zip(shape, strides) if s < 0 and n > 0)
    high = sum((n - 1) * s for n, s in zip(shape, strides) if s > 0 and n > 0)
    base = np.zeros((high - low) // dtype.itemsize + 1, dtype)
    return np.lib.stride_tricks.as_strided(base[-low // dtype.itemsize:], shape, strides,
                                           writeable=writeable)


def compile_backward(prim_name, grad_fn_name, layouts, params, needs):
    inputs = [Tensor._wrap(stand_in(*layout), requires_grad=need)
              for layout, need in zip(layouts, needs)]
    out = dispatch(PRIMITIVES[prim_name], inputs, params, grad_fn_name)
    out.backward(Tensor._wrap(np.zeros(out.shape, out._data.dtype)))


def _read(stream, requests):
    while len(header := stream.read(4)) == 4:
        requests.put(stream.read(struct.unpack("<I", header)[0]))
    requests.put(None)


def main():
    # NOTE: a thread reads the pipe at once, so the parent's writes never wait for a compile.
    requests = queue.Queue()
    threading.Thread(target=_read, args=(sys.stdin.buffer, requests), daemon=True).start()
    done = set()
    while (message := requests.get()) is not None:
        if message in done:
            continue
        done.add(message)
        try:
            compile_backward(*pickle.loads(message))
        except Exception:  # noqa: BLE001, S112 - the parent compiles it itself then
            continue


if __name__ == "__main__":
    main()
