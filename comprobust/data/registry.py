"""The dataset registry: a name maps to its metadata (`DatasetSpec`) and to a reader of its files.

Adding a dataset is one `register_dataset(DatasetSpec(...), reader)` call; `reader(root, download)` returns a
`comprobust.data.sources.RawData` (uint8 `(N, C, H, W)` arrays and int labels).
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import TYPE_CHECKING, Callable, Mapping, Optional, Union

from comprobust.errors import UserError

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

    from comprobust.data.sources import RawData

SplitSize = Union[int, float, None]
"""A per-class split size: int count, float fraction in (0, 1], or None ("the rest" / "the whole set")."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the rest of comprobust needs to know about a dataset, before any file is read."""

    name: str
    num_classes: int
    channels: int  # 1 grey, 3 colour
    image_size: int  # square images
    mean: Optional[tuple[float, ...]]  # per channel, in [0, 1] units; None = computed from the train split
    std: Optional[tuple[float, ...]]
    crop_padding: int  # random crop with this zero padding (0 = no crop)
    hflip: bool  # random horizontal flip
    default_split_sizes: Mapping[str, SplitSize]  # per class: {"train": .., "valid": .., "test": ..}
    architecture: str  # "emnist" | "cifar" | "facescrub" | "small": which network family fits
    description: str  # one line for the README / `launch.py data list`
    official_test: bool  # True: test = an official test set; False: test is carved from the same pool
    class_names: Optional[tuple[str, ...]] = None
    how_to_get: str = ""  # one sentence on where the files go and how to obtain them

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_split_sizes", MappingProxyType(dict(self.default_split_sizes)))

    @property
    def augments(self) -> bool:
        """Whether the paper augments training images of this dataset (crop and/or flip)."""
        return self.crop_padding > 0 or self.hflip

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        return (self.channels, self.image_size, self.image_size)


Reader = Callable[["Path", bool], "RawData"]

_SPECS: dict[str, DatasetSpec] = {}
_READERS: dict[str, Reader] = {}


def register_dataset(spec: DatasetSpec, reader: Reader) -> DatasetSpec:
    """Make `spec.name` loadable with `load_dataset`; `reader(root, download)` returns its RawData."""
    if spec.name in _SPECS and _SPECS[spec.name] != spec:
        raise TypeError(f"a dataset named {spec.name!r} is already registered")
    if spec.channels not in (1, 3):
        raise TypeError(f"{spec.name}: channels must be 1 or 3, got {spec.channels}")
    if (spec.mean is None) != (spec.std is None):
        raise TypeError(f"{spec.name}: give both mean and std, or neither")
    if spec.mean is not None and (len(spec.mean) != spec.channels or len(spec.std or ()) != spec.channels):
        raise TypeError(f"{spec.name}: mean/std need one value per channel ({spec.channels})")
    _SPECS[spec.name] = spec
    _READERS[spec.name] = reader
    return spec


def dataset_names() -> list[str]:
    """Names of every registered dataset."""
    _ensure_builtin()
    return list(_SPECS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset `name`; a UserError lists the known names when it is unknown."""
    _ensure_builtin()
    if not isinstance(name, str) or name not in _SPECS:
        raise UserError(f"unknown dataset {name!r}; known datasets: {', '.join(_SPECS)}")
    return _SPECS[name]


def get_reader(name: str) -> Reader:
    """The reader registered for `name`."""
    get_dataset_spec(name)
    return _READERS[name]


def _ensure_builtin() -> None:
    from comprobust.data import sources  # noqa: F401  (registers the built-in datasets on import)
