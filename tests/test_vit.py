"""The vision transformers vit-cpu and vit (ViT-Ti/4): sizes, levels, modules and the block/level round trip."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import EncoderBlock

from comprobust.errors import UserError
from comprobust.models import (
    ARCHITECTURES,
    VIT_ARCHITECTURES,
    build_autoencoder,
    build_module,
    build_network,
    default_image_size,
    module_name,
    num_levels,
)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def expected_vit_count(
    channels: int, size: int, classes: int, patch: int, width: int, depth: int, mlp: int
) -> int:
    """Parameters of the ViT layout written out by hand (attention: in/out projections with biases)."""
    tokens = (size // patch) ** 2 + 1
    embed = channels * patch * patch * width + width + width + tokens * width
    block = (
        2 * 2 * width
        + (3 * width * width + 3 * width)
        + (width * width + width)
        + (width * mlp + mlp)
        + (mlp * width + width)
    )
    return embed + depth * block + 2 * width + width * classes + classes


def test_vit_cpu_has_139018_parameters_and_the_designed_levels() -> None:
    net = build_network("vit-cpu", 10, in_channels=1)
    assert count(net) == 139_018 == expected_vit_count(1, 28, 10, 4, 64, 4, 128)
    assert count(net) < count(build_network("small", 10, in_channels=1)) == 155_898
    assert net.level_shapes() == [(1, 28, 28), *[(50, 64)] * 5, (64,)]
    assert net.num_levels == num_levels("vit-cpu") == 7 and net.feature_dim == 64
    assert net.block_names == [
        "PatchEmbed",
        "EncoderBlock1",
        "EncoderBlock2",
        "EncoderBlock3",
        "EncoderBlock4",
        "ClassToken",
        "Classifier",
    ]
    assert all(type(block) is EncoderBlock for block in net.blocks[1:5])
    assert [block.num_heads for block in net.blocks[1:5]] == [4] * 4


def test_vit_is_vit_tiny_with_patch_4_on_colour_32x32() -> None:
    net = build_network("vit", 10)
    assert default_image_size("vit") == 32 and net.input_shape == (3, 32, 32)
    assert count(net) == expected_vit_count(3, 32, 10, 4, 192, 12, 768) == 5_362_762
    assert net.level_shapes() == [(3, 32, 32), *[(65, 192)] * 13, (192,)]
    assert [b.num_heads for b in net.blocks if isinstance(b, EncoderBlock)] == [3] * 12


@pytest.mark.parametrize("channels,size,tokens", [(1, 28, 50), (3, 32, 65)])
def test_vit_cpu_runs_on_grey_28_and_colour_32(channels: int, size: int, tokens: int) -> None:
    torch.manual_seed(0)
    net = build_network("vit-cpu", 7, in_channels=channels, image_size=size).eval()
    assert net.level_shapes() == [(channels, size, size), *[(tokens, 64)] * 5, (64,)]
    x = torch.randn(3, channels, size, size)
    with torch.no_grad():
        logits = net(x)
    assert logits.shape == (3, 7) and torch.isfinite(logits).all()
    assert not torch.allclose(logits[0], logits[1])  # the classifier is not zero-initialised
    autoencoder = build_autoencoder("vit-cpu", channels, size)
    assert autoencoder(x).shape == x.shape


def test_splitting_at_every_level_and_recomposing_equals_the_whole_network() -> None:
    torch.manual_seed(0)
    net = build_network("vit-cpu", 10, in_channels=1).eval()
    last = net.num_levels - 1
    modules = {
        0: [build_module("vit-cpu", 0, 1).eval()],
        2: [build_module("vit-cpu", 2, 1).eval()],
        last: [build_module("vit-cpu", last, 1).eval()],
    }
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        for mods in ({}, modules):
            whole = net(x, mods)
            for level in range(net.num_levels + 1):
                h = net.run_to_level(x, level, mods)
                assert torch.allclose(net.run_from_level(h, level, mods), whole, atol=1e-5), (
                    level,
                    bool(mods),
                )
        assert not torch.allclose(net(x, modules), net(x), atol=1e-3)  # the modules do act
        assert torch.equal(net.forward_features(x)[1], net.run_to_level(x, last))


def test_every_candidate_module_maps_its_level_shape_to_itself() -> None:
    net = build_network("vit-cpu", 10, in_channels=3, image_size=32)
    for level, shape in enumerate(net.level_shapes()):
        module = build_module("vit-cpu", level, in_channels=3, image_size=32)
        assert module(torch.randn(2, *shape)).shape == (2, *shape), level
    assert isinstance(build_module("vit-cpu", 3), EncoderBlock)
    assert [module_name("vit-cpu", j) for j in (0, 1, 5, 6)] == [
        "ConvModule0",
        "EncoderModule1",
        "EncoderModule5",
        "FullyConnectedModule6",
    ]


def test_vits_are_offered_to_experiments_and_built_by_name() -> None:
    assert set(VIT_ARCHITECTURES) == {"vit-cpu", "vit"} and set(VIT_ARCHITECTURES) <= set(ARCHITECTURES)
    with pytest.raises(UserError, match="known architectures: .*vit-cpu, vit"):
        build_network("vit-small", 10)


def test_image_sizes_that_patches_do_not_tile_are_refused() -> None:
    with pytest.raises(UserError, match="image_size 30 is not a multiple of 4"):
        build_network("vit-cpu", 10, in_channels=1, image_size=30)
    with pytest.raises(UserError, match="module level 7 does not exist"):
        build_module("vit-cpu", 7)
    net = build_network("vit-cpu", 10, in_channels=1)
    with pytest.raises(ValueError, match="built for 28x28 images, got 30x28"):
        net(torch.zeros(1, 1, 30, 28))


def test_vit_cpu_is_deterministic_given_the_seed_and_fits_a_fixed_batch() -> None:
    def train() -> tuple[list[float], dict[str, torch.Tensor]]:
        torch.manual_seed(0)
        net = build_network("vit-cpu", 10, in_channels=1, image_size=12)  # 9 patches: cheap
        x, y = torch.randn(16, 1, 12, 12), torch.randint(0, 10, (16,))
        opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, net.state_dict()

    (losses, state), (again, state_again) = train(), train()
    assert losses[-1] < 0.2 * losses[0]
    assert losses == again and all(torch.equal(state[k], state_again[k]) for k in state)


@pytest.mark.slow
def test_all_four_methods_run_end_to_end_on_vit_cpu_at_the_smoke_budget(tmp_path: Path) -> None:
    """The demo's ERM, Contrastive, Modular and both ImgSpace systems with `architecture: vit-cpu`: the ViT's
    levels, modules and auto-encoders go through the real stages, evaluations and results, offline."""
    import yaml

    from comprobust.pipeline import launch
    from comprobust.planning import resolve
    from comprobust.results import open_store

    body = yaml.safe_load((Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml").read_text())
    body.update(
        architecture="vit-cpu",
        output_root=str(tmp_path / "outputs"),
        wandb={"project": "t", "mode": "offline"},
        compositions=["Identity", "Contrast", "Invert", "Contrast-Invert"],
    )
    body["dataset"]["root"] = str(tmp_path / "data")
    path = tmp_path / "vit-demo.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    experiment, runs = resolve(path, smoke=True)
    launch(experiment, runs, experiment.cluster.with_executor("inline"))
    results = open_store(experiment, source="offline").results()
    assert set(results["method"]) == {"ERM", "Contrastive", "Modular", "ImgSpace-Identity", "ImgSpace-Joint"}
    assert len(results) == 5 * 4
    assert {run.architecture for run in runs} == {"vit-cpu"}
