"""Dataset files in their real on-disk formats (IDX, CIFAR-10 pickles), with random pixels, for the loaders'
tests: torchvision's and comprobust's own readers open them exactly as they open the downloaded files."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> None:
    """An uncompressed IDX file (the MNIST/EMNIST/Fashion-MNIST format) of a uint8 array."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fake_emnist(root: Path, train_per_class: int = 6, test_per_class: int = 3, seed: int = 0) -> dict:
    """EMNIST-balanced IDX files (uncompressed, glyphs stored transposed like the real ones), shuffled order.

    Returns the UPRIGHT images and labels as the file order has them.
    """
    rng = np.random.default_rng(seed)
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for part, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(47), per_class)).astype(np.uint8)
        upright = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        write_idx(raw / f"emnist-balanced-{part}-images-idx3-ubyte", upright.transpose(0, 2, 1))
        write_idx(raw / f"emnist-balanced-{part}-labels-idx1-ubyte", labels)
        arrays[part] = (upright, labels.astype(np.int64))
    return arrays


def write_fake_cifar(
    root: Path, per_class_per_batch: int = 2, test_per_class: int = 3, seed: int = 0
) -> dict:
    """CIFAR-10 python pickles (5 data batches, test batch, batches.meta). Returns (N, 3, 32, 32) arrays."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = [(f"data_batch_{i}", per_class_per_batch) for i in range(1, 6)] + [
        ("test_batch", test_per_class)
    ]
    arrays: dict = {"train": ([], []), "test": ([], [])}
    for name, per_class in batches:
        labels = rng.permutation(np.repeat(np.arange(10), per_class))
        images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
        with open(folder / name, "wb") as handle:
            pickle.dump(
                {"data": images.reshape(len(labels), -1), "labels": labels.tolist()}, handle, protocol=2
            )
        part = "test" if name == "test_batch" else "train"
        arrays[part][0].append(images)
        arrays[part][1].append(labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump(
            {
                "label_names": [
                    "airplane",
                    "automobile",
                    "bird",
                    "cat",
                    "deer",
                    "dog",
                    "frog",
                    "horse",
                    "ship",
                    "truck",
                ]
            },
            handle,
            protocol=2,
        )
    return {
        part: (np.concatenate(images), np.concatenate(labels).astype(np.int64))
        for part, (images, labels) in arrays.items()
    }


def load_fake_cifar(root: Path):
    """The `cifar10` dataset through its real reader on `write_fake_cifar(root)`'s files (md5 check bypassed only
    while it loads): 8 train and 2 valid images per class, crop and flip on."""
    import pytest
    import torchvision.datasets.cifar

    from comprobust.data.dataset import load_dataset

    write_fake_cifar(root)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: Path(fpath).is_file()
        )
        return load_dataset("cifar10", root=root, split_sizes={"train": 8, "valid": 2})


def write_fake_fashion(root: Path, train_per_class: int = 15, test_per_class: int = 5) -> None:
    """Fashion-MNIST's four IDX files in torchvision's layout, random pixels, shuffled labels."""
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for part, per_class in (("train", train_per_class), ("t10k", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
        write_idx(
            raw / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        )
        write_idx(raw / f"{part}-labels-idx1-ubyte", labels)
