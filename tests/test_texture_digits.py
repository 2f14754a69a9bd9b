"""texture-digits: texture statistics, the five conditions, and rendering as a pure function of (seed, index, epoch)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from comprobust.data import texture_digits as td
from comprobust.data.sources import read_mnist5k_arrays


@pytest.fixture(scope="module")
def test_split() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    digits, labels = read_mnist5k_arrays()
    indices = td.split_indices("test")
    return digits[indices], labels[indices], indices


def test_every_texture_has_equal_mean_luminance() -> None:
    assert td.TEXTURES.shape == (10, 8, 8) and set(np.unique(td.TEXTURES)) == {0, 1}
    assert (td.TEXTURES.reshape(10, -1).sum(1) == 32).all()  # exactly 50% duty on the tile
    rng = np.random.default_rng(0)
    phases = rng.integers(0, 8, (100, 2))
    for k in range(10):
        means = td.texture_canvas(np.full(100, k), phases, (28, 28)).mean(axis=(1, 2))
        assert 0.45 <= means.mean() <= 0.55, k  # over phases
        # one image: 28 px is not a multiple of the 8-px tile, so 4-px patterns gain or lose half a period
        assert 12 / 28 - 1e-9 <= means.min() and means.max() <= 16 / 28 + 1e-9, k


def test_no_two_textures_are_equal_under_any_cyclic_shift() -> None:
    for a in range(10):
        shifts = {np.roll(td.TEXTURES[a], (dy, dx), (0, 1)).tobytes() for dy in range(8) for dx in range(8)}
        for b in range(10):
            if b != a:
                assert td.TEXTURES[b].tobytes() not in shifts, (td.TEXTURE_NAMES[a], td.TEXTURE_NAMES[b])


def test_conditions_carry_the_cues_they_name(test_split) -> None:
    digits, labels, indices = test_split
    out = {c: td.render(digits, labels, indices, c, seed=0) for c in td.CONDITIONS}
    for condition, rendered in out.items():
        assert rendered.images.shape == (1000, 1, 28, 28) and rendered.images.dtype == np.uint8, condition
        assert (rendered.labels == labels).all()
    assert (out["natural"].shape_classes == labels).all() and (out["natural"].texture_classes == labels).all()
    assert (out["shape"].texture_classes == -1).all() and (out["texture"].shape_classes == -1).all()
    background = digits == 0
    assert np.unique(out["shape"].images[background]).tolist() == [round(255 * td.BACKGROUND)]  # no texture
    # texture only: two images of the same class and phase are equal whatever their digits
    phases_equal = td.render(digits[:2], np.zeros(2, int), np.array([7, 7]), "texture", seed=0).images
    assert np.array_equal(phases_equal[0], phases_equal[1])
    # natural: full-intensity strokes on light texture cells reach 255; dark background cells are b * (1 - c)
    assert out["natural"].images.max() == 255
    assert out["natural"].images.min() == round(255 * td.BACKGROUND * (1 - td.CONTRAST))
    # the same image with the digit removed or the texture removed differs
    assert not np.array_equal(out["natural"].images, out["shape"].images)
    assert not np.array_equal(out["natural"].images, out["texture"].images)


def test_conflict_never_uses_the_labels_texture_and_spreads_over_the_other_nine(test_split) -> None:
    digits, labels, indices = test_split
    conflict = td.render(digits, labels, indices, "conflict", seed=0)
    assert (conflict.texture_classes != labels).all() and (conflict.shape_classes == labels).all()
    offsets = (conflict.texture_classes - labels) % 10
    shares = np.bincount(offsets, minlength=10)[1:] / len(labels)
    assert 0.08 <= shares.min() and shares.max() <= 0.14
    for label in (0, 9):  # every other class reached from each label
        assert set(conflict.texture_classes[labels == label]) == set(range(10)) - {label}


def test_stylized_textures_carry_no_label_and_change_with_the_epoch(test_split) -> None:
    digits, labels, indices = test_split
    first = td.render(digits, labels, indices, "stylized", seed=0, epoch=0)
    assert 0.07 <= (first.texture_classes == labels).mean() <= 0.13  # 1 in 10: the label's texture by chance
    assert np.bincount(first.texture_classes, minlength=10).min() >= 70
    second = td.render(digits, labels, indices, "stylized", seed=0, epoch=1)
    assert (first.texture_classes != second.texture_classes).mean() > 0.8


def test_rendering_is_a_pure_function_of_seed_index_and_epoch(test_split) -> None:
    digits, labels, indices = test_split
    whole = td.render(digits, labels, indices, "stylized", seed=3, epoch=2)
    order = np.random.default_rng(1).permutation(len(indices))[:300]
    part = td.render(digits[order], labels[order], indices[order], "stylized", seed=3, epoch=2)
    assert np.array_equal(part.images, whole.images[order])
    assert np.array_equal(part.texture_classes, whole.texture_classes[order])
    again = td.render(digits, labels, indices, "stylized", seed=3, epoch=2)
    assert np.array_equal(again.images, whole.images)
    other_seed = td.render(digits, labels, indices, "stylized", seed=4, epoch=2)
    assert not np.array_equal(other_seed.images, whole.images)


def test_splits_are_disjoint_per_class_counts_and_bad_names_are_refused() -> None:
    parts = {s: td.split_indices(s) for s in ("train", "valid", "test")}
    assert [len(p) for p in parts.values()] == [3000, 1000, 1000]
    assert len(set(np.concatenate(list(parts.values())))) == 5000
    with pytest.raises(ValueError, match="unknown texture-digits condition 'cartoon'"):
        td.render(np.zeros((1, 28, 28), np.uint8), [0], [0], "cartoon", seed=0)


def test_the_rendered_bytes_are_pinned() -> None:
    """texture-digits is data: a change to the textures, the formula or the hash of (seed, index, epoch) changes every
    result computed on it, so it must be deliberate (update these digests and say so in the commit)."""
    digests = {
        c: hashlib.sha256(td.load("test", c, seed=0).images.tobytes()).hexdigest()[:16]
        for c in ("natural", "stylized", "conflict")
    }
    assert digests == {
        "natural": "9b48f7f9b8521f43",
        "stylized": "3580f0e7051980e3",
        "conflict": "ab87ecacfbf31bc3",
    }
