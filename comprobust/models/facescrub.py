"""FaceScrub networks (paper §4.3, §4.4, §4.5): torchvision Inception-v3 at 100x100, split into 17 blocks.

No input transform, no dropout, no auxiliary head. Initialisation follows the reference (torchvision 0.10 with
``init_weights=True``): every Conv2d/Linear weight of the Inception parts is drawn from a normal with std 0.1
truncated at +-2 std (scipy ``truncnorm(-2, 2)``), BatchNorm weight 1 / bias 0. Current torchvision truncates
at +-2 *absolute*, i.e. not at all for std 0.1, so the truncation is applied here. The classifier is a fresh
``nn.Linear(2048, C)``. Candidate modules at levels 7..13 and 15 are fresh Inception blocks of the same type
and configuration as the named Mixed block, initialised the same way (a "copy from a new random
Inception-v3").
"""

from __future__ import annotations

from torch import nn
from torchvision.models import inception_v3
from torchvision.models.inception import BasicConv2d, InceptionA, InceptionC, InceptionE

from comprobust.models.blocks import AutoEncoder, BlockNetwork
from comprobust.models.layers import Stack, bn_relu, image_space_module

IMAGE_SIZE = 100
MIN_IMAGE_SIZE = 75
NUM_LEVELS = 17
BLOCK_NAMES = tuple(f"InceptionBlock{i}" for i in range(1, 17)) + ("InceptionClassifier",)
_CONV_MODULE_CHANNELS = {1: 32, 2: 32, 3: 64, 4: 80, 5: 192, 6: 256, 14: 1280}
_MIXED_MODULES = {  # level -> factory of a block like the named Mixed block
    7: lambda: InceptionA(288, pool_features=64),
    8: lambda: InceptionA(288, pool_features=64),  # Mixed_5d
    9: lambda: InceptionC(768, channels_7x7=128),  # Mixed_6b
    10: lambda: InceptionC(768, channels_7x7=160),
    11: lambda: InceptionC(768, channels_7x7=160),  # 6c, 6d
    12: lambda: InceptionC(768, channels_7x7=192),
    13: lambda: InceptionC(768, channels_7x7=192),  # Mixed_6e
    15: lambda: InceptionE(2048),  # Mixed_7c
}


def module_name(level: int) -> str:
    """The paper's checkpoint name of the module at ``level`` (``InceptionModule0..16``)."""
    return f"InceptionModule{level}"


def inception_init_(module: nn.Module, std: float = 0.1) -> nn.Module:
    """Re-initialise in place as the reference Inception-v3: truncated normal (+-2 std) weights, BN 1/0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2 * std, b=2 * std)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    return module


def build_network(num_classes: int, in_channels: int, image_size: int) -> BlockNetwork:
    """Inception-v3 as 16 blocks (the last with global average pool) + Linear(2048, C)."""
    net = inception_v3(weights=None, aux_logits=False, init_weights=False)
    if in_channels != 3:
        net.Conv2d_1a_3x3 = BasicConv2d(in_channels, 32, kernel_size=3, stride=2)
    inception_init_(net)
    blocks: list[nn.Module] = [
        net.Conv2d_1a_3x3,
        net.Conv2d_2a_3x3,
        net.Conv2d_2b_3x3,
        nn.Sequential(net.maxpool1, net.Conv2d_3b_1x1),
        net.Conv2d_4a_3x3,
        nn.Sequential(net.maxpool2, net.Mixed_5b),
        net.Mixed_5c,
        net.Mixed_5d,
        net.Mixed_6a,
        net.Mixed_6b,
        net.Mixed_6c,
        net.Mixed_6d,
        net.Mixed_6e,
        net.Mixed_7a,
        net.Mixed_7b,
        nn.Sequential(net.Mixed_7c, nn.AdaptiveAvgPool2d(1), nn.Flatten()),
        nn.Linear(2048, num_classes),
    ]
    return BlockNetwork(blocks, BLOCK_NAMES, (in_channels, image_size, image_size), num_classes, "facescrub")


def build_module(level: int, in_channels: int, image_size: int) -> nn.Module:
    """The §4.4 FaceScrub candidate module for ``level`` (maps the level's shape to itself)."""
    if level == 0:
        return image_space_module(in_channels, image_size, 5, (1, 2, 2))
    if level in _CONV_MODULE_CHANNELS:
        c = _CONV_MODULE_CHANNELS[level]
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [nn.Conv2d(c, c, 5, 1, 2), *bn_relu(c)]
        return nn.Sequential(*layers)
    if level in _MIXED_MODULES:
        return inception_init_(_MIXED_MODULES[level]())
    layers = []
    for _ in range(3):
        layers += [nn.Linear(2048, 2048), nn.BatchNorm1d(2048), nn.ReLU()]
    return nn.Sequential(*layers)


def build_autoencoder(in_channels: int, image_size: int) -> AutoEncoder:
    """The §4.5 FaceScrub auto-encoder: 5 strided k5 convs down to 4x4 and 5 transposed convs back."""
    enc = Stack(image_size)
    for cin, cout in ((in_channels, 64), (64, 128), (128, 256), (256, 256), (256, 512)):
        enc.conv(cin, cout, 5, 2, 2).add(*bn_relu(cout))
    sizes = enc.sizes
    dec = Stack(enc.size)
    for (cin, cout), target in zip(((512, 256), (256, 256), (256, 128), (128, 64)), sizes[4:0:-1]):
        dec.convt(cin, cout, 5, 2, 2, to=target).add(*bn_relu(cout))
    dec.convt(64, in_channels, 5, 2, 2, to=sizes[0])
    return AutoEncoder(enc.sequential(), dec.sequential())
