"""The corruption engine: the paper's six elemental corruptions plus Identity, applied to whole batches.

Every corruption works on a float32 batch in the engine's planes-last layout `(H, W, N, C)` with values in
[0, 255] and returns one of the same kind: each pixel position holds the contiguous row of all N*C planes, so
blurs are large matrix products, Rotate90 and the swirl's sparse sampling move whole rows, and a composition
converts layouts only at its ends. A composition applies its corruptions left to right on float intermediates
(up to exchanging neighbours that commute, see `corrupt_many`) and truncates to uint8 once at the end, as the
paper's code does (`np.uint8(x)` floors). `corrupt()` is the entry point for users: it takes
uint8 images as numpy arrays or torch tensors, grey `(N, H, W)` or colour `(N, H, W, C)`; `corrupt_batch()` is
the fast path for loaders that already hold `(N, C, H, W)` uint8 tensors.

Adding a corruption is one class and one decorator line::

    @register
    class Posterize(Corruption):
        name, abbreviation, lossless = "Posterize", "PO", False
        severities = (6, 5, 4, 3, 2)
        default_severity = 3

        def apply(self, x, keys):  # x: (H, W, N, C); an element-wise corruption ignores the layout
            step = 2 ** (8 - self.parameter)
            return torch.floor(x / step) * step
"""

from __future__ import annotations

import abc
import functools
from collections.abc import Iterable, Iterator, Sequence
from typing import ClassVar, TypeVar, cast

import numpy as np
import torch

from comprobust.corruption_kernels import (
    blur_bands,
    blur_matrix,
    column_sums,
    rotation_rows,
    swirl_matrix,
    swirl_matrix_on,
)
from comprobust.corruption_names import (
    BUILT_IN,
    ELEMENTALS,
    MOVES_AFTER,
    CompositionLike,
    abbreviate,
    add_name,
    composition_name,
    corruption_name,
    known_names,
    parse_composition,
)
from comprobust.device import keep_freed_memory
from comprobust.errors import UserError
from comprobust.noise import NO_KEYS, element_bits16, noise_keys
from comprobust.registry import Registry

Images = TypeVar("Images", np.ndarray, torch.Tensor)

__all__ = [  # the engine, and the names it implements (from `comprobust.corruption_names`)
    "ELEMENTALS",
    "CompositionLike",
    "Corruption",
    "abbreviate",
    "composition_name",
    "corrupt",
    "corrupt_batch",
    "corrupt_many",
    "get_corruption",
    "known_names",
    "noise_keys",
    "parse_composition",
    "register",
]


