"""ImpulseNoise on CPU as one compiled pass (numba): the draws of four rows are hashed into a row of 64-bit
hashes, then each row is tested and selected in a loop the compiler vectorises. The array version took ten
passes over the hashes and four more for the masks and the selection, and made the noise the costliest
corruption of the engine (a third of its time on colour images); this pass takes less than half as long.

The draws are those of `comprobust.noise.element_bits16`, bit for bit: element `channel * pixels + pixel` of
image n takes 16-bit lane `element % 4` of splitmix64(`keys[n] ^ (element // 4) * golden`). Bits 0..14 decide
whether the element flips (below `threshold`), bit 15 whether it then becomes 255 or 0. This module imports
numba: import it where the noise is applied, not where the command line starts. Each input type compiles once
(about a second), and the result is cached on disk next to this file where the folder is writable.
"""

from __future__ import annotations

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_FIRST, _SECOND = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_FLIP_BITS, _SIGN_BIT = np.uint64(0x7FFF), np.uint64(0x8000)


def impulse_planes_last(x: np.ndarray, keys: np.ndarray, channels: int, threshold: int) -> np.ndarray:
    """ImpulseNoise of a planes-last `(H*W, N*C)` float32 or uint8 array: a new array of the same dtype.

    `keys` holds one uint64 per image; `threshold` is the flip probability times 2**15.
    """
    pixels, planes = x.shape
    out = np.empty_like(x)
    if x.size == 0:
        return out
    plane_keys = np.repeat(keys.astype(np.uint64), channels)
    plane_offsets = np.tile(np.arange(channels, dtype=np.uint64) * np.uint64(pixels), planes // channels)
    kernel = _impulse_any_size if pixels % 4 else _impulse_quads
    kernel(x, plane_keys, plane_offsets, np.uint64(threshold), x.dtype.type(255), x.dtype.type(0), out)
    return out


@numba.njit(inline="always")
def _draw(key: np.uint64, quad: np.uint64) -> np.uint64:
    """splitmix64 of `key ^ quad * golden`: the four 16-bit draws of one quad of elements."""
    z = (key ^ (quad * _GOLDEN)) + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _FIRST
    z = (z ^ (z >> np.uint64(27))) * _SECOND
    return z ^ (z >> np.uint64(31))


@numba.njit(nogil=True, cache=True)
def _impulse_quads(x, plane_keys, plane_offsets, threshold, salt, pepper, out):  # noqa: ANN001, ANN202 (numba types)
    """Images whose pixel count is a multiple of 4: rows 4g..4g+3 of a plane share quad `offset / 4 + g`."""
    pixels, planes = x.shape
    hashes = np.empty(planes, np.uint64)
    for group in range(pixels // 4):
        for plane in range(planes):
            hashes[plane] = _draw(
                plane_keys[plane], (plane_offsets[plane] >> np.uint64(2)) + np.uint64(group)
            )
        for lane in range(4):
            shift, source, target = np.uint64(16 * lane), x[4 * group + lane], out[4 * group + lane]
            for plane in range(planes):
                bits = hashes[plane] >> shift
                value = source[plane]  # read unconditionally: both choices become selects, not branches
                flipped = salt if bits & _SIGN_BIT else pepper
                target[plane] = value if (bits & _FLIP_BITS) >= threshold else flipped


@numba.njit(nogil=True, cache=True)
def _impulse_any_size(x, plane_keys, plane_offsets, threshold, salt, pepper, out):  # noqa: ANN001, ANN202
    """Any pixel count (quads then straddle rows and channels): each element hashes its own quad."""
    pixels, planes = x.shape
    for pixel in range(pixels):
        for plane in range(planes):
            element = plane_offsets[plane] + np.uint64(pixel)
            bits = _draw(plane_keys[plane], element >> np.uint64(2)) >> (
                np.uint64(16) * (element & np.uint64(3))
            )
            flipped = salt if bits & _SIGN_BIT else pepper
            out[pixel, plane] = x[pixel, plane] if (bits & _FLIP_BITS) >= threshold else flipped
