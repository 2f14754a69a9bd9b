"""Batched, in-process loaders for the methods (no DataLoader workers).

- `MixedElementalLoader` (ERM): batches drawn from the union of the elemental sets (Identity and the six
  elementals, each image with one fixed noise draw, as the paper's generated datasets have), augmented after
  corruption as in the paper's ERM pipeline. The sets are made in memory when the loader is built: they are a
  pure function of (split, corruption, noise seed), a few seconds of corruption at the paper's scale.
- `PairedViewLoader` (Contrastive, modules, auto-encoders): the same images under each view, with identical
  crop/flip applied to the clean image before corrupting, and fresh noise every epoch. Given a `device` (the
  stages pass their training device when it is not the CPU), it moves each batch's uint8 images there and crops,
  corrupts and normalises them on it, so a GPU never waits for CPU corruption; on the CPU (the default) it runs
  single-threaded, as it always did.

All randomness comes from `augment.generator(seed, epoch, stream)`: `batches(epoch)` is a pure function of the
loader's arguments and `epoch`, so a resumed run sees the batches an uninterrupted run sees. Train loaders
drop the last incomplete batch (as the paper does); valid/test loaders keep it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from comprobust.corruptions import ELEMENTALS, composition_name, corrupt_batch
from comprobust.data.augment import apply_crop_flip, derive_seed, draw_crop_flip, generator, single_threaded
from comprobust.data.dataset import ImageSplit, LoadedDataset
from comprobust.errors import UserError

ELEMENTAL_SETS: tuple[str, ...] = ("Identity",) + ELEMENTALS
"""The training domains of the paper's monolithic methods: Identity and the six elementals."""
ELEMENTAL_NOISE_SEED = 1234
"""Noise seed of the elemental sets (the reference's `np.random.seed(1234)`)."""


def elemental_set(
    split: ImageSplit, corruption: str, seed: int = ELEMENTAL_NOISE_SEED, chunk_size: int = 2048
) -> np.ndarray:
    """The split's images under `corruption` as one uint8 array; noise fixed by (seed, corruption, position)."""
    if not len(split):
        return split.images.numpy()
    chunks = []
    for start in range(0, len(split), chunk_size):
        block = split.images[start : start + chunk_size]
        with single_threaded():
            chunks.append(
                corrupt_batch(block, corruption, seed=seed, indices=np.arange(start, start + len(block)))
            )
    return torch.cat(chunks).numpy()


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {batch_size!r}")
    return batch_size


def _num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else math.ceil(n / batch_size)


class _Loader:
    def __init__(
        self,
        data: LoadedDataset,
        split: str,
        batch_size: int,
        seed: int,
        augment: bool | None,
        shuffle: bool | None,
        drop_last: bool | None,
    ) -> None:
        self.data = data
        self.split_name = split
        self.split: ImageSplit = data.split(split)
        self.batch_size = _check_batch_size(batch_size)
        self.seed = int(seed)
        is_train = split == "train"
        self.shuffle = is_train if shuffle is None else bool(shuffle)
        self.drop_last = is_train if drop_last is None else bool(drop_last)
        self.augment = bool(augment) and data.spec.augments

    def _order(self, n: int, epoch: int) -> torch.Tensor:
        if self.shuffle:
            return torch.randperm(n, generator=generator(self.seed, epoch, "order"))
        return torch.arange(n)

    def _augmenter(self, epoch: int):
        """A function (B,C,H,W) -> (B,C,H,W) drawing crop/flip from the (seed, epoch) stream, or identity."""
        if not self.augment:
            return lambda images: images
        gen = generator(self.seed, epoch, "augment")
        spec = self.data.spec

        def augment(images: torch.Tensor) -> torch.Tensor:
            draw = draw_crop_flip(images.shape[0], spec.crop_padding, spec.hflip, gen)
            return apply_crop_flip(images, spec.crop_padding, draw)

        return augment


