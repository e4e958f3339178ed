"""nbgrad.random: torch.random's names (the default generator's seeding and state, and
`fork_rng`)."""
import contextlib

from ._tensor.random import (Generator, default_generator, get_rng_state, initial_seed,  # noqa: F401
                             manual_seed, seed, set_rng_state)

__all__ = ["Generator", "default_generator", "manual_seed", "seed", "initial_seed",
           "get_rng_state", "set_rng_state", "fork_rng"]


@contextlib.contextmanager
def fork_rng(devices=None, enabled=True, device_type=None):
    """Restore the default generator's state when the block ends (there are no CUDA
    generators to fork)."""
    if not enabled:
        yield
        return
    state = get_rng_state()
    try:
        yield
    finally:
        set_rng_state(state)
