"""Where and how a model runs: device choice and the optional fast paths (bf16 autocast, channels_last).

Both options are off by default, so the default path is plain float32 and bit-for-bit the one the tests pin;
they are meant for GPUs (bf16 tensor cores, NHWC convolutions) and are tested on CPU for equivalence only.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


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
