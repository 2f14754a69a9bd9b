"""``texture-digits``: real mnist5k digit shapes filled with class-coded binary textures (offline cue conflict).

Two cues name a class: the **shape** S (a real MNIST digit) and the **texture** T (one of 10 binary 8x8 tiles, all
at exactly 50% duty so that mean luminance carries no class; on a 28-px image the 4-px patterns cover 43-57% of it
depending on the phase, 50% on average). An image is

    x = 255 * (b + (1 - b) * m) * (1 - c + c * T),   m = digit / 255, b = BACKGROUND, c = CONTRAST,

with the texture covering the whole image, as in Geirhos's cue-conflict stimuli; without S, m = 0; without T, c = 0.
Each image's texture is cyclically shifted by a phase in [0, 8)^2, so the class lies in the pattern, not in where it
sits. Conditions (the label is always the digit's class):

| condition  | shape   | texture                                   |
|------------|---------|-------------------------------------------|
| natural    | label   | label                                     |
| shape      | label   | none                                      |
| texture    | none    | label                                     |
| stylized   | label   | uniform over all 10 (the Stylized-ImageNet analogue: the texture carries no label) |
| conflict   | label   | uniform over the 9 classes other than the label |

Rendering is a pure function of (seed, image index, epoch): the phase and the random texture class come from a
counter-based hash of them (`comprobust.noise.noise_keys`), so an image's bytes never depend on its batch.
Honest summary: real shapes, synthetic texture classes; the cue-conflict metric is Geirhos's exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from comprobust.data.sources import read_mnist5k_arrays
from comprobust.data.splits import split_pool
from comprobust.noise import noise_keys

NUM_CLASSES = 10
CONDITIONS: tuple[str, ...] = ("natural", "shape", "texture", "stylized", "conflict")
BACKGROUND = 0.35  # b: brightness of the background relative to the digit's strokes
CONTRAST = 0.6  # c: how far the texture's dark cells darken the image
PERIOD = 8  # the textures' tile side
DEFAULT_SPLIT_SIZES: Mapping[str, int] = MappingProxyType(
    {"train": 300, "valid": 100, "test": 100}
)  # of 500/class

NOISE_TILE = np.uint64(
    0x2245E4453357CC7F
)  # the binary-noise texture: 64 random bits, 32 of them set, row-major
TEXTURE_NAMES: tuple[str, ...] = (
    "horizontal stripes 2/2",
    "vertical stripes 2/2",
    "45-degree diagonals",
    "135-degree diagonals",
    "checkers 2px",
    "checkers 4px",
    "horizontal stripes 4/4",
    "vertical stripes 4/4",
    "herringbone",
    "binary noise",
)


def _textures() -> np.ndarray:
    r, c = np.mgrid[0:PERIOD, 0:PERIOD]
    diagonal, antidiagonal = ((r + c) // 2) % 2, (((r - c) % PERIOD) // 2) % 2
    noise = (NOISE_TILE >> np.arange(PERIOD * PERIOD - 1, -1, -1, dtype=np.uint64)) & np.uint64(1)
    tiles = [
        (r // 2) % 2,
        (c // 2) % 2,
        diagonal,
        antidiagonal,
        (r // 2 + c // 2) % 2,
        (r // 4 + c // 4) % 2,
        (r // 4) % 2,
        (c // 4) % 2,
        np.where(c < PERIOD // 2, diagonal, antidiagonal),
        noise.reshape(PERIOD, PERIOD),
    ]
    out = np.stack(tiles).astype(np.uint8)
    out.flags.writeable = False
    return out


TEXTURES = _textures()
"""(10, 8, 8) uint8 in {0, 1}: the tile of class k is TEXTURES[k]; each has exactly 32 ones."""


@dataclasses.dataclass(frozen=True)
class Rendered:
    """Images of one condition and the class each cue names (-1 where the cue is absent)."""

    images: np.ndarray  # uint8 (N, 1, H, W)
    labels: np.ndarray  # int64 (N,): the digit's class, the training target
    shape_classes: np.ndarray  # int64 (N,)
    texture_classes: np.ndarray  # int64 (N,)


def texture_canvas(classes: np.ndarray, phases: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(N, H, W) uint8 {0, 1}: texture ``classes[i]`` tiled over H x W, shifted cyclically by ``phases[i]`` (dy, dx)."""
    rows = (np.arange(size[0])[None, :] + phases[:, :1]) % PERIOD
    cols = (np.arange(size[1])[None, :] + phases[:, 1:]) % PERIOD
    return TEXTURES[np.asarray(classes)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _draws(seed: int, indices: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image: a phase (N, 2) in [0, 8) and a 58-bit number for the texture-class draw."""
    keys = noise_keys(seed, ("texture-digits", f"epoch{epoch}"), indices)
    phases = np.stack([keys & np.uint64(7), (keys >> np.uint64(3)) & np.uint64(7)], axis=1).astype(np.int64)
    return phases, keys >> np.uint64(6)


def render(
    digits: np.ndarray, labels: np.ndarray, indices: np.ndarray, condition: str, seed: int, epoch: int = 0
) -> Rendered:
    """Render ``condition`` from uint8 digits (N, 1, H, W) or (N, H, W) with their labels and dataset ``indices``.

    A pure function of (seed, index, epoch) per image; pass a fixed epoch (0) for evaluation sets and the training
    epoch for training, so ``stylized`` draws fresh textures every epoch.
    """
    if condition not in CONDITIONS:
        raise ValueError(
            f"unknown texture-digits condition {condition!r}: choose one of {', '.join(CONDITIONS)}"
        )
    digits = np.asarray(digits)
    digits = digits.reshape(len(digits), *digits.shape[-2:])
    labels, indices = np.asarray(labels, np.int64), np.asarray(indices, np.int64)
    if not len(digits) == len(labels) == len(indices):
        raise ValueError(f"{len(digits)} digits, {len(labels)} labels and {len(indices)} indices")
    phases, draw = _draws(seed, indices, epoch)
    none = np.full_like(labels, -1)
    shapes = none if condition == "texture" else labels
    if condition == "shape":
        textures = none
    elif condition == "stylized":
        textures = (draw % np.uint64(NUM_CLASSES)).astype(np.int64)
    elif condition == "conflict":
        textures = (labels + 1 + (draw % np.uint64(NUM_CLASSES - 1)).astype(np.int64)) % NUM_CLASSES
    else:
        textures = labels
    shape = np.zeros(digits.shape) if condition == "texture" else digits / 255.0
    height, width = digits.shape[-2:]
    texture = texture_canvas(np.maximum(textures, 0), phases, (height, width))
    contrast = 0.0 if condition == "shape" else CONTRAST
    images = 255.0 * (BACKGROUND + (1 - BACKGROUND) * shape) * (1 - contrast + contrast * texture)
    return Rendered(np.rint(images).astype(np.uint8)[:, None], labels, shapes, textures)


def split_indices(split: str, sizes: Mapping[str, int] = DEFAULT_SPLIT_SIZES) -> np.ndarray:
    """mnist5k indices of ``split`` (train / valid / test, per-class counts as ``comprobust.data.splits``)."""
    _, labels = read_mnist5k_arrays()
    parts = split_pool(
        labels, NUM_CLASSES, sizes, carve_test=True, where="the mnist5k digits (texture-digits)"
    )
    if split not in parts:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(parts)}")
    return parts[split]


def load(
    split: str, condition: str, seed: int, epoch: int = 0, sizes: Mapping[str, int] = DEFAULT_SPLIT_SIZES
) -> Rendered:
    """``condition`` rendered for the mnist5k digits of ``split`` (keyed by their mnist5k index)."""
    digits, labels = read_mnist5k_arrays()
    indices = split_indices(split, sizes)
    return render(digits[indices], labels[indices], indices, condition, seed, epoch)