class MixedElementalLoader(_Loader):
    """ERM batches mixing the split under every corruption in `corruptions` (default Identity + 6 elementals).

    The sets are made in memory with `noise_seed` (see `elemental_set`). `augment` None means the paper's choice
    (train: crop/flip after corruption for CIFAR/FaceScrub; valid/test: none). `.batches(epoch)` yields (x
    float32 normalised (B, C, H, W), y int64 (B,)).
    """

    def __init__(
        self,
        data: LoadedDataset,
        split: str = "train",
        corruptions: Sequence[str] = ELEMENTAL_SETS,
        batch_size: int = 256,
        seed: int = 0,
        augment: bool | None = None,
        shuffle: bool | None = None,
        drop_last: bool | None = None,
        noise_seed: int = ELEMENTAL_NOISE_SEED,
    ) -> None:
        super().__init__(
            data,
            split,
            batch_size,
            seed,
            split == "train" if augment is None else augment,
            shuffle,
            drop_last,
        )
        self.corruptions = tuple(composition_name(c) for c in corruptions)
        if not self.corruptions:
            raise UserError("MixedElementalLoader needs at least one corruption")
        self.arrays = [elemental_set(self.split, name, noise_seed) for name in self.corruptions]
        self.noise_seed = noise_seed
        self.labels = self.split.labels
        self.num_images = len(self.split) * len(self.corruptions)

    def __len__(self) -> int:
        return _num_batches(self.num_images, self.batch_size, self.drop_last)

    def batches(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        order = self._order(self.num_images, epoch).numpy()
        augment = self._augmenter(epoch)
        for b in range(len(self)):
            flat = order[b * self.batch_size : (b + 1) * self.batch_size]
            which, image = np.divmod(flat, n)
            with single_threaded():
                batch = torch.empty((len(flat), *self.data.spec.image_shape), dtype=torch.uint8)
                for k in np.unique(which):
                    positions = np.flatnonzero(which == k)
                    batch[torch.from_numpy(positions)] = torch.from_numpy(self.arrays[k][image[positions]])
                x = self.data.normalize(augment(batch))
            yield x, self.labels[torch.from_numpy(image)]


class PairedViewLoader(_Loader):
    """The same images under each of `views`, identical crop/flip (drawn once, applied to the clean image
    before corrupting), fresh noise every epoch. `batch_size` counts images per view.

    `.batches(epoch)` yields (x float32 normalised (V, B, C, H, W) in `views` order, y int64 (B,)). `augment`
    applies to valid too (the paper augments validation of the paired methods).

    `device` (default: the CPU) is where the views are made: each batch's uint8 images are moved there (the
    crop/flip draws, the order and the noise keys stay on the CPU) and cropped, corrupted and normalised on it,
    so x is on `device` and y on the CPU. On the CPU this runs single-threaded, as it always did; on a GPU the
    images and the noise are the same, and the float corruptions agree with the CPU's to the engine's tolerance
    (its kernels round differently).
    """

    def __init__(
        self,
        data: LoadedDataset,
        split: str = "train",
        views: Sequence[str] = ("Contrast", "Identity"),
        batch_size: int = 128,
        seed: int = 0,
        augment: bool = True,
        shuffle: bool | None = None,
        drop_last: bool | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(data, split, batch_size, seed, augment, shuffle, drop_last)
        self.views = tuple(composition_name(v) for v in views)
        if not self.views:
            raise UserError("PairedViewLoader needs at least one view")
        self.device = torch.device("cpu" if device is None else device)

    def __len__(self) -> int:
        return _num_batches(len(self.split), self.batch_size, self.drop_last)

    def batches(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._order(len(self.split), epoch)
        augment = self._augmenter(epoch)
        noise_seed = derive_seed(self.seed, epoch, "noise")
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            with single_threaded() if self.device.type == "cpu" else contextlib.nullcontext():
                out = self._views(self.split.images[idx].to(self.device), idx, augment, noise_seed)
            yield out, self.split.labels[idx]

    def _views(self, images: torch.Tensor, idx: torch.Tensor, augment, noise_seed: int) -> torch.Tensor:
        """The normalised (V, B, C, H, W) views of one batch of uint8 `images`, on their device."""
        clean = augment(images)
        out = torch.empty((len(self.views), *clean.shape), dtype=torch.float32, device=images.device)
        for v, view in enumerate(self.views):
            corrupted = (
                clean
                if view == "Identity"
                else corrupt_batch(clean, view, seed=noise_seed, indices=idx.numpy())
            )
            self.data.normalize(corrupted, out=out[v])
        return out
