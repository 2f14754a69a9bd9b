"""Rectangular (H, W) images end to end for the `small` network: dataset specs, networks, modules, auto-encoders
and exports; square sizes build exactly what they built before; the other networks refuse (H, W) in one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from comprobust.data.registry import DatasetSpec, get_dataset_spec
from comprobust.errors import UserError
from comprobust.methods.common import Export
from comprobust.models import build_autoencoder, build_module, build_network, num_levels


@pytest.fixture(scope="module", autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """One thread for this file: on a shared 2-core machine two threads thrash when other jobs run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def spec(image_size: object) -> DatasetSpec:
    return DatasetSpec(
        name="x",
        num_classes=10,
        channels=1,
        image_size=image_size,  # type: ignore[arg-type]
        mean=None,
        std=None,
        crop_padding=0,
        hflip=False,
        default_split_sizes={},
        architecture="small",
        description="",
        official_test=False,
    )


def test_a_spec_takes_a_side_or_height_and_width() -> None:
    assert spec(28).image_shape == (1, 28, 28) and spec(28).square
    rect = spec((56, 28))
    assert rect.image_hw == (56, 28) and rect.image_shape == (1, 56, 28) and not rect.square
    assert spec([56, 28]).image_size == (56, 28)
    for bad in (0, (56,), (56, 28, 3), (56, 0), "56", True):
        with pytest.raises(TypeError, match="image_size"):
            spec(bad)
    assert get_dataset_spec("dominoes").image_shape == (1, 56, 28)
    assert get_dataset_spec("dominoes-cifar").image_shape == (3, 64, 32)


def test_small_builds_every_model_for_56_by_28_images() -> None:
    net = build_network("small", 10, 1, (56, 28))
    assert net.input_shape == (1, 56, 28)
    x = torch.rand(3, 1, 56, 28)
    assert net(x).shape == (3, 10)
    shapes = net.level_shapes()
    assert shapes[:4] == [(1, 56, 28), (16, 28, 14), (32, 14, 7), (64, 7, 4)] and shapes[4] == (128,)
    for level in range(num_levels("small")):
        module = build_module("small", level, 1, (56, 28)).eval()
        h = torch.rand(3, *shapes[level])
        assert module(h).shape == h.shape
    autoencoder = build_autoencoder("small", 1, (56, 28)).eval()
    assert autoencoder(x).shape == x.shape
    odd = build_network("small", 4, 3, (33, 20))
    assert odd(torch.rand(2, 3, 33, 20)).shape == (2, 4)
    assert build_module("small", 0, 3, (33, 20))(torch.rand(2, 3, 33, 20)).shape == (2, 3, 33, 20)


def test_square_sizes_build_what_they_built_before() -> None:
    """(n, n) is n: the same layers, parameters and outputs (the square code path is untouched)."""
    for builder in (
        lambda size: build_network("small", 10, 1, size),
        lambda size: build_module("small", 0, 1, size),
        lambda size: build_autoencoder("small", 1, size),
    ):
        torch.manual_seed(0)
        side = builder(28)
        torch.manual_seed(0)
        pair = builder((28, 28))
        assert repr(side) == repr(pair)
        assert all(torch.equal(a, b) for a, b in zip(side.state_dict().values(), pair.state_dict().values()))
    assert build_network("emnist", 10, 1, (28, 28)).input_shape == (1, 28, 28)


@pytest.mark.parametrize("arch", ["emnist", "vit-cpu", "facescrub"])
def test_other_networks_refuse_rectangular_images_in_one_line(arch: str) -> None:
    with pytest.raises(UserError, match=r"needs square images, got 56x28; use the 'small' network") as info:
        build_network(arch, 10, 1, (56, 28))
    assert "\n" not in str(info.value)


def test_the_cifar_network_takes_64_by_32_images_but_not_its_image_space_models() -> None:
    """dominoes-cifar's default network: ResNet-18's global pool takes any shape; modules at levels 1-9 too."""
    torch.manual_seed(0)
    net = build_network("cifar", 10, 3, (64, 32)).eval()
    assert net.input_shape == (3, 64, 32)
    with torch.no_grad():
        assert net(torch.rand(2, 3, 64, 32)).shape == (2, 10)
        shapes = net.level_shapes()
        assert shapes[1] == (64, 32, 16)
        for level in (1, 4, 9):
            h = torch.rand(2, *shapes[level])
            assert build_module("cifar", level, 3, (64, 32)).eval()(h).shape == h.shape
    with pytest.raises(UserError, match="level-0 module needs square images, got 64x32"):
        build_module("cifar", 0, 3, (64, 32))
    with pytest.raises(UserError, match="'cifar' network's autoencoders need square images, got 64x32"):
        build_autoencoder("cifar", 3, (64, 32))


def test_too_small_rectangles_are_refused() -> None:
    with pytest.raises(UserError, match="image_size 56x4 is too small"):
        build_network("small", 10, 1, (56, 4))


def test_an_export_keeps_height_and_width(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_network("small", 10, 1, (56, 28))
    export = Export("network", "small", 10, 1, (56, 28), net.state_dict(), {"a": 1.0}, tmp_path / "model.pt")
    export.save()
    loaded = Export.load(tmp_path / "model.pt", "network")
    assert loaded.image_size == (56, 28)
    rebuilt = loaded.build_network(torch.device("cpu"))
    x = torch.rand(2, 1, 56, 28)
    net.eval()
    assert torch.equal(rebuilt(x), net(x))
    square = Export(
        "network", "small", 10, 1, 28, build_network("small", 10, 1, 28).state_dict(), {}, tmp_path / "s.pt"
    )
    square.save()
    assert Export.load(tmp_path / "s.pt").image_size == 28
