"""glibc's malloc keeps what a step frees for the next step (nbgrad._core.malloc)."""
import os
import subprocess
import sys

import pytest

from conftest import child_env
from nbgrad._core import malloc

# Five 8 MB arrays made, written and freed, again and again (the arrays of a training step):
# the page faults of one round, after three rounds of warm-up.
ROUNDS = """
import resource, sys
import numpy as np
if sys.argv[1] == "nbgrad":
    import nbgrad
    from nbgrad._core import malloc
    print(malloc.applied)
else:
    print("None")
def round():
    arrays = [np.full(1 << 21, 1.0, np.float32) for _ in range(5)]
    del arrays
for _ in range(3):
    round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    round()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
"""

# The pages of one array. (Fewer faults than pages are possible: NumPy asks for huge pages
# for arrays this large. glibc alone faulted 2028 a round here, with its top pad set 2580.)
PAGES = (8 << 20) // 4096

glibc_only = pytest.mark.skipif(not malloc.applied and not malloc._user_tuned(os.environ),
                                reason="not glibc's malloc")


def faults_per_round(imports, **environ):
    env = {**child_env(), **environ}
    applied, faults = subprocess.run([sys.executable, "-c", ROUNDS, imports], env=env,
                                     capture_output=True, text=True, check=True,
                                     timeout=120).stdout.split()
    return applied, int(faults)


@glibc_only
def test_freed_arrays_are_reused_without_page_faults():
    applied, faults = faults_per_round("nbgrad")
    assert applied == "True" and faults < PAGES // 20


@glibc_only
def test_glibc_alone_faults_the_pages_in_every_round():
    # What the thresholds prevent (glibc maps or trims some of the 40 MB anew every round), so
    # that the test above can fail.
    assert faults_per_round("numpy")[1] > PAGES // 2


@glibc_only
def test_a_users_own_malloc_settings_are_kept():
    # MALLOC_TOP_PAD_ freezes glibc's thresholds at 128 KB: every array is mapped anew.
    applied, faults = faults_per_round("nbgrad", MALLOC_TOP_PAD_="131072")
    assert applied == "False" and faults > PAGES // 2
    assert malloc._user_tuned({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"})
    assert not malloc._user_tuned({"GLIBC_TUNABLES": "glibc.rtld.optional_static_tls=1"})
