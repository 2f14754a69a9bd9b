"""Per-class train/valid/test splits, as the paper makes them, with configurable sizes.

The pool of every class is taken in a stable sort by label (so the result never depends on the sort
algorithm); the FIRST `train` images of each class go to train, the LAST `valid` to valid. When the dataset
has no official test set, the last `test` images of each class go to test and valid takes the `valid` images
just before them (the paper's FaceScrub split). Sizes are ints (counts) or floats in (0, 1] (fractions of the
class: rounded up for valid/test as in the paper's `ceil(0.1 * count)`, down for train); train=None means "all
the rest", and test=None on a dataset with an official test set means "the whole official test set".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

from comprobust.data.registry import DatasetSpec, SplitSize
from comprobust.errors import UserError

if TYPE_CHECKING:  # numpy is imported where splits are drawn: checking split sizes needs none of it
    import numpy as np

SPLITS = ("train", "valid", "test")


def resolve_split_sizes(
    spec: DatasetSpec, split_sizes: Mapping[str, SplitSize] | None
) -> dict[str, SplitSize]:
    """The spec's default sizes overridden by `split_sizes`, checked (UserError names a bad key/value)."""
    if split_sizes is not None and not isinstance(split_sizes, Mapping):
        raise UserError(
            f"split_sizes must be a mapping like {{'train': 300, 'valid': 100}}, got "
            f"{type(split_sizes).__name__}"
        )
    sizes: dict[str, SplitSize] = dict(spec.default_split_sizes)
    for key, value in (split_sizes or {}).items():
        if key not in SPLITS:
            raise UserError(f"split_sizes: unknown split {key!r}; use train, valid and test")
        sizes[key] = value
    for key in SPLITS:
        value = sizes.get(key)
        if value == "rest":
            value = sizes[key] = None
        if value is None:
            if key == "valid" or (key == "test" and not spec.official_test):
                raise UserError(
                    f"split_sizes: {key} of {spec.name} needs a per-class count or a fraction, got None"
                )
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(
                f"split_sizes: {key}={value!r} must be an int count or a float fraction in (0, 1]"
            )
        if isinstance(value, int) and value < 0:
            raise UserError(f"split_sizes: {key}={value} must be >= 0")
        if isinstance(value, float) and not 0.0 < value <= 1.0:
            raise UserError(f"split_sizes: {key}={value} is a fraction and must be in (0, 1]")
    return sizes


def _count(value: SplitSize, available: int, round_up: bool) -> int:
    if isinstance(value, float):
        return math.ceil(value * available) if round_up else math.floor(value * available)
    return int(value)  # type: ignore[arg-type]


def split_pool(
    labels: np.ndarray,
    num_classes: int,
    sizes: Mapping[str, SplitSize],
    carve_test: bool,
    where: str,
) -> dict[str, np.ndarray]:
    """Indices into the pool for train, valid (and test when `carve_test`), each in label order.

    `where` names the data in error messages (e.g. "the official EMNIST training set in data/EMNIST/raw").
    """
    import numpy as np

    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    bounds = np.searchsorted(sorted_labels, np.arange(num_classes + 1))
    parts: dict[str, list[np.ndarray]] = {"train": [], "valid": []}
    if carve_test:
        parts["test"] = []
    for label in range(num_classes):
        members = order[bounds[label] : bounds[label + 1]]
        n = len(members)
        n_test = _count(sizes["test"], n, round_up=True) if carve_test else 0
        n_valid = _count(sizes["valid"], n, round_up=True)
        n_train = (
            n - n_valid - n_test if sizes["train"] is None else _count(sizes["train"], n, round_up=False)
        )
        if n_train < 0 or n_train + n_valid + n_test > n:
            asked = f"train={n_train if sizes['train'] is not None else 'rest'} + valid={n_valid}"
            asked += f" + test={n_test}" if carve_test else ""
            raise UserError(
                f"split_sizes: class {label} has {n} images in {where}, but {asked} are asked for; "
                "lower the sizes (per-class counts or fractions)"
            )
        parts["train"].append(members[:n_train])
        parts["valid"].append(members[n - n_test - n_valid : n - n_test])
        if carve_test:
            parts["test"].append(members[n - n_test :])
    return {key: np.concatenate(chunks).astype(np.int64) for key, chunks in parts.items()}


def select_test(labels: np.ndarray, num_classes: int, size: SplitSize, where: str) -> np.ndarray:
    """Indices of an official test set in label order: all of it (size None) or the first `size` per class."""
    import numpy as np

    labels = np.asarray(labels)
    order = np.argsort(labels, kind="stable")
    if size is None:
        return order.astype(np.int64)
    sorted_labels = labels[order]
    bounds = np.searchsorted(sorted_labels, np.arange(num_classes + 1))
    chunks = []
    for label in range(num_classes):
        members = order[bounds[label] : bounds[label + 1]]
        k = _count(size, len(members), round_up=True)
        if k > len(members):
            raise UserError(
                f"split_sizes: class {label} has {len(members)} images in {where}, but test={k} are asked "
                "for; lower the test size or leave it unset for the whole test set"
            )
        chunks.append(members[:k])
    return np.concatenate(chunks).astype(np.int64)
