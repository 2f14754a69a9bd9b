"""Where and how a model runs: device choice, the optional fast paths (bf16 autocast, channels_last) and the
process's allocator.

Both options are off by default, so the default path is plain float32 and bit-for-bit the one the tests pin;
they are meant for GPUs (bf16 tensor cores, NHWC convolutions) and are tested on CPU for equivalence only.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from dataclasses import dataclass

import torch
from torch import nn

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


@functools.cache
def keep_freed_memory() -> bool:
    """Have glibc keep freed memory for reuse instead of handing it back to the kernel; True where it took.

    By default glibc maps each block of a few MB afresh and trims its heap once a few MB are free, so a batch
    tensor freed and allocated again (the corruption engine does so hundreds of times a call) is faulted back
    in page by page, about 5 us a page on a virtual machine: 10-15% of the engine's time at one thread. With
    blocks up to 64 MB served from the heap and up to 256 MB of freed memory kept, they are reused instead.
    Process-wide and done once; nothing where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 64 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 256 << 20))


def best_device() -> torch.device:
    """CUDA when present, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Precision:
    """Optional speed-ups of the forward/backward passes: bf16 autocast and channels_last memory format."""

    bf16: bool = False
    channels_last: bool = False

    def prepare(self, model: nn.Module) -> nn.Module:
        """`model` in the chosen memory format (in place, as `Module.to` does)."""
        return model.to(memory_format=torch.channels_last) if self.channels_last else model

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """A 4-D image batch in the chosen memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bf16 autocast on `device` when enabled, else a no-op context."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


FP32 = Precision()
"""The default: float32, contiguous (the exact path)."""
