"""``texture-digits``: real mnist5k digit shapes filled with class-coded binary textures (offline cue conflict).

Two cues name a class: the **shape** S (a real MNIST digit) and the **texture** T (one of 10 binary 8x8 tiles, all
at exactly 50% duty so that mean luminance carries no class; on a 28-px image the 4-px patterns cover 43-57% of it
depending on the phase, 50% on average). An image is

    x = 255 * (b + (1 - b) * m) * (1 - c + c * T),   m = digit / 255, b = BACKGROUND, c = CONTRAST,

with the texture covering the whole image, as in Geirhos's cue-conflict stimuli; without S, m = 0; without T, c = 0.
Each image's texture is cyclically shifted by a phase in [0, 8)^2, so the class lies in the pattern, not in where it
sits. The conditions are those of a cue model (`comprobust.data.cues`) with two mechanisms, **S** the shape (the
base: the label is always the digit's class) and **T** the texture; the issue's names are spellings of them:

| name       | condition | shape   | texture                                   |
|------------|-----------|---------|-------------------------------------------|
| natural    | ST        | label   | label                                     |
| shape      | S         | label   | none                                      |
| texture    | T         | none    | label                                     |
| stylized   | 100 R     | label   | uniform over all 10 (the Stylized-ImageNet analogue: the texture carries no label) |
| conflict   | 100 X     | label   | uniform over the 9 classes other than the label |

Any other condition of the cue model works too (``{shape: 1, texture: 0.5}``: half of each class textured; ``R 100``:
the digit of a random class on the label's texture, in `render_parts`). Sets: ``shape_bias`` (ST, S, T, 100 X),
``all``, ``exhaustive`` (S, T, ST), and one per name above.

Rendering is a pure function of (seed, mnist5k index, epoch): the classes come from `CueModel.draw` keyed by the
mnist5k index (stream ``texture-digits``) and the phase from a counter-based hash of the same
(`comprobust.noise.noise_keys`), so an image's bytes never depend on its batch or split.
Honest summary: real shapes, synthetic texture classes; the cue-conflict metric is Geirhos's exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from comprobust.data import cue_parts
from comprobust.data.cue_parts import SplitParts, items_of_class
from comprobust.data.cues import TRUE, Condition, CueDraws, CueModel, Mechanism, class_ranks
from comprobust.data.registry import SplitSize
from comprobust.data.sources import read_mnist5k_arrays
from comprobust.data.splits import split_pool
from comprobust.errors import UserError
from comprobust.noise import noise_keys

NUM_CLASSES = 10
CONDITIONS: tuple[str, ...] = ("natural", "shape", "texture", "stylized", "conflict")
BACKGROUND = 0.35  # b: brightness of the background relative to the digit's strokes
CONTRAST = 0.6  # c: how far the texture's dark cells darken the image
PERIOD = 8  # the textures' tile side
DEFAULT_SPLIT_SIZES: Mapping[str, int] = MappingProxyType(
    {"train": 300, "valid": 100, "test": 100}
)  # of 500/class

MECHANISMS = (Mechanism("shape", "S", "keep"), Mechanism("texture", "T", "first"))
SETTINGS: Mapping[str, str] = MappingProxyType(
    {"natural": "ST", "shape": "S", "texture": "T", "stylized": "100 R", "conflict": "100 X"}
)
"""The issue's conditions as cue-model conditions (S the shape, the base; T the texture; R randomised, X conflict)."""
CONDITION_SETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "shape_bias": (
            "ST",
            "S",
            "T",
            "100 X",
        ),  # accuracy on natural / shape / texture, Geirhos's bias on conflict
        "all": ("ST", "S", "T", "100 R", "100 X"),
        "exhaustive": ("S", "T", "ST"),
        **{name: (setting,) for name, setting in SETTINGS.items()},  # `conditions: [natural, conflict]`
    }
)
CUE_MODEL = CueModel("texture-digits", MECHANISMS, NUM_CLASSES, CONDITION_SETS)
"""S (shape), T (texture), with the sets shape_bias, all, exhaustive and one per name of ``CONDITIONS``."""
LABELS: Mapping[str, str] = MappingProxyType(
    {CUE_MODEL.parse(setting).name: name for name, setting in SETTINGS.items()}
)
"""Canonical condition name -> the issue's name (``ST`` -> natural, ``100 X`` -> conflict): for reports."""

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


