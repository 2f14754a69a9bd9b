"""CIFAR networks (paper §4.2, §4.4, §4.5): torchvision ResNet-18 without max-pool, split into 10 blocks.

Initialisation is torchvision's (Kaiming-normal fan_out convs, BN weight 1 / bias 0, no zero-init residual);
the classifier is a fresh ``nn.Linear(512, C)``. Candidate modules at levels 1..8 are BasicBlocks taken from a
new, randomly initialised ResNet-18 (not from the backbone).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import ResNet, resnet18

from comprobust.errors import UserError
from comprobust.models.blocks import AutoEncoder, BlockNetwork
from comprobust.models.layers import Stack, bn_relu, image_space_module

IMAGE_SIZE = 32
RECTANGULAR = ("network", "module")  # (H, W) too (dominoes-cifar is 3x64x32), but not the level-0 module
NUM_LEVELS = 10
BLOCK_NAMES = tuple(f"ResnetBlock{i}" for i in range(1, 10)) + ("ResnetClassifier",)
# level -> (resnet layer, index) whose copy is the candidate module
_MODULE_SOURCE = {
    1: ("layer1", 1),
    2: ("layer1", 1),
    3: ("layer1", 1),
    4: ("layer2", 1),
    5: ("layer2", 1),
    6: ("layer3", 1),
    7: ("layer3", 1),
    8: ("layer4", 1),
}


def module_name(level: int) -> str:
    """The paper's checkpoint name of the module at ``level`` (``ResnetModule0..9``)."""
    return f"ResnetModule{level}"


def _resnet(in_channels: int) -> ResNet:
    net = resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


def build_network(num_classes: int, in_channels: int, image_size: int | tuple[int, int]) -> BlockNetwork:
    """ResNet-18 as 9 blocks (stem without max-pool, 8 BasicBlocks, the last with global average pool) and
    a Linear classifier; `image_size` is a side or (H, W) (the global pool takes any shape)."""
    r = _resnet(in_channels)
    blocks: list[nn.Module] = [nn.Sequential(r.conv1, r.bn1, r.relu)]
    for layer in (r.layer1, r.layer2, r.layer3):
        blocks.extend([layer[0], layer[1]])
    blocks.append(r.layer4[0])
    blocks.append(nn.Sequential(r.layer4[1], nn.AdaptiveAvgPool2d(1), nn.Flatten()))
    blocks.append(nn.Linear(512, num_classes))
    sides = image_size if isinstance(image_size, tuple) else (image_size, image_size)
    return BlockNetwork(blocks, BLOCK_NAMES, (in_channels, *sides), num_classes, "cifar")


def build_module(level: int, in_channels: int, image_size: int | tuple[int, int]) -> nn.Module:
    """The §4.4 CIFAR candidate module for ``level`` (maps the level's shape to itself); the level-0 module needs
    square images."""
    if level == 0:
        if isinstance(image_size, tuple):
            raise UserError(
                f"the 'cifar' network's level-0 module needs square images, got {image_size[0]}x{image_size[1]}"
            )
        return image_space_module(in_channels, image_size, 3, (1, 2, 1))
    if level in _MODULE_SOURCE:
        layer, index = _MODULE_SOURCE[level]
        return getattr(resnet18(weights=None), layer)[index]
    return nn.Sequential(
        nn.Linear(512, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
        nn.Linear(512, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(),
    )


def build_autoencoder(in_channels: int, image_size: int) -> AutoEncoder:
    """The §4.5 CIFAR auto-encoder (k3 convs with padding 2 that grow the map, BN+ReLU, linear output)."""
    enc = Stack(image_size)
    enc.conv(in_channels, 32, 3, 1, 2).add(*bn_relu(32))
    enc.conv(32, 64, 3, 2, 2).add(*bn_relu(64))
    for _ in range(3):
        enc.conv(64, 64, 3, 1, 2).add(*bn_relu(64))
    sizes = enc.sizes
    dec = Stack(enc.size)
    for target in (sizes[4], sizes[3], sizes[2]):
        dec.convt(64, 64, 3, 1, 2, to=target).add(*bn_relu(64))
    dec.convt(64, 32, 3, 2, 2, to=sizes[1]).add(*bn_relu(32))
    dec.convt(32, in_channels, 3, 1, 2, to=sizes[0])
    return AutoEncoder(enc.sequential(), dec.sequential())
