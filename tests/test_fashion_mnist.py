"""Fashion-MNIST from tiny IDX files written in the real format: torchvision's layout (plain and gzipped), the
Debian package's folder, and the errors for missing, truncated and foreign files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from comprobust.data import fashion_mnist
from comprobust.data.registry import get_dataset_spec, get_reader
from comprobust.data.sources import missing_files
from comprobust.errors import UserError


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding: magic 0 0 8 ndim, big-endian uint32 sizes, then the uint8 data row-major."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def write_set(folder: Path, gz: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Four IDX files (5 train, 3 test images) in `folder`; returns what they hold."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (5, 28, 28)),
        "train-labels-idx1-ubyte": np.array([0, 9, 3, 3, 1]),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (3, 28, 28)),
        "t10k-labels-idx1-ubyte": np.array([7, 2, 0]),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        data = idx_bytes(array)
        (folder / (f"{name}.gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


@pytest.fixture
def no_debian(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    folder = tmp_path / "debian"
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", folder)
    return folder


@pytest.mark.parametrize("gz", [False, True])
def test_reads_torchvisions_layout_upright_plain_or_gzipped(
    tmp_path: Path, no_debian: Path, gz: bool
) -> None:
    arrays = write_set(tmp_path / "FashionMNIST" / "raw", gz)
    raw = get_reader("fashion-mnist")(tmp_path, False)
    assert raw.pool_images.shape == (5, 1, 28, 28) and raw.pool_images.dtype == np.uint8
    np.testing.assert_array_equal(raw.pool_images[:, 0], arrays["train-images-idx3-ubyte"])  # not transposed
    np.testing.assert_array_equal(raw.pool_labels, [0, 9, 3, 3, 1])
    np.testing.assert_array_equal(raw.test_images[:, 0], arrays["t10k-images-idx3-ubyte"])
    assert raw.test_labels.tolist() == [7, 2, 0] and missing_files("fashion-mnist", tmp_path) == []
    spec = get_dataset_spec("fashion-mnist")
    assert (spec.num_classes, spec.architecture, spec.mean, spec.official_test) == (
        10,
        "emnist",
        (0.5,),
        True,
    )


def test_falls_back_to_the_debian_package_folder(tmp_path: Path, no_debian: Path) -> None:
    arrays = write_set(no_debian, gz=True, seed=1)  # the Debian package ships the .gz files
    raw = get_reader("fashion-mnist")(tmp_path / "elsewhere", False)
    np.testing.assert_array_equal(raw.pool_images[:, 0], arrays["train-images-idx3-ubyte"])
    assert str(no_debian) in raw.where


def test_missing_truncated_and_foreign_files_are_named(tmp_path: Path, no_debian: Path) -> None:
    assert len(missing_files("fashion-mnist", tmp_path)) == 4
    with pytest.raises(
        UserError, match="Fashion-MNIST not found: looked for .*train-images-idx3-ubyte.*--download"
    ):
        get_reader("fashion-mnist")(tmp_path, False)
    folder = tmp_path / "FashionMNIST" / "raw"
    write_set(folder, gz=False)
    images = folder / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(
        UserError, match=r"train-images-idx3-ubyte is truncated or corrupt.*announces 5 items"
    ):
        get_reader("fashion-mnist")(tmp_path, False)
    images.write_bytes(idx_bytes(np.zeros((5, 32, 32))))
    with pytest.raises(UserError, match=r"holds items of shape \(32, 32\), expected \(28, 28\)"):
        get_reader("fashion-mnist")(tmp_path, False)
