"""Batched augmentation and the three loaders: shapes, drop_last, determinism per (seed, epoch), pairing."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.functional as TF
from helpers.dataset_files import load_fake_cifar

from comprobust.corruptions import ELEMENTALS, corrupt_batch
from comprobust.data.augment import CropFlip, apply_crop_flip, draw_crop_flip, generator
from comprobust.data.loaders import (
    ELEMENTAL_NOISE_SEED,
    MixedElementalLoader,
    PairedViewLoader,
    elemental_set,
)
from comprobust.errors import UserError


@pytest.fixture(scope="module")
def small_cifar(tmp_path_factory: pytest.TempPathFactory):
    """Fake CIFAR-10 (real reader, md5 bypassed in here only): 80 train, 20 valid, 30 test."""
    return load_fake_cifar(tmp_path_factory.mktemp("cifar-root"))


def _to_uint8(data, x: torch.Tensor) -> torch.Tensor:
    return data.denormalize(x).round().clamp(0, 255).to(torch.uint8)


# ---------------------------------------------------------------------------------------------------- augment


def test_batched_crop_flip_equals_torchvision_per_image() -> None:
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8)
    draw = draw_crop_flip(16, 4, True, torch.Generator().manual_seed(3))
    assert draw.flip.any() and not draw.flip.all() and (draw.top != 4).any()
    out = apply_crop_flip(images, 4, draw)
    for i in range(16):
        expected = TF.crop(TF.pad(images[i], [4], fill=0), int(draw.top[i]), int(draw.left[i]), 32, 32)
        if draw.flip[i]:
            expected = TF.hflip(expected)
        assert torch.equal(out[i], expected)


def test_identity_draw_is_a_no_op_and_generators_depend_only_on_seed_epoch_stream() -> None:
    images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    none = CropFlip(torch.full((4,), 2), torch.full((4,), 2), torch.zeros(4, dtype=torch.bool))
    assert torch.equal(apply_crop_flip(images, 2, none), images)
    a = torch.rand(5, generator=generator(7, 3, "order"))
    assert torch.equal(a, torch.rand(5, generator=generator(7, 3, "order")))
    assert not torch.equal(a, torch.rand(5, generator=generator(7, 4, "order")))
    assert not torch.equal(a, torch.rand(5, generator=generator(7, 3, "augment")))


# ---------------------------------------------------------------------------------------------------- ERM loa


def test_mixed_elemental_loader_shapes_drop_last_and_coverage(small_mnist) -> None:
    loader = MixedElementalLoader(small_mnist, batch_size=64, seed=5)
    assert len(loader) == 400 * 7 // 64
    batches = list(loader.batches(0))
    assert len(batches) == len(loader)
    x, y = batches[0]
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert int(y.min()) >= 0 and int(y.max()) <= 9
    # the batch mixes domains: decoded pixels match some generated set of the labelled image
    ys = torch.cat([y for _, y in batches])
    assert torch.bincount(ys, minlength=10).min() > 0
    valid = MixedElementalLoader(small_mnist, split="valid", batch_size=64)
    assert len(valid) == math.ceil(100 * 7 / 64) and sum(len(y) for _, y in valid.batches(0)) == 700


def test_mixed_elemental_loader_is_deterministic_per_epoch_and_resumable(small_mnist) -> None:
    first = MixedElementalLoader(small_mnist, batch_size=100, seed=1)
    epoch2 = list(first.batches(2))
    resumed = list(MixedElementalLoader(small_mnist, batch_size=100, seed=1).batches(2))
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(epoch2, resumed, strict=True)
    )
    epoch3 = list(first.batches(3))
    assert not torch.equal(epoch2[0][0], epoch3[0][0])
    other_seed = list(MixedElementalLoader(small_mnist, batch_size=100, seed=2).batches(2))
    assert not torch.equal(epoch2[0][0], other_seed[0][0])


def test_mixed_loader_contents_are_the_corrupted_images(small_mnist) -> None:
    loader = MixedElementalLoader(
        small_mnist, split="valid", batch_size=100, corruptions=("Identity", "Invert")
    )
    x, y = next(iter(loader.batches(0)))  # valid: fixed order, Identity set first
    assert torch.equal(_to_uint8(small_mnist, x), small_mnist.valid.images[:100])
    *_, (x_last, _) = loader.batches(0)
    assert torch.equal(_to_uint8(small_mnist, x_last), 255 - small_mnist.valid.images[-100:])


def test_erm_augmentation_follows_the_dataset(small_cifar, small_mnist) -> None:
    cifar = MixedElementalLoader(small_cifar, corruptions=("Identity",), batch_size=80, seed=0)
    x, _ = next(iter(cifar.batches(0)))
    assert (_to_uint8(small_cifar, x) == 0).all(dim=1).any()  # zero padding shows somewhere
    plain = MixedElementalLoader(small_cifar, corruptions=("Identity",), batch_size=80, augment=False)
    x, y = next(iter(plain.batches(0)))
    order = torch.randperm(80, generator=generator(0, 0, "order"))
    assert torch.equal(_to_uint8(small_cifar, x), small_cifar.train.images[order])
    assert not MixedElementalLoader(small_mnist, corruptions=("Identity",)).augment  # EMNIST-like: none


# ---------------------------------------------------------------------------------------------------- paired


def test_paired_views_share_images_crop_and_flip(small_cifar) -> None:
    loader = PairedViewLoader(
        small_cifar, "train", views=("Identity", "Invert", "Identity"), batch_size=16, seed=4
    )
    assert len(loader) == 80 // 16
    for x, y in loader.batches(1):
        assert x.shape == (3, 16, 3, 32, 32) and y.shape == (16,)
        views = _to_uint8(small_cifar, x)
        assert torch.equal(views[0], views[2])
        assert torch.equal(
            views[1], 255 - views[0]
        )  # same crop, padding inverted too (augment before corrupt)
    x, _ = next(iter(loader.batches(1)))
    assert (_to_uint8(small_cifar, x[0]) == 0).all(dim=1).any()  # crops really happen
    again, _ = next(
        iter(
            PairedViewLoader(
                small_cifar, "train", views=("Identity", "Invert", "Identity"), batch_size=16, seed=4
            ).batches(1)
        )
    )
    assert torch.equal(x, again)


def test_paired_views_fresh_noise_each_epoch_and_valid_keeps_last_batch(small_mnist) -> None:
    loader = PairedViewLoader(small_mnist, "valid", views=("ImpulseNoise", "Identity"), batch_size=32)
    assert len(loader) == math.ceil(100 / 32)
    epoch0, epoch1 = list(loader.batches(0)), list(loader.batches(1))
    assert sum(len(y) for _, y in epoch0) == 100
    assert torch.equal(epoch0[0][0][1], epoch1[0][0][1])  # same clean images in a fixed order
    assert not torch.equal(epoch0[0][0][0], epoch1[0][0][0])  # but new noise
    assert torch.equal(_to_uint8(small_mnist, epoch0[0][0][1]), small_mnist.valid.images[:32])


def test_paired_view_loader_rejects_bad_arguments(small_mnist) -> None:
    with pytest.raises(UserError, match="batch_size"):
        PairedViewLoader(small_mnist, "train", batch_size=0)
    with pytest.raises(UserError, match="unknown corruption 'Blur'"):
        PairedViewLoader(small_mnist, "train", views=("Blur",))
    with pytest.raises(UserError, match="unknown split 'validation'"):
        PairedViewLoader(small_mnist, "validation")


# ------------------------------------------------------------------------------------------- elemental sets


def test_elemental_sets_do_not_depend_on_how_they_are_chunked(small_mnist) -> None:
    whole = elemental_set(small_mnist.test, "ImpulseNoise", seed=9)
    assert np.array_equal(whole, elemental_set(small_mnist.test, "ImpulseNoise", seed=9, chunk_size=7))
    expected = corrupt_batch(small_mnist.test.images, "ImpulseNoise", seed=9, indices=np.arange(100))
    assert np.array_equal(whole, expected.numpy())
    assert not np.array_equal(whole, elemental_set(small_mnist.test, "ImpulseNoise", seed=10))


@pytest.mark.parametrize("corruption", ("Identity",) + ELEMENTALS)
def test_normalisation_round_trip(small_mnist, corruption: str) -> None:
    loader = MixedElementalLoader(small_mnist, "valid", corruptions=(corruption,), batch_size=64)
    x, _ = next(iter(loader.batches(0)))  # valid: fixed order, no augmentation
    expected = corrupt_batch(
        small_mnist.valid.images[:64], corruption, seed=ELEMENTAL_NOISE_SEED, indices=np.arange(64)
    )
    manual = (expected.float() / 255 - small_mnist.mean[0]) / small_mnist.std[0]
    assert torch.allclose(x, manual, atol=1e-5)


def test_loaders_prepare_batches_single_threaded_without_leaking_the_setting(small_mnist) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        loaders = (
            PairedViewLoader(small_mnist, "train", views=("GaussianBlur", "Identity"), batch_size=16),
            MixedElementalLoader(small_mnist, corruptions=("Identity", "Swirl"), batch_size=16),
        )
        for loader in loaders:
            iterator = iter(loader.batches(0))
            next(iterator)  # suspended between batches: the training step keeps its threads
            assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)
