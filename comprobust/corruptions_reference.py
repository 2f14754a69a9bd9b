"""The paper's corruptions one image at a time with scikit-image, as its reference code does.

This is the oracle the batched engine in `comprobust.corruptions` is tested against and the baseline its
benchmark is measured against. It is deliberately slow and plain: one image, float64 in [0, 1], the same library
calls as the paper (with scikit-image >= 0.19's `channel_axis` so colour images are blurred per channel, as the
paper's scikit-image 0.19 did). Not used by the product.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from skimage import filters, transform, util

from comprobust.corruptions import get_corruption, parse_composition


def _contrast(x: np.ndarray, c: float, rng: np.random.Generator) -> np.ndarray:
    means = np.mean(x, axis=(0, 1), keepdims=True)
    return np.clip((x - means) * c + means, 0, 1)


def _blur(x: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    channel_axis = -1 if x.ndim == 3 else None
    return np.clip(
        filters.gaussian(x, sigma=sigma, mode="nearest", truncate=4.0, channel_axis=channel_axis), 0, 1
    )


def _impulse(x: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(util.random_noise(x, mode="s&p", amount=amount, rng=rng), 0, 1)


def _invert(x: np.ndarray, _: object, rng: np.random.Generator) -> np.ndarray:
    return 1.0 - x


def _rotate90(x: np.ndarray, _: object, rng: np.random.Generator) -> np.ndarray:
    return np.clip(transform.rotate(x, 90, order=1, mode="constant"), 0, 1)


def _swirl(x: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    radius = math.sqrt(2) * x.shape[0] / 2
    return np.clip(transform.swirl(x, rotation=0, strength=strength, radius=radius, mode="reflect"), 0, 1)


def _identity(x: np.ndarray, _: object, rng: np.random.Generator) -> np.ndarray:
    return x


_FUNCTIONS: dict[str, Callable[[np.ndarray, Any, np.random.Generator], np.ndarray]] = {
    "Identity": _identity,
    "Contrast": _contrast,
    "GaussianBlur": _blur,
    "ImpulseNoise": _impulse,
    "Invert": _invert,
    "Rotate90": _rotate90,
    "Swirl": _swirl,
}


def corrupt_image_float(image: np.ndarray, composition: Sequence[str] | str, seed: int = 0) -> np.ndarray:
    """One (H, W) or (H, W, C) image in 0..255 through `composition`; float64 in 0..255, not truncated."""
    rng = np.random.default_rng(seed)
    x = np.asarray(image, dtype=np.float64) / 255.0
    for name in parse_composition(composition):
        x = _FUNCTIONS[name](x, get_corruption(name).parameter, rng)
    return x * 255.0


def corrupt_image(image: np.ndarray, composition: Sequence[str] | str, seed: int = 0) -> np.ndarray:
    """As `corrupt_image_float`, then truncated to uint8 once, as the paper does."""
    return corrupt_image_float(image, composition, seed).astype(np.uint8)
