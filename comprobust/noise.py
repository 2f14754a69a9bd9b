"""Reproducible noise for corruptions and stimuli: counter-based hashing (splitmix64), so the noise of an image
is a pure function of (seed, what was applied so far, image index) and never depends on its batch, on how a
test set is split across processes, or on which other compositions are evaluated alongside."""

from __future__ import annotations

import functools
import hashlib

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
NO_KEYS = np.zeros(0, dtype=np.uint64)


def _splitmix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser of z + golden, element-wise (in place on one fresh array)."""
    z = z + _GOLDEN
    shifted = np.empty_like(z)
    with np.errstate(over="ignore"):
        for shift, multiplier in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            z ^= np.right_shift(z, np.uint64(shift), out=shifted)
            z *= np.uint64(multiplier)
        z ^= np.right_shift(z, np.uint64(31), out=shifted)
    return z


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


@functools.lru_cache(maxsize=4096)
def _prefix_key(seed: int, prefix: tuple[str, ...]) -> np.uint64:
    """The key of (seed, prefix), shared by its images (cached: hashed once per process)."""
    return _splitmix64(np.array([_stable_hash(f"{seed}/{'-'.join(prefix)}")], np.uint64))[0]


def noise_keys(seed: int, prefix: tuple[str, ...], indices: np.ndarray) -> np.ndarray:
    """One uint64 key per image for the last step of `prefix` (the corruptions applied so far, in order).

    A pure function of (seed, prefix, image index): the noise of an image never depends on its batch, on how a
    test set is split across processes, or on which other compositions are evaluated alongside.
    """
    return _splitmix64(_prefix_key(seed, tuple(prefix)) ^ _splitmix64(np.asarray(indices, dtype=np.uint64)))


def element_bits16(keys: np.ndarray, pixels: int, channels: int) -> np.ndarray:
    """(pixels, N, channels) pseudo-random uint16 values in planes-last order, one independent stream per key.

    Element `channel * pixels + pixel` of image n takes 16-bit lane `element % 4` of the splitmix64 hash of
    `keys[n] ^ (element // 4) * golden`: each hash feeds four elements, so hashing costs a quarter of a pass per
    element, and the stream is that of the image's (C, H, W) elements in order, whatever the layout.
    """
    n = len(keys)
    keys = keys.astype(np.uint64)
    if pixels % 4:  # quads straddle channels: hash in (C, H, W) order, then move the channels last
        quads = (channels * pixels + 3) // 4
        hashes = _splitmix64(keys[:, None] ^ np.arange(quads, dtype=np.uint64)[None, :] * _GOLDEN)
        bits = (
            hashes.view(np.uint16).reshape(n, quads * 4)[:, : channels * pixels].reshape(n, channels, pixels)
        )
        return np.ascontiguousarray(bits.transpose(2, 0, 1))
    quads = pixels // 4
    if channels > 1 and quads * n * channels <= _KEPT_COUNTERS:
        hashes = np.bitwise_xor(_plane_counters(quads, n, channels), np.repeat(keys, channels)[None, :])
    else:
        counters = _counters(quads, channels)
        hashes = np.empty((quads, n, channels), dtype=np.uint64)
        for channel in range(channels):  # one long inner loop per channel (a broadcast over C loops over C)
            np.bitwise_xor(keys[None, :], counters[:, channel, None], out=hashes[:, :, channel])
    hashes = _splitmix64(hashes)
    return _deinterleave_lanes(hashes.view(np.uint16).reshape(quads, n * channels, 4)).reshape(
        pixels, n, channels
    )


_KEPT_COUNTERS = 1 << 21
"""Batches with up to this many hashes (16 MB of counters) keep their counters laid out for one XOR pass."""


def _counters(quads: int, channels: int) -> np.ndarray:
    """(quads, channels) uint64: the counter of quad q of channel c, (c * quads + q) * golden."""
    with np.errstate(over="ignore"):
        return (
            np.arange(channels, dtype=np.uint64)[None, :] * np.uint64(quads)
            + np.arange(quads, dtype=np.uint64)[:, None]
        ) * _GOLDEN


@functools.lru_cache(maxsize=2)
def _plane_counters(quads: int, n: int, channels: int) -> np.ndarray:
    """(quads, n * channels) uint64, read-only: `_counters` repeated for each of n images, in the hashes' layout,
    so that XORing in the keys is one contiguous pass (per channel, its stride-C writes cost three times as
    much). Cached: a batch size comes back call after call."""
    counters = _counters(quads, channels)
    out = np.empty((quads, n, channels), dtype=np.uint64)
    out[:] = counters[:, None, :]
    out.flags.writeable = False
    return out.reshape(quads, n * channels)


def _deinterleave_lanes(lanes: np.ndarray) -> np.ndarray:
    """(Q, P, 4) -> contiguous (Q, 4, P): lane l of every hash moves to row l of its quad (OpenCV's SIMD split
    writes the four rows directly, several times faster than numpy's strided transpose)."""
    out = np.empty((lanes.shape[0], 4, lanes.shape[1]), dtype=lanes.dtype)
    if out.size:  # OpenCV refuses empty matrices
        import cv2  # on first use: the command line imports this module and must start fast

        cv2.split(lanes, [out[:, lane] for lane in range(4)])
    return out
