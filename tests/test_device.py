"""The process-wide allocator setting the corruption engine makes on its first CPU batch."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from comprobust.device import keep_freed_memory

FAULTS = """
import resource, sys, numpy as np
from comprobust.device import keep_freed_memory
z = np.ones(392_000, np.uint64)
def faults():  # two 3 MB arrays, freed together: glibc trims them and the next round faults them back in
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        a = z + np.uint64(1)
        np.right_shift(a, np.uint64(3), out=np.empty_like(a))
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
faults()
if sys.argv[1] == "keep":
    assert keep_freed_memory()
faults()
print(faults())
"""


def _page_faults(setting: str) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS, setting], capture_output=True, text=True, check=True)
    return int(out.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_freed_batches_are_reused_instead_of_faulted_back_in() -> None:
    assert _page_faults("keep") < 100 <= _page_faults("default")  # ~15,000 with glibc's defaults


def test_keep_freed_memory_is_done_once() -> None:
    assert keep_freed_memory() is keep_freed_memory()
