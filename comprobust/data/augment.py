"""Batched augmentation (random crop with zero padding + horizontal flip) and seeded random streams.

Everything random in the loaders comes from `generator(seed, epoch, stream)`, a pure function of its
arguments, so a run resumed at epoch k sees exactly the batches an uninterrupted run sees.
"""

from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F


def derive_seed(seed: int, epoch: int, stream: str) -> int:
    """A 63-bit integer that depends only on (seed, epoch, stream)."""
    entropy = [int(seed) & 0xFFFFFFFFFFFFFFFF, int(epoch) & 0xFFFFFFFFFFFFFFFF, zlib.crc32(stream.encode())]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> np.uint64(1))


def generator(seed: int, epoch: int, stream: str) -> torch.Generator:
    """A CPU torch.Generator seeded by (seed, epoch, stream)."""
    return torch.Generator().manual_seed(derive_seed(seed, epoch, stream))


@dataclasses.dataclass
class CropFlip:
    """Per-image random choices: crop offsets in the padded image and whether to flip."""

    top: torch.Tensor  # (B,) int64 in [0, 2 * padding]
    left: torch.Tensor
    flip: torch.Tensor  # (B,) bool


def draw_crop_flip(n: int, padding: int, hflip: bool, gen: torch.Generator) -> CropFlip:
    """Draw the crop offsets and flips for `n` images (top, left, then flip, each as one batched draw)."""
    top = torch.randint(0, 2 * padding + 1, (n,), generator=gen)
    left = torch.randint(0, 2 * padding + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5 if hflip else torch.zeros(n, dtype=torch.bool)
    return CropFlip(top, left, flip)


def apply_crop_flip(images: torch.Tensor, padding: int, draw: CropFlip | None) -> torch.Tensor:
    """Crop every image of `(B, C, H, W)` at its offset in the zero-padded image, then flip where drawn.

    Equivalent to torchvision's `pad(img, padding, fill=0)`, `crop(top, left, H, W)`, `hflip` per image, done
    as one gather on the whole batch (any dtype, on the images' device; the draw stays on the CPU).
    """
    if draw is None:
        return images
    b, c, h, w = images.shape
    padded = F.pad(images, (padding,) * 4) if padding else images
    width = w + 2 * padding
    rows = draw.top[:, None] + torch.arange(h)  # (B, H)
    cols = draw.left[:, None] + torch.arange(w)  # (B, W)
    cols = torch.where(draw.flip[:, None], cols.flip(1), cols)
    index = (rows[:, :, None] * width + cols[:, None, :]).view(b, 1, h * w).expand(b, c, h * w)
    return padded.reshape(b, c, -1).gather(2, index.to(images.device)).view(b, c, h, w)


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch ops single-threaded inside the block (restored after).

    Data preparation works on small tensors, where intra-op threads cost more in synchronisation than they
    gain; on a busy 2-core machine 2 threads made GaussianBlur/Swirl on a 36-image batch 10-100x slower than
    1 thread. Never hold this across a `yield`: the training step between batches keeps its own threads.
    """
    previous = torch.get_num_threads()
    if previous == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
