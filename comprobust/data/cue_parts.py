"""What the cue datasets (`dominoes`, `texture_digits`) share: one split's source images paired with their halves
(`SplitParts`, `build_parts`), a rendered batch (`Rendered`) and drawing an item of a given class
(`items_of_class`). Pure numpy; every cue dataset here has `NUM_CLASSES` classes."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from comprobust.data.cues import class_ranks
from comprobust.data.splits import select_test, split_pool
from comprobust.errors import UserError

NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class SplitParts:
    """One split's source images: the base items (I) in split order and the split's pool of halves (B)."""

    name: str  # "train", "valid" or "test": the split, also the stream of its random draws
    images: np.ndarray  # uint8 (N, C, S, S): I, in label order
    labels: np.ndarray  # int64 (N,)
    sources: np.ndarray  # int64 (N,): each I's index in its source set
    halves: np.ndarray  # uint8 (M, C, S, S): the B pool
    half_labels: np.ndarray  # int64 (M,)
    half_sources: np.ndarray  # int64 (M,): each B's index in its source set
    pairs: np.ndarray  # int64 (N,): the B paired with each I (an index into `halves`)
    ranks: np.ndarray  # int64 (N,): each I's rank within its class
    counts: np.ndarray  # int64 (NUM_CLASSES,): I per class

    def __len__(self) -> int:
        return len(self.labels)


def class_members(labels: np.ndarray) -> list[np.ndarray]:
    """The indices of each class's items in `labels`, in their order (one array per class)."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(NUM_CLASSES + 1))
    return [order[bounds[c] : bounds[c + 1]] for c in range(NUM_CLASSES)]


def _pair(
    labels: np.ndarray, ranks: np.ndarray, half_labels: np.ndarray, offsets: np.ndarray, where: str
) -> np.ndarray:
    members = class_members(half_labels)
    pairs = np.zeros(len(labels), np.int64)
    for c in range(NUM_CLASSES):
        mine = labels == c
        if mine.any() and not len(members[c]):
            raise UserError(f"{where}: no half (B) image of class {c} to pair with")
        if mine.any():
            pairs[mine] = members[c][(offsets[c] + ranks[mine]) % len(members[c])]
    return pairs


def build_parts(
    base_pool: tuple[np.ndarray, np.ndarray],
    base_test: tuple[np.ndarray, np.ndarray],
    half_trainvalid: tuple[np.ndarray, np.ndarray, np.ndarray],
    half_test: tuple[np.ndarray, np.ndarray, np.ndarray],
    sizes: Mapping[str, int | float | None],
    where: str,
) -> dict[str, SplitParts]:
    """train/valid/test parts from the base (I) pool and test set, (images, labels) each, and the B pools
    (images, labels, source indices) for train/valid and for test. train and valid are the first and last of each
    class of the base pool (`comprobust.data.splits`), test the first `sizes["test"]` per class of the base test set
    (None: all of it)."""
    pool_images, pool_labels = base_pool
    test_images, test_labels = base_test
    indices = split_pool(pool_labels, NUM_CLASSES, sizes, carve_test=False, where=f"the I images of {where}")
    indices["test"] = select_test(
        test_labels, NUM_CLASSES, sizes.get("test"), where=f"the I test images of {where}"
    )
    train_counts = np.bincount(pool_labels[indices["train"]], minlength=NUM_CLASSES)
    parts = {}
    for split, chosen in indices.items():
        images, labels = (test_images, test_labels) if split == "test" else (pool_images, pool_labels)
        half_images, half_labels, half_sources = half_test if split == "test" else half_trainvalid
        split_labels = np.asarray(labels[chosen], np.int64)
        ranks, counts = class_ranks(split_labels, NUM_CLASSES)
        offsets = train_counts if split == "valid" else np.zeros(NUM_CLASSES, np.int64)
        parts[split] = SplitParts(
            name=split,
            images=np.ascontiguousarray(images[chosen]),
            labels=split_labels,
            sources=np.asarray(chosen, np.int64),
            halves=half_images,
            half_labels=np.asarray(half_labels, np.int64),
            half_sources=np.asarray(half_sources, np.int64),
            pairs=_pair(split_labels, ranks, np.asarray(half_labels), offsets, where),
            ranks=ranks,
            counts=counts,
        )
    return parts


@dataclasses.dataclass(frozen=True)
class Rendered:
    """A rendered batch: images, targets and the class each cue shows (-1 where absent)."""

    images: np.ndarray  # uint8 (N, C, 2S, S)
    labels: np.ndarray  # int64 (N,)
    cues: Mapping[str, np.ndarray]  # "image", "box", "half" -> int64 (N,)
    modes: Mapping[str, np.ndarray]  # uint8 (N,): cues.ABSENT / TRUE / RANDOMISED / CONFLICTING


def items_of_class(classes: np.ndarray, picks: np.ndarray, labels: np.ndarray, what: str) -> np.ndarray:
    """For each (class, pick): the (pick mod n_c)-th item of that class among `labels`."""
    members = class_members(labels)
    out = np.zeros(len(classes), np.int64)
    for c in np.unique(classes):
        if c < 0:
            continue
        if not len(members[c]):
            raise UserError(f"no {what} of class {c} in this split to draw from")
        mine = classes == c
        out[mine] = members[c][(picks[mine] % np.uint64(len(members[c]))).astype(np.int64)]
    return out