class Corruption(abc.ABC):
    """One image corruption at a fixed severity.

    Subclasses set `name`, `abbreviation`, `lossless` and, when the corruption has a strength, the parameter
    for each severity 1..5 in `severities` and the paper's `default_severity`.
    """

    name: ClassVar[str]
    abbreviation: ClassVar[str]
    lossless: ClassVar[bool]
    uses_randomness: ClassVar[bool] = False
    # Corruptions this one commutes with (in exact arithmetic, at every severity) and is applied after when it
    # directly precedes one of them: compositions that differ only in where it stands then share their work.
    moves_after: ClassVar[frozenset[str]] = frozenset()
    severities: ClassVar[tuple[float, ...]] = ()
    default_severity: ClassVar[int | None] = None

    def __init__(self, severity: int | None = None) -> None:
        if severity is None:
            severity = self.default_severity
        elif not self.severities:
            raise UserError(f"{self.name} has no severity levels; do not pass a severity")
        elif isinstance(severity, bool) or not isinstance(severity, int) or not 1 <= severity <= 5:
            raise UserError(f"{self.name}: severity must be an integer in 1..5, got {severity!r}")
        self.severity = severity

    @property
    def parameter(self) -> float | None:
        """The corruption's strength at this severity (None for corruptions without one)."""
        if not self.severities or self.severity is None:
            return None
        return self.severities[self.severity - 1]

    @property
    def strength(self) -> float:
        """`parameter` of a corruption that has one."""
        if self.parameter is None:
            raise TypeError(f"{self.name} has no strength parameter")
        return float(self.parameter)

    @abc.abstractmethod
    def apply(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        """Corrupt a float32 planes-last `(H, W, N, C)` batch in [0, 255]; never modify `x` (siblings share it).

        `keys` holds one uint64 per image when the class sets `uses_randomness` (empty otherwise); random
        corruptions derive their draws from it alone, so an image's corruption does not depend on its batch.
        """

    def apply_uint8(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        """`apply` and the final truncation to uint8 (same layout), for the last step of a composition.

        The engine calls it when nothing else builds on the step's float result; a corruption may override it
        to work on the truncated values or to fuse the two, with results equal to this default's.
        """
        return _truncate_uint8(self.apply(x, keys))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(severity={self.severity})"


CORRUPTIONS: Registry[type[Corruption]] = Registry("corruption")

C = TypeVar("C", bound=type[Corruption])


def register(cls: C) -> C:
    """Class decorator: make a corruption available by its `name` (and `abbreviation`; a built-in's comes from
    `comprobust.corruption_names.BUILT_IN`)."""
    if "abbreviation" not in vars(cls) and getattr(cls, "name", None) in BUILT_IN:
        cls.abbreviation = BUILT_IN[cls.name]
    for attribute in ("name", "abbreviation", "lossless"):
        if not hasattr(cls, attribute):
            raise TypeError(f"{cls.__name__} must define the class attribute {attribute!r}")
    CORRUPTIONS.add(cls.name, cls)
    add_name(cls.name, cls.abbreviation)
    return cls


def get_corruption(name: str, severity: int | None = None) -> Corruption:
    """The registered corruption `name` (full name or abbreviation) at `severity` (default: the paper's)."""
    return CORRUPTIONS[corruption_name(name)](severity)


# --------------------------------------------------------------------------------------------------------------
# The elementals (section 1 of the paper-method notes). All operate on float32 planes-last (H, W, N, C) in
# [0, 255]. Contrast, GaussianBlur and Swirl form convex combinations of values in [0, 255], so their results
# stay in range up to float round-off (which the final truncation absorbs) and need no clipping pass.


@register
class Identity(Corruption):
    name, lossless = "Identity", True

    def apply(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        return x


@register
class Contrast(Corruption):
    """Pull every pixel towards its image's per-channel mean: `(x - mean) * c + mean`."""

    name, lossless = "Contrast", False
    severities = (0.4, 0.3, 0.2, 0.1, 0.05)
    default_severity = 2

    def apply(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        h, w, n, channels = x.shape
        c = self.strength
        planes = x.reshape(h * w, n * channels)
        pulled_means = column_sums(planes).mul_((1.0 - c) / (h * w))
        return torch.add(pulled_means, planes, alpha=c).view(h, w, n, channels)


@register
class GaussianBlur(Corruption):
    """Gaussian blur of each channel (sigma from the severity), edges extended ('nearest'), truncated at 4 sigma."""

    name, lossless = "GaussianBlur", False
    severities = (1.0, 2.0, 3.0, 4.0, 6.0)
    default_severity = 2

    # BLAS takes another path, with other round-off, for products this narrow; padding a small batch with empty
    # planes keeps every plane's blur the same bits whatever the batch it is in.
    min_planes: ClassVar[int] = 64

    def apply(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        h, w, n, c = x.shape
        planes = x.reshape(h, w, n * c)
        if 0 < n * c < self.min_planes:
            padding = planes.new_zeros(h, w, self.min_planes - n * c)
            return self._blur(torch.cat([planes, padding], dim=2))[:, :, : n * c].reshape(x.shape)
        return self._blur(planes).view(x.shape)

    def _blur(self, planes: torch.Tensor) -> torch.Tensor:
        """Blur `(H, W, P)` planes along H (a product per band of rows), then along W (one batched product)."""
        h, w, p = planes.shape
        sigma = self.strength
        source, along_h = planes.reshape(h, w * p), planes.new_empty(h, w * p)
        for rows, inputs, band in blur_bands(h, sigma, planes.device):
            torch.matmul(band, source[inputs], out=along_h[rows])
        return torch.matmul(blur_matrix(w, sigma, planes.device), along_h.view(h, w, p))


@register
class ImpulseNoise(Corruption):
    """Salt and pepper: each element independently becomes 255 or 0 with probability amount/2 each."""

    name, lossless = "ImpulseNoise", False
    uses_randomness = True
    severities = (0.03, 0.06, 0.09, 0.17, 0.27)
    default_severity = 5

    def apply(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        if x.device.type != "cpu":
            bits = element_bits16(keys, x.shape[0] * x.shape[1], x.shape[3])
            return _impulse_on_device(x, torch.from_numpy(bits.view(np.int16)).to(x.device), self._threshold)
        from comprobust.impulse_kernel import impulse_planes_last  # numba: not at command-line start

        h, w, n, c = x.shape
        out = impulse_planes_last(x.numpy().reshape(h * w, n * c), keys, c, self._threshold)
        return torch.from_numpy(out).view(x.shape)

    def apply_uint8(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        """Truncating first is exact (the flipped elements become 0 or 255 either way), and the uint8 pass is
        a quarter of the float one's bytes."""
        if x.device.type != "cpu":
            return super().apply_uint8(x, keys)
        return self.apply(_truncate_uint8(x), keys)

    @property
    def _threshold(self) -> int:
        """Draws whose bits 0..14 fall below this flip (resolution 2**-15); bit 15 then picks 255 or 0."""
        return round(self.strength * 2**15)


def _impulse_on_device(x: torch.Tensor, signed_bits: torch.Tensor, threshold: int) -> torch.Tensor:
    """ImpulseNoise with torch alone (GPUs): `signed_bits` are the element bits viewed as int16, same layout."""
    signed = signed_bits.view(x.shape)
    salt = signed < threshold - 2**15
    keep = ~(((signed >= 0) & (signed < threshold)) | salt)
    return torch.addcmul(salt * 255.0, x, keep)


@register
class Invert(Corruption):
    name, lossless = "Invert", True
    moves_after = MOVES_AFTER["Invert"]

    def apply(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        if x.device.type != "cpu":
            return 255.0 - x
        return torch.from_numpy(
            np.subtract(np.float32(255), x.numpy())
        )  # numpy's pass is faster at one thread

    def apply_uint8(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        """255 - x cast to uint8 as it is computed (the same values as subtracting, then truncating)."""
        if x.device.type != "cpu":
            return super().apply_uint8(x, keys)
        out = np.empty(tuple(x.shape), np.uint8)
        return torch.from_numpy(np.subtract(np.float32(255), x.numpy(), out=out, casting="unsafe"))


@register
class Rotate90(Corruption):
    """90 degrees counter-clockwise as displayed: out[r, c] = in[c, W - 1 - r] (square images)."""

    name, lossless = "Rotate90", True
    moves_after = MOVES_AFTER["Rotate90"]

    def apply(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        h, w, n, c = x.shape
        if h != w:
            raise UserError(f"Rotate90 needs square images, got {h}x{w}")
        return x.reshape(h * w, n * c).index_select(0, rotation_rows(h, x.device)).view(h, w, n, c)

    def apply_uint8(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        """A permutation commutes with the truncation: move the uint8 values (a quarter of the bytes)."""
        return self.apply(_truncate_uint8(x), keys)


@register
class Swirl(Corruption):
    """scikit-image's swirl (rotation 0, radius sqrt(2)*H/2, centre (W/2, H/2)), bilinear, mirrored edges."""

    name, lossless = "Swirl", False
    severities = (0.5, 1.0, 3.0, 5.0, 10.0)
    default_severity = 3

    def apply(self, x: torch.Tensor, keys: np.ndarray) -> torch.Tensor:
        h, w, n, c = x.shape
        planes = x.reshape(h * w, n * c)
        if x.device.type == "cpu":
            return torch.from_numpy(swirl_matrix(h, w, self.strength) @ planes.numpy()).view(h, w, n, c)
        return torch.sparse.mm(swirl_matrix_on(h, w, self.strength, x.device), planes).view(h, w, n, c)


# --------------------------------------------------------------------------------------------------------------
# Applying compositions. Many compositions share prefixes, so `corrupt_many` walks a tree of steps and computes
# each prefix once. Before the tree is built, a corruption that commutes with the next one and lists it in
# `moves_after` swaps places with it, so that orders that differ only there share their work: the paper's 167
# compositions (637 steps) take 295 distinct prefixes as given and 233 so, with the costly ones the most shared
# (the blur 46 -> 24 times, Contrast 49 -> 22, the swirl 49 -> 34), and 150 distinct results. An exchanged pair
# gives the same values in exact arithmetic; in float32 they differ by round-off (about 1e-5 of a grey level),
# which the final truncation turns into at most one grey level, and only where a value lies that close to an
# integer. A random step keeps the noise key of its place in the composition as given, and never moves.


Step = tuple[str, tuple[str, ...] | None]
"""A step of the tree: a corruption's name and, for one that draws noise, the prefix its keys come from."""


def _work_order(composition: tuple[str, ...], corruptions: dict[str, Corruption]) -> tuple[Step, ...]:
    """The steps the engine applies for `composition`: its corruptions, each that `moves_after` the next one
    swapped past it (at most len(composition) passes, so even inconsistent declarations end)."""
    steps: list[Step] = [
        (name, composition[: i + 1] if corruptions[name].uses_randomness else None)
        for i, name in enumerate(composition)
    ]
    for _ in range(len(steps)):
        swapped = False
        for i in range(len(steps) - 1):
            first, second = steps[i][0], steps[i + 1][0]
            if second in corruptions[first].moves_after and first not in corruptions[second].moves_after:
                steps[i], steps[i + 1] = steps[i + 1], steps[i]
                swapped = True
        if not swapped:
            break
    return tuple(steps)


def _check_batch(images: torch.Tensor, indices: np.ndarray | Sequence[int] | None) -> np.ndarray:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
        raise UserError(
            "expected a uint8 torch tensor of shape (N, C, H, W); got "
            f"{type(images).__name__} {getattr(images, 'dtype', '')} {tuple(getattr(images, 'shape', ()))}"
        )
    indices = np.arange(images.shape[0]) if indices is None else np.asarray(indices)
    if indices.shape != (images.shape[0],):
        raise UserError(
            f"indices must have one entry per image ({images.shape[0]}), got shape {indices.shape}"
        )
    return indices


def corrupt_many(
    images: torch.Tensor,
    compositions: Iterable[CompositionLike],
    *,
    seed: int = 0,
    indices: np.ndarray | Sequence[int] | None = None,
    severities: dict[str, int] | None = None,
) -> Iterator[tuple[tuple[str, ...], torch.Tensor]]:
    """Yield `(composition, uint8 (N, C, H, W) batch)` for every composition, sharing common work.

    Outputs are identical to calling `corrupt_batch` per composition; they come in tree order, not necessarily
    the order given, each composition once. `indices` are the images' positions in their dataset (default
    0..N-1). Every yielded batch is a tensor of its own (compositions with the same result get copies).
    """
    indices = _check_batch(images, indices)
    parsed = list(dict.fromkeys(parse_composition(composition) for composition in compositions))
    names = {name for composition in parsed for name in composition}
    corruptions = {name: get_corruption(name, (severities or {}).get(name)) for name in names}
    tree: dict = {}
    for composition in parsed:
        node = tree
        for step in _work_order(composition, corruptions):
            node = node.setdefault(step, {})
        node.setdefault(None, []).append(composition)  # the compositions whose result this node is

    n, c, h, w = images.shape

    def finish(
        done: list[tuple[str, ...]], planes_last: torch.Tensor
    ) -> Iterator[tuple[tuple[str, ...], torch.Tensor]]:
        """Yield the uint8 `(H, W, N, C)` result of the compositions `done` in the caller's layout."""
        out = _transpose_uint8(planes_last.reshape(h * w, n * c)).view(n, c, h, w)
        for composition in done[:-1]:
            yield composition, out.clone()
        yield done[-1], out

    def walk(node: dict, x: torch.Tensor) -> Iterator[tuple[tuple[str, ...], torch.Tensor]]:
        for step, child in node.items():
            if step is None:
                yield from finish(child, _truncate_uint8(x))
                continue
            name, noise_prefix = step
            corruption = corruptions[name]
            keys = NO_KEYS if noise_prefix is None else noise_keys(seed, noise_prefix, indices)
            if len(child) == 1 and None in child:  # only outputs build on this step: truncate with it
                yield from finish(child[None], _apply_in_float32(corruption, x, keys, truncate=True))
            else:
                yield from walk(child, _apply_in_float32(corruption, x, keys))

    if images.device.type == "cpu":
        keep_freed_memory()  # a call frees and allocates batch-sized tensors hundreds of times
    planes_last = _transpose_uint8(images.reshape(n * c, h * w)).to(torch.float32).view(h, w, n, c)
    yield from walk(tree, planes_last)


def _apply_in_float32(
    corruption: Corruption, x: torch.Tensor, keys: np.ndarray, *, truncate: bool = False
) -> torch.Tensor:
    """`corruption.apply` (or `apply_uint8` when `truncate`) in float32, even inside a caller's autocast (whose
    context is entered only when one is on: a call's hundreds of steps would each pay for it)."""
    apply = corruption.apply_uint8 if truncate else corruption.apply
    if not torch.is_autocast_enabled(x.device.type):
        return apply(x, keys)
    with torch.autocast(x.device.type, enabled=False):
        return apply(x, keys)


def _truncate_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 of float32 values in [0, 255], truncated toward zero as the paper's np.uint8 (numpy's conversion
    is several times faster than torch's on CPU)."""
    if x.device.type == "cpu":
        return torch.from_numpy(x.numpy().astype(np.uint8))
    return x.to(torch.uint8)


def _transpose_uint8(matrix: torch.Tensor) -> torch.Tensor:
    """The contiguous transpose of a 2-D uint8 tensor (OpenCV's blocked transpose on CPU: the layout change
    between (N*C, H*W) and (H*W, N*C) costs less than one float pass)."""
    if min(matrix.shape) <= 1:  # nothing to move (OpenCV also refuses empty matrices)
        return matrix.reshape(matrix.shape[::-1])
    if matrix.device.type == "cpu":
        return torch.from_numpy(_opencv().transpose(np.ascontiguousarray(matrix.numpy())))
    return matrix.t().contiguous()


@functools.cache
def _opencv():  # noqa: ANN202 (the cv2 module)
    """OpenCV, imported on first use: the command line imports this module and must start fast."""
    import cv2

    return cv2


def corrupt_batch(
    images: torch.Tensor,
    composition: CompositionLike,
    *,
    seed: int = 0,
    indices: np.ndarray | Sequence[int] | None = None,
    severities: dict[str, int] | None = None,
) -> torch.Tensor:
    """Apply one composition to a uint8 `(N, C, H, W)` tensor; returns uint8 `(N, C, H, W)`."""
    [(_, out)] = corrupt_many(images, [composition], seed=seed, indices=indices, severities=severities)
    return out


def corrupt(
    images: Images,
    composition: CompositionLike,
    *,
    seed: int = 0,
    indices: np.ndarray | Sequence[int] | None = None,
    severities: dict[str, int] | None = None,
) -> Images:
    """Apply `composition` to uint8 images: grey `(N, H, W)` or colour `(N, H, W, C)`, numpy or torch.

    Returns uint8 images of the same type and layout. Float images are refused: the engine never guesses
    whether floats are in 0..1 or 0..255.
    """
    is_numpy = isinstance(images, np.ndarray)
    if not is_numpy and not isinstance(images, torch.Tensor):
        raise UserError(f"images must be a numpy array or torch tensor, got {type(images).__name__}")
    dtype_ok = images.dtype == (np.uint8 if is_numpy else torch.uint8)
    if not dtype_ok:
        raise UserError(
            f"images must be uint8 in 0..255, got dtype {images.dtype}; convert first, e.g. "
            "(x * 255).round().astype(np.uint8) for floats in 0..1"
        )
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3)):
        raise UserError(
            f"images must have shape (N, H, W) for grey or (N, H, W, C) with C in (1, 3) for colour; "
            f"got {tuple(images.shape)}"
        )
    tensor = torch.from_numpy(np.ascontiguousarray(images)) if is_numpy else images
    nchw = tensor.unsqueeze(1) if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2)
    out = corrupt_batch(nchw.contiguous(), composition, seed=seed, indices=indices, severities=severities)
    out = out[:, 0] if tensor.dim() == 3 else out.permute(0, 2, 3, 1).contiguous()
    return cast(Images, out.numpy() if is_numpy else out)
