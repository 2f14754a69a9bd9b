"""The matrices and reductions the corruption engine is built from, each cached per size and device: exact
pairwise column sums, the rotation as a row permutation, the Gaussian blur as a dense matrix with `nearest`
edges, and the swirl as a sparse bilinear sampling matrix (scikit-image's mapping, mirrored edges)."""

from __future__ import annotations

import functools
import math
import warnings

import numpy as np
import scipy.sparse
import torch


def column_sums(planes: torch.Tensor) -> torch.Tensor:
    """Column sums of `(R, P)` by pairwise halving of the rows: element-wise additions only, so a column's sum is
    the same bits whatever P, the thread count or the device (library reductions vary with all three)."""
    while planes.shape[0] > 1:
        half = planes.shape[0] // 2
        pairs = planes[:half] + planes[half : 2 * half]
        planes = torch.cat([pairs, planes[2 * half :]]) if planes.shape[0] % 2 else pairs
    return planes[0]


@functools.lru_cache(maxsize=32)
def rotation_rows(size: int, device: torch.device) -> torch.Tensor:
    """Source pixel of every output pixel of Rotate90: one row gather, contiguous (torch.rot90 leaves a
    transposed view that costs a slow strided copy later)."""
    return torch.rot90(torch.arange(size * size).view(size, size), 1, dims=(0, 1)).reshape(-1).to(device)


@functools.lru_cache(maxsize=32)
def _blur_weights(size: int, sigma: float) -> np.ndarray:
    """(size, size) float64 matrix of a 1-D Gaussian blur truncated at 4 sigma, edges extended ('nearest')."""
    radius = int(4.0 * sigma + 0.5)
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2)
    weights /= weights.sum()
    matrix = np.zeros((size, size))
    for row in range(size):
        np.add.at(matrix[row], np.clip(row + offsets, 0, size - 1), weights)
    return matrix


@functools.lru_cache(maxsize=32)
def blur_matrix(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """(size, size) matrix of a 1-D Gaussian blur along one axis, edges extended (scipy mode 'nearest').

    Blurring as two small matrix products is exact and far faster than a 1-channel convolution on CPU.
    """
    return torch.tensor(_blur_weights(size, sigma), dtype=torch.float32, device=device)


@functools.lru_cache(maxsize=32)
def blur_bands(
    size: int, sigma: float, device: torch.device
) -> tuple[tuple[slice, slice, torch.Tensor], ...]:
    """`blur_matrix` as (output rows, input rows, block) for two halves of the output rows, each block cut to
    the input rows its weights reach: a product per half skips the zeros (at sigma 2 a half of 28 or 32 rows
    reads 22 or 24 of them), and the zeros it skips add nothing to the sums."""
    weights = _blur_weights(size, sigma)
    bands = []
    for rows in (slice(0, size // 2), slice(size // 2, size)):
        reached = np.flatnonzero(weights[rows].any(axis=0))
        if reached.size:
            inputs = slice(int(reached[0]), int(reached[-1]) + 1)
            bands.append((rows, inputs, blur_matrix(size, sigma, device)[rows, inputs].contiguous()))
    return tuple(bands)


def _mirror(index: np.ndarray, size: int) -> np.ndarray:
    """Reflect integer indices into [0, size) about the edge pixels (scipy.ndimage mode 'mirror')."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * size - 2
    index = np.mod(index, period)
    return np.where(index >= size, period - index, index)


@functools.lru_cache(maxsize=32)
def swirl_matrix(h: int, w: int, strength: float) -> scipy.sparse.csr_matrix:
    """Sparse float32 (H*W, H*W) matrix: row p holds the bilinear weights of output pixel p's 4 source neighbours.

    On CPU the engine multiplies with scipy's CSR product (a plain loop over each row's entries, the same bits for
    any number of planes, and steadier than torch's sparse product at one thread on a loaded machine).
    """
    rows, cols = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    x0, y0 = w / 2.0, h / 2.0
    radius = math.sqrt(2.0) * h / 2.0 / 5.0 * math.log(2.0)
    rho = np.hypot(cols - x0, rows - y0)
    theta = strength * np.exp(-rho / radius) + np.arctan2(rows - y0, cols - x0)
    src_col = x0 + rho * np.cos(theta)
    src_row = y0 + rho * np.sin(theta)
    row0, col0 = np.floor(src_row), np.floor(src_col)
    frac_r, frac_c = src_row - row0, src_col - col0
    row0, col0 = row0.astype(np.int64), col0.astype(np.int64)
    neighbours, weights = [], []
    for d_row, w_row in ((0, 1.0 - frac_r), (1, frac_r)):
        for d_col, w_col in ((0, 1.0 - frac_c), (1, frac_c)):
            neighbours.append(_mirror(row0 + d_row, h) * w + _mirror(col0 + d_col, w))
            weights.append(w_row * w_col)
    out_index = np.repeat(np.arange(h * w), 4)
    in_index = np.stack(neighbours, axis=-1).reshape(-1)
    values = np.stack(weights, axis=-1).reshape(-1)
    matrix = scipy.sparse.csr_matrix((values, (out_index, in_index)), shape=(h * w, h * w))  # sums duplicates
    return matrix.astype(np.float32)


@functools.lru_cache(maxsize=32)
def swirl_matrix_on(h: int, w: int, strength: float, device: torch.device) -> torch.Tensor:
    """`swirl_matrix` as a torch sparse CSR tensor on `device` (the engine's path on GPUs)."""
    matrix = swirl_matrix(h, w, strength)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch calls sparse CSR "beta"; the product below is all we use
        return torch.sparse_csr_tensor(
            torch.from_numpy(matrix.indptr.astype(np.int64)),
            torch.from_numpy(matrix.indices.astype(np.int64)),
            torch.from_numpy(matrix.data),
            size=matrix.shape,
            device=device,
        )
