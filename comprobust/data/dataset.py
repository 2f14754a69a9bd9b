"""`load_dataset`: a registered dataset read from disk, split per class, with its normalisation resolved; a cue
dataset (`comprobust.data.cue_datasets`) as a `CueDataset` that renders any condition."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch

from comprobust.data.cue_datasets import CUE_DATASETS, CueDatasetEntry
from comprobust.data.cue_parts import SplitParts
from comprobust.data.cues import Condition, CueModel
from comprobust.data.normalisation import cached_stats
from comprobust.data.registry import DatasetSpec, SplitSize, get_dataset_spec, get_reader
from comprobust.data.sources import RawData, cache_dir
from comprobust.data.splits import SPLITS, resolve_split_sizes, select_test, split_pool
from comprobust.errors import UserError


@dataclasses.dataclass
class ImageSplit:
    """One split: uint8 images `(N, C, H, W)`, int64 labels `(N,)`, in label order.

    `source_indices` are the images' positions in the pool (train/valid, carved test) or official test set
    they came from.
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    source_indices: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])


@dataclasses.dataclass
class LoadedDataset:
    """A dataset ready for the loaders: its spec, three splits and the resolved per-channel mean/std."""

    spec: DatasetSpec
    train: ImageSplit
    valid: ImageSplit
    test: ImageSplit
    mean: tuple[float, ...]
    std: tuple[float, ...]
    root: Path
    split_sizes: dict[str, SplitSize]

    def __post_init__(self) -> None:
        std = torch.tensor(self.std, dtype=torch.float32).view(1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, -1, 1, 1)
        self._scale = 1.0 / (255.0 * std)
        self._shift = -mean / std

    @property
    def name(self) -> str:
        return self.spec.name

    def split(self, name: str) -> ImageSplit:
        """The split called `name` ("train", "valid" or "test")."""
        if name not in SPLITS:
            raise UserError(f"unknown split {name!r}; use train, valid or test")
        return getattr(self, name)

    def normalize(self, batch: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """float32 `(x / 255 - mean) / std` of a uint8 (or float in 0..255) `(N, C, H, W)` batch."""
        if batch.dim() != 4 or batch.shape[1] != len(self.mean):
            raise UserError(
                f"normalize expects (N, {len(self.mean)}, H, W) batches for {self.spec.name}, got "
                f"{tuple(batch.shape)}"
            )
        result = batch.to(torch.float32, copy=True) if out is None else out.copy_(batch)
        return result.mul_(self._scale.to(result.device)).add_(self._shift.to(result.device))

    def denormalize(self, batch: torch.Tensor) -> torch.Tensor:
        """The inverse of `normalize`: float32 in 0..255."""
        return (batch - self._shift) / self._scale


@dataclasses.dataclass
class CueDataset(LoadedDataset):
    """A cue dataset: a `LoadedDataset` whose `train`, `valid` and `test` hold each split rendered under the
    natural condition (every cue at 1, seed 0, epoch 0; what code written for plain datasets sees), plus the
    source `parts` of each split, from which `batches` renders any condition."""

    parts: Mapping[str, SplitParts]
    entry: CueDatasetEntry

    @property
    def model(self) -> CueModel:
        """The mechanisms and named condition sets."""
        return self.entry.model

    def conditions(self, value: object) -> tuple[Condition, ...]:
        """`value` (a set name, a condition or a list of them) as conditions, checked."""
        return self.entry.conditions(value)

    def batches(
        self,
        split: str,
        condition: object,
        seed: int,
        epoch: int = 0,
        batch_size: int = 64,
        shuffle: bool = False,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(float32 images normalised as the spec says (x / 255 for dominoes), int64 labels) batches of `split`
        under `condition`; a pure function of (seed, epoch, split, index), shuffled by (seed, epoch)."""
        self.split(split)  # the message for an unknown split
        for images, labels in self.entry.batches(
            self.parts[split], condition, seed, epoch, batch_size, shuffle=shuffle, drop_last=drop_last
        ):
            yield self.normalize(torch.from_numpy(images)), torch.from_numpy(labels)


def _load_cue_dataset(
    entry: CueDatasetEntry, root: Path, sizes: dict[str, SplitSize], download: bool
) -> CueDataset:
    parts = entry.load(root, download, sizes)
    splits = {}
    for key, part in parts.items():
        natural = entry.render(part, np.arange(len(part)), entry.natural, seed=0, epoch=0)
        splits[key] = ImageSplit(
            key,
            torch.from_numpy(np.ascontiguousarray(natural.images)),
            torch.from_numpy(natural.labels),
            torch.from_numpy(part.sources),
        )
    spec = entry.spec
    assert spec.mean is not None and spec.std is not None
    return CueDataset(
        spec, splits["train"], splits["valid"], splits["test"], spec.mean, spec.std, root, sizes, parts, entry
    )


def load_dataset(
    name: str,
    root: str | os.PathLike = "data",
    split_sizes: Mapping[str, SplitSize] | None = None,
    download: bool = False,
) -> LoadedDataset:
    """Read dataset `name` under `root`, split it per class and resolve its normalisation.

    `split_sizes` overrides the spec's per-class sizes, e.g. {"train": 100, "valid": 20} or {"valid": 0.1}. A cue
    dataset (`comprobust.data.cue_datasets.CUE_DATASETS`) comes back as a `CueDataset`.
    """
    spec = get_dataset_spec(name)
    sizes = resolve_split_sizes(spec, split_sizes)  # checked before any file is read
    root = Path(root)
    if name in CUE_DATASETS:
        return _load_cue_dataset(CUE_DATASETS[name], root, sizes, download)
    raw = get_reader(name)(root, download)
    _check_raw(spec, raw)
    parts = split_pool(
        raw.pool_labels, spec.num_classes, sizes, carve_test=not spec.official_test, where=raw.where
    )
    splits = {key: _take(key, raw.pool_images, raw.pool_labels, idx) for key, idx in parts.items()}
    if spec.official_test:
        assert raw.test_images is not None and raw.test_labels is not None
        idx = select_test(
            raw.test_labels, spec.num_classes, sizes["test"], where=f"the official {name} test set"
        )
        splits["test"] = _take("test", raw.test_images, raw.test_labels, idx)
    if spec.mean is not None and spec.std is not None:
        mean, std = spec.mean, spec.std
    else:
        mean, std = cached_stats(splits["train"].images, splits["train"].labels, cache_dir(root, name), name)
    return LoadedDataset(spec, splits["train"], splits["valid"], splits["test"], mean, std, root, sizes)


def _take(name: str, images: np.ndarray, labels: np.ndarray, idx: np.ndarray) -> ImageSplit:
    order = np.sort(idx) if isinstance(images, np.memmap) else idx  # sequential reads from a memory map
    picked = np.ascontiguousarray(images[order])
    if order is not idx:
        picked = picked[np.searchsorted(order, idx)]
    return ImageSplit(
        name=name,
        images=torch.from_numpy(picked),
        labels=torch.from_numpy(np.ascontiguousarray(labels[idx], dtype=np.int64)),
        source_indices=torch.from_numpy(idx.astype(np.int64)),
    )


def _check_raw(spec: DatasetSpec, raw: RawData) -> None:
    pairs: list[tuple[str, np.ndarray | None, np.ndarray | None]] = [
        ("training pool", raw.pool_images, raw.pool_labels)
    ]
    if spec.official_test:
        pairs.append(("test set", raw.test_images, raw.test_labels))
    for what, images, labels in pairs:
        if images is None or labels is None:
            raise UserError(f"{spec.name}: the reader returned no {what}")
        if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != spec.image_shape:
            raise UserError(
                f"{spec.name}: the {what} ({raw.where}) has images {images.dtype} {tuple(images.shape)}, "
                f"expected uint8 (N, {', '.join(str(d) for d in spec.image_shape)})"
            )
        if len(labels) != len(images):
            raise UserError(f"{spec.name}: the {what} has {len(images)} images but {len(labels)} labels")
        if len(labels) and (labels.min() < 0 or labels.max() >= spec.num_classes):
            raise UserError(
                f"{spec.name}: the {what} ({raw.where}) has labels in {labels.min()}..{labels.max()}, "
                f"expected 0..{spec.num_classes - 1}"
            )
