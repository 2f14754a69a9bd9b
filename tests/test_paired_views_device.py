"""Paired views made on the training device: the CPU batches are those of the loader before the device path
existed, and a given device is where the crop, the corruptions and the normalisation run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.dataset_files import load_fake_cifar

from comprobust.corruptions import ELEMENTALS, corrupt_batch
from comprobust.data import loaders
from comprobust.data.augment import apply_crop_flip, derive_seed, draw_crop_flip, generator
from comprobust.data.loaders import PairedViewLoader
from comprobust.methods.autoencoders import AutoEncoderTask
from comprobust.methods.common import StageContext
from comprobust.methods.contrastive import VIEWS, ContrastiveTask
from comprobust.methods.modules import ModuleTask
from comprobust.methods.specs import COMMON_PARAMS

ALL_VIEWS = ("Identity", *ELEMENTALS)


@pytest.fixture(scope="module")
def small_cifar(tmp_path_factory: pytest.TempPathFactory):
    """Fake CIFAR-10 (crop and flip on): 80 train, 20 valid images."""
    return load_fake_cifar(tmp_path_factory.mktemp("cifar-root"))


def loader_before_the_device_path(loader: PairedViewLoader, epoch: int):
    """`PairedViewLoader.batches` as it was written before it took a device (the pinned CPU path)."""
    order = loader._order(len(loader.split), epoch)
    gen = generator(loader.seed, epoch, "augment")
    spec = loader.data.spec
    noise_seed = derive_seed(loader.seed, epoch, "noise")
    for b in range(len(loader)):
        idx = order[b * loader.batch_size : (b + 1) * loader.batch_size]
        clean = loader.split.images[idx]
        if loader.augment:
            clean = apply_crop_flip(
                clean, spec.crop_padding, draw_crop_flip(len(idx), spec.crop_padding, spec.hflip, gen)
            )
        out = torch.empty((len(loader.views), *clean.shape), dtype=torch.float32)
        for v, view in enumerate(loader.views):
            corrupted = (
                clean
                if view == "Identity"
                else corrupt_batch(clean, view, seed=noise_seed, indices=idx.numpy())
            )
            loader.data.normalize(corrupted, out=out[v])
        yield out, loader.split.labels[idx]


@pytest.mark.parametrize("dataset", ["small_mnist", "small_cifar"])
@pytest.mark.parametrize("device", [None, "cpu", torch.device("cpu")])
def test_cpu_views_are_bit_identical_to_the_loader_before_the_device_path(
    request: pytest.FixtureRequest, dataset: str, device: Any
) -> None:
    data = request.getfixturevalue(dataset)
    loader = PairedViewLoader(data, "train", views=ALL_VIEWS, batch_size=32, seed=7, device=device)
    assert loader.device == torch.device("cpu")
    for epoch in (0, 3):
        got = list(loader.batches(epoch))
        expected = list(loader_before_the_device_path(loader, epoch))
        assert len(got) == len(expected) == len(loader) > 0
        for (x, y), (x0, y0) in zip(got, expected, strict=True):
            assert x.device.type == "cpu" and torch.equal(x, x0) and torch.equal(y, y0)
    if dataset == "small_cifar":  # the crops are drawn: the check covers augmentation
        assert loader.augment


@pytest.fixture
def corruption_devices(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(view, device type of its input) for every corruption the loaders call; the corruption returns its input
    (the engine's CPU kernels cannot run on the meta device, which only tracks shapes and placement)."""
    seen: list[tuple[str, str]] = []

    def spy(images: torch.Tensor, composition: str, **kwargs: Any) -> torch.Tensor:
        seen.append((composition, images.device.type))
        return images

    monkeypatch.setattr(loaders, "corrupt_batch", spy)
    return seen