def _phases(seed: int, indices: np.ndarray, epoch: int) -> np.ndarray:
    """Per image: the texture's phase (N, 2) in [0, 8), from a hash of (seed, mnist5k index, epoch)."""
    keys = noise_keys(seed, ("texture-digits", f"epoch{epoch}"), indices)
    return np.stack([keys & np.uint64(7), (keys >> np.uint64(3)) & np.uint64(7)], axis=1).astype(np.int64)


def compose(
    digits: np.ndarray, shape_classes: np.ndarray, texture_classes: np.ndarray, phases: np.ndarray
) -> np.ndarray:
    """uint8 (N, 1, H, W): ``digits`` (uint8 (N, H, W)) where ``shape_classes >= 0`` (else m = 0), filled with texture
    ``texture_classes`` at ``phases`` where it is >= 0 (else c = 0); the module docstring's formula."""
    digits = np.asarray(digits).reshape(len(digits), *np.shape(digits)[-2:])
    shape = np.where((np.asarray(shape_classes) >= 0)[:, None, None], digits / 255.0, 0.0)
    textures = np.asarray(texture_classes)
    canvas = texture_canvas(np.maximum(textures, 0), phases, (digits.shape[-2], digits.shape[-1]))
    contrast = np.where(textures >= 0, CONTRAST, 0.0)[:, None, None]
    images = 255.0 * (BACKGROUND + (1 - BACKGROUND) * shape) * (1 - contrast + contrast * canvas)
    return np.rint(images).astype(np.uint8)[:, None]


def draw(
    condition: object,
    labels: np.ndarray,
    indices: np.ndarray,
    seed: int,
    epoch: int = 0,
    ranks: np.ndarray | None = None,
    counts: np.ndarray | None = None,
) -> CueDraws:
    """Which class the shape and the texture of each image show under ``condition`` (a name of ``CONDITIONS`` or any
    condition of ``CUE_MODEL``): `CueModel.draw` keyed by the mnist5k ``indices``, so a pure function of (seed,
    index, epoch) whatever the split. ``ranks`` / ``counts`` (within-class rank, images per class of the split) are
    needed only by fractions of the texture (`first`)."""
    parsed = parse(condition)
    labels, indices = np.asarray(labels, np.int64), np.asarray(indices, np.int64)
    if ranks is None or counts is None:
        ranks, counts = np.zeros(len(labels), np.int64), np.bincount(labels, minlength=NUM_CLASSES)
    return CUE_MODEL.draw(parsed, labels, ranks, counts, indices, seed, epoch, stream="texture-digits")


def render(
    digits: np.ndarray, labels: np.ndarray, indices: np.ndarray, condition: object, seed: int, epoch: int = 0
) -> Rendered:
    """Render ``condition`` (a name of ``CONDITIONS``, or a condition of ``CUE_MODEL`` without a randomised or
    conflicting shape or a texture fraction strictly between 0 and 1) from uint8 digits (N, 1, H, W) or (N, H, W) with their labels and mnist5k ``indices``.

    A pure function of (seed, index, epoch) per image; pass a fixed epoch (0) for evaluation sets and the training
    epoch for training, so ``stylized`` draws fresh textures every epoch. (A randomised or conflicting shape needs
    the other digits of a split: `render_parts`.)
    """
    digits = np.asarray(digits)
    digits = digits.reshape(len(digits), *digits.shape[-2:])
    labels, indices = np.asarray(labels, np.int64), np.asarray(indices, np.int64)
    if not len(digits) == len(labels) == len(indices):
        raise ValueError(f"{len(digits)} digits, {len(labels)} labels and {len(indices)} indices")
    parsed = parse(condition)
    texture = parsed.settings[1]
    if not isinstance(texture, str) and 0 < texture < 1:
        raise ValueError(
            f"{parsed.name}: a texture fraction picks the first images of each class of a split: use render_parts"
        )
    cues = draw(parsed, labels, indices, seed, epoch)
    if (cues.modes["shape"] > TRUE).any():
        raise ValueError(
            f"{parsed.name}: a randomised or conflicting shape draws other digits of a split: use render_parts"
        )
    shapes, textures = cues.classes["shape"], cues.classes["texture"]
    images = compose(digits, shapes, textures, _phases(seed, indices, epoch))
    return Rendered(images, labels, shapes, textures)


