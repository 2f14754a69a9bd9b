"""Cue datasets by name: each one's metadata (`DatasetSpec`, registered in `comprobust.data.registry` like every
dataset's), its mechanisms and conditions (`CueModel`), its geometry and its loader. Light: no torch (configs
check conditions against `CUE_DATASETS.require(name).model`).

`comprobust.data.dataset.load_dataset(name, ...)` returns a `CueDataset` for these names: a `LoadedDataset` whose
plain splits hold the images under the natural condition (every cue at 1), plus `batches(split, condition, ...)`,
which renders any condition as float tensors, a pure function of (seed, epoch, split, index).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from comprobust.data import dominoes
from comprobust.data.cues import Condition, CueModel
from comprobust.data.registry import DatasetSpec, SplitSize, get_dataset_spec
from comprobust.registry import Registry

PartsLoader = Callable[[Path, bool, Mapping[str, SplitSize]], dict[str, dominoes.SplitParts]]
"""(root, download, resolved per-class split sizes) -> the train, valid and test parts (numpy)."""


@dataclasses.dataclass(frozen=True)
class CueDatasetEntry:
    """A cue dataset: its spec, cue model, layout and parts loader, and how it renders a condition."""

    spec: DatasetSpec
    model: CueModel
    layout: dominoes.Layout
    load: PartsLoader
    natural: str = "IAB"  # the condition of the plain splits (`CueDataset.train` etc.): every cue at 1
    pattern: Literal["random", "mandelbrot"] = "random"  # the box pattern (the published heatmaps' default)
    box_randomise: Literal["class", "position"] = "class"

    @property
    def name(self) -> str:
        return self.spec.name

    def condition(self, value: object) -> Condition:
        """One condition (letters, percent settings, a mapping); a one-line UserError otherwise."""
        return self.model.parse(value)

    def conditions(self, value: object) -> tuple[Condition, ...]:
        """A list of conditions or a set name (`exhaustive`, ...), in order."""
        return self.model.conditions(value)

    def render(
        self, parts: dominoes.SplitParts, indices: np.ndarray, condition: object, seed: int, epoch: int = 0
    ) -> dominoes.Rendered:
        """Images `indices` of a split under `condition` (uint8, (N, C, H, W))."""
        return dominoes.render(
            parts,
            indices,
            self.condition(condition),
            seed,
            epoch,
            layout=self.layout,
            pattern=self.pattern,
            box_randomise=self.box_randomise,
        )

    def batches(
        self,
        parts: dominoes.SplitParts,
        condition: object,
        seed: int,
        epoch: int = 0,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """uint8 image and int64 label batches of a split under `condition` (see `dominoes.batches`)."""
        return dominoes.batches(
            parts,
            self.condition(condition),
            seed,
            epoch,
            batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            layout=self.layout,
            pattern=self.pattern,
            box_randomise=self.box_randomise,
        )


def _load_dominoes(
    root: Path, download: bool, sizes: Mapping[str, SplitSize]
) -> dict[str, dominoes.SplitParts]:
    return dominoes.load_dominoes(root, download, sizes)


def _load_dominoes_cifar(
    root: Path, download: bool, sizes: Mapping[str, SplitSize]
) -> dict[str, dominoes.SplitParts]:
    return dominoes.load_dominoes_cifar(root, download, sizes)


CUE_DATASETS: Registry[CueDatasetEntry] = Registry("cue dataset")
"""Every cue dataset `load_dataset` renders (their specs are in `comprobust.data.registry.DATASETS` too)."""
CUE_DATASETS.add(
    "dominoes",
    CueDatasetEntry(get_dataset_spec("dominoes"), dominoes.CUE_MODEL, dominoes.DOMINOES, _load_dominoes),
)
CUE_DATASETS.add(
    "dominoes-cifar",
    CueDatasetEntry(
        get_dataset_spec("dominoes-cifar"),
        CueModel("dominoes-cifar", dominoes.MECHANISMS, dominoes.NUM_CLASSES),
        dominoes.DOMINOES_CIFAR,
        _load_dominoes_cifar,
    ),
)


def is_cue_dataset(name: str) -> bool:
    """Whether `name` is a cue dataset (trained and tested under conditions, not corruptions)."""
    return name in CUE_DATASETS