@pytest.mark.parametrize("dataset", ["small_mnist", "small_cifar"])
def test_a_given_device_is_where_the_views_are_made(
    request: pytest.FixtureRequest, dataset: str, corruption_devices: list[tuple[str, str]]
) -> None:
    data = request.getfixturevalue(dataset)
    loader = PairedViewLoader(data, "train", views=ALL_VIEWS, batch_size=16, seed=1, device="meta")
    threads = torch.get_num_threads()
    batches = list(loader.batches(0))
    assert len(batches) == len(loader) > 0
    for x, y in batches:
        assert x.device.type == "meta" and x.shape == (len(ALL_VIEWS), 16, *data.spec.image_shape)
        assert x.dtype == torch.float32 and y.device.type == "cpu"  # labels stay: the tasks move them
    assert {device for _, device in corruption_devices} == {"meta"}
    assert [view for view, _ in corruption_devices[: len(ELEMENTALS)]] == list(ELEMENTALS)
    assert torch.get_num_threads() == threads


def test_the_cpu_loader_never_moves_the_images(
    corruption_devices: list[tuple[str, str]], small_mnist
) -> None:
    next(iter(PairedViewLoader(small_mnist, "train", views=("Identity", "Invert"), batch_size=8).batches(0)))
    assert corruption_devices == [("Invert", "cpu")]


def context(data, device: torch.device, tmp_path: Path, corruption: str | None = None) -> StageContext:
    params = {**COMMON_PARAMS, "lr": 0.01, "batch_size": 14, "temperature": 0.15, "weight": 0.1}
    return StageContext(
        run_id="r",
        stage="s",
        seed=0,
        corruption=corruption,
        params=params,
        identity={},
        data=data,
        arch="small",
        device=device,
        out_dir=tmp_path,
    )


def test_stages_make_their_views_on_the_training_device_unless_it_is_the_cpu(
    small_mnist, tmp_path: Path, corruption_devices: list[tuple[str, str]]
) -> None:
    cpu = context(small_mnist, torch.device("cpu"), tmp_path)
    assert cpu.views_device is None
    assert context(small_mnist, torch.device("cuda", 1), tmp_path).views_device == torch.device("cuda", 1)
    model = torch.nn.Identity()
    assert ContrastiveTask(cpu, model).train_loader.device == torch.device("cpu")  # type: ignore[arg-type]
    meta = context(small_mnist, torch.device("meta"), tmp_path, corruption="Swirl")
    tasks = [
        ContrastiveTask(meta, model),  # type: ignore[arg-type]
        ModuleTask(meta, model, model, level=1),  # type: ignore[arg-type]
        AutoEncoderTask(meta, model),
    ]
    for task in tasks:
        assert task.train_loader.device == task.valid_loader.device == torch.device("meta")
        x, _ = next(iter(task.train_batches(0)))
        assert x.device.type == "meta"
    assert next(iter(tasks[0].train_batches(0)))[0].shape[0] == len(VIEWS)
    assert {device for _, device in corruption_devices} == {"meta"}


EXACT = ("Identity", "Invert", "Rotate90", "ImpulseNoise")  # no float arithmetic that a GPU rounds otherwise


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dataset", ["small_mnist", "small_cifar"])
def test_views_made_on_a_gpu_are_the_cpus_to_the_engines_tolerance(
    request: pytest.FixtureRequest, dataset: str
) -> None:
    data = request.getfixturevalue(dataset)
    cpu = PairedViewLoader(data, "train", views=ALL_VIEWS, batch_size=32, seed=7)
    gpu = PairedViewLoader(data, "train", views=ALL_VIEWS, batch_size=32, seed=7, device="cuda")
    for (x, y), (xg, yg) in zip(cpu.batches(2), gpu.batches(2), strict=True):
        assert xg.device.type == "cuda" and torch.equal(y, yg)
        levels, levels_gpu = (data.denormalize(v.cpu()).round() for v in (x, xg))
        for v, view in enumerate(ALL_VIEWS):
            difference = (levels[v] - levels_gpu[v]).abs()
            if view in EXACT:
                assert torch.equal(levels[v], levels_gpu[v]), view
            else:  # the engine's fidelity bound: within 1 grey level on >= 99.5% of the elements
                assert float((difference <= 1).float().mean()) >= 0.995, view