def parse(condition: object) -> Condition:
    """A condition of ``CUE_MODEL`` from one of the names ``CONDITIONS`` or any spelling the cue model accepts."""
    if isinstance(condition, str) and condition in SETTINGS:
        return CUE_MODEL.parse(SETTINGS[condition])
    try:
        return CUE_MODEL.parse(condition)
    except UserError as err:
        raise ValueError(
            f"unknown texture-digits condition {condition!r}: choose one of {', '.join(CONDITIONS)} ({err})"
        ) from None


def render_parts(
    parts: SplitParts, indices: np.ndarray, condition: Condition, seed: int, epoch: int = 0
) -> cue_parts.Rendered:
    """Images ``indices`` (positions in the split) of ``parts`` under any condition of ``CUE_MODEL``, with the class
    each cue shows: the cue-dataset renderer (`comprobust.data.cue_datasets`). Equal to `render` of the same digits
    for a shape at 0 or 1; a randomised (R) or conflicting (X) shape is a digit of the drawn class from the split,
    chosen by the draw's pick."""
    indices = np.asarray(indices, np.int64)
    labels = parts.labels[indices]
    sources = parts.sources[indices]
    cues = draw(condition, labels, sources, seed, epoch, parts.ranks[indices], parts.counts)
    digits = parts.images[indices, 0]
    shapes = cues.classes["shape"]
    other = cues.modes["shape"] > TRUE
    if other.any():
        chosen = items_of_class(shapes[other], cues.picks["shape"][other], parts.labels, "digit")
        digits = digits.copy()
        digits[other] = parts.images[chosen, 0]
    images = compose(digits, shapes, cues.classes["texture"], _phases(seed, sources, epoch))
    return cue_parts.Rendered(images, labels, cues.classes, cues.modes)


def load_parts(
    sizes: Mapping[str, SplitSize] = DEFAULT_SPLIT_SIZES,
) -> dict[str, SplitParts]:
    """train / valid / test of the mnist5k digits as the cue dataset's parts (``sources``: the mnist5k indices)."""
    digits, labels = read_mnist5k_arrays()
    parts = {}
    for split in ("train", "valid", "test"):
        indices = split_indices(split, sizes)
        split_labels = np.asarray(labels[indices], np.int64)
        ranks, counts = class_ranks(split_labels, NUM_CLASSES)
        images = np.ascontiguousarray(digits[indices].reshape(len(indices), 1, *digits.shape[-2:]))
        parts[split] = SplitParts(
            name=split,
            images=images,
            labels=split_labels,
            sources=np.asarray(indices, np.int64),
            halves=np.zeros((0, *images.shape[1:]), np.uint8),
            half_labels=np.zeros(0, np.int64),
            half_sources=np.zeros(0, np.int64),
            pairs=np.zeros(len(indices), np.int64),
            ranks=ranks,
            counts=counts,
        )
    return parts


def split_indices(split: str, sizes: Mapping[str, SplitSize] = DEFAULT_SPLIT_SIZES) -> np.ndarray:
    """mnist5k indices of ``split`` (train / valid / test, per-class counts as ``comprobust.data.splits``)."""
    _, labels = read_mnist5k_arrays()
    parts = split_pool(
        labels, NUM_CLASSES, sizes, carve_test=True, where="the mnist5k digits (texture-digits)"
    )
    if split not in parts:
        raise ValueError(f"unknown split {split!r}: choose one of {', '.join(parts)}")
    return parts[split]


def load(
    split: str,
    condition: object,
    seed: int,
    epoch: int = 0,
    sizes: Mapping[str, SplitSize] = DEFAULT_SPLIT_SIZES,
) -> Rendered:
    """``condition`` rendered for the mnist5k digits of ``split`` (keyed by their mnist5k index)."""
    digits, labels = read_mnist5k_arrays()
    indices = split_indices(split, sizes)
    return render(digits[indices], labels[indices], indices, condition, seed, epoch)
