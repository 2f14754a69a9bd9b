"""Per-channel normalisation: the paper's constants where it has them, else stats of the clean train split.

Computed statistics are cached as `normalisation-<hash>.json` under the dataset's cache folder, keyed by the
SHA-256 of the train split (images and labels), so a different split never reuses stale numbers.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError


def split_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of a split's uint8 images and int64 labels (shape included)."""
    digest = hashlib.sha256()
    digest.update(repr((tuple(images.shape), str(images.dtype), tuple(labels.shape))).encode())
    digest.update(images.contiguous().numpy().data.cast("B"))
    digest.update(labels.to(torch.int64).contiguous().numpy().data.cast("B"))
    return digest.hexdigest()


def channel_stats(images: torch.Tensor, chunk: int = 8192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and population std over N*H*W of uint8 `(N, C, H, W)` images, in [0, 1] units."""
    if images.shape[0] == 0:
        raise UserError(
            "cannot compute normalisation statistics of an empty train split; enlarge split_sizes"
        )
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    squares = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].to(torch.float64) / 255.0
        total += block.sum(dim=(0, 2, 3))
        squares += (block * block).sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    var = (squares / count - mean * mean).clamp_min(0.0)
    return tuple(float(m) for m in mean), tuple(float(math.sqrt(v)) for v in var)


def cached_stats(
    images: torch.Tensor, labels: torch.Tensor, cache_dir: Path, dataset: str
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std of the train split, read from or written to `cache_dir` (a corrupt cache is a UserError)."""
    digest = split_digest(images, labels)
    path = Path(cache_dir) / f"normalisation-{digest[:16]}.json"
    channels = images.shape[1]
    if path.exists():
        try:
            record = json.loads(path.read_text())
            mean, std = tuple(map(float, record["mean"])), tuple(map(float, record["std"]))
            ok = record["train_sha256"] == digest and len(mean) == len(std) == channels and min(std) > 0
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(
                f"normalisation cache {path} is unreadable ({err}); delete it to recompute"
            ) from err
        if not ok:
            raise UserError(
                f"normalisation cache {path} does not match the train split; delete it to recompute"
            )
        return mean, std
    mean, std = channel_stats(images)
    if min(std) <= 0:
        raise UserError(f"{dataset}: the train split has a constant channel (std 0); it cannot be normalised")
    record = {
        "dataset": dataset,
        "train_sha256": digest,
        "count": int(images.shape[0]),
        "mean": mean,
        "std": std,
    }
    try:
        atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    except OSError:  # a read-only data folder: the numbers are cheap to recompute next time
        pass
    return mean, std
