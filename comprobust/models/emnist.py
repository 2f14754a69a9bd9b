"""EMNIST networks (paper §4.1, §4.4, §4.5): a DTN-like 4-conv network, candidate modules, auto-encoder.

Conv blocks are Conv2d -> Dropout2d -> ReLU with no BatchNorm; PyTorch default initialisation throughout.
At 28x28 with 3 channels and 47 classes the network has 3,216,815 parameters.
"""

from __future__ import annotations

from torch import nn

from comprobust.models.blocks import AutoEncoder, BlockNetwork
from comprobust.models.layers import Stack, conv_size

IMAGE_SIZE = 28
NUM_LEVELS = 6
BLOCK_NAMES = ("ConvBlock1", "ConvBlock2", "ConvBlock3", "ConvBlock4", "FullyConnected", "Classifier")
_CHANNELS = (64, 128, 256, 256)  # output channels of the conv blocks
_DROPOUT = (0.1, 0.3, 0.5, 0.5)  # Dropout2d of the conv blocks
_MODULE_DROPOUT = (0.3, 0.3, 0.5, 0.5)  # Dropout2d of the modules at levels 1..4


def module_name(level: int) -> str:
    """The paper's checkpoint name of the module at ``level`` (``ConvModule0..4``, ``FullyConnectedModule5``)."""
    return f"FullyConnectedModule{level}" if level == NUM_LEVELS - 1 else f"ConvModule{level}"


def _conv_drop_relu(cin: int, cout: int, dropout: float, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 5, stride, 2), nn.Dropout2d(dropout), nn.ReLU()]


def build_network(num_classes: int, in_channels: int, image_size: int) -> BlockNetwork:
    """The §4.1 network: 4 conv blocks (k5 s2 p2), an FC block (-> 512, Dropout 0.5), a linear classifier."""
    blocks: list[nn.Module] = []
    cin, side = in_channels, image_size
    for cout, dropout in zip(_CHANNELS, _DROPOUT):
        blocks.append(nn.Sequential(*_conv_drop_relu(cin, cout, dropout, 2)))
        cin, side = cout, conv_size(side, 5, 2, 2)
    blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, 512), nn.Dropout(0.5), nn.ReLU()))
    blocks.append(nn.Linear(512, num_classes))
    return BlockNetwork(blocks, BLOCK_NAMES, (in_channels, image_size, image_size), num_classes, "emnist")


def build_module(level: int, in_channels: int, image_size: int) -> nn.Module:
    """The §4.4 EMNIST candidate module for ``level`` (maps the level's shape to itself)."""
    if level == 0:
        stack = Stack(image_size)
        stack.conv(in_channels, 64, 5, 2, 2).add(nn.Dropout2d(0.1), nn.ReLU())
        stack.conv(64, 64, 5, 2, 2).add(nn.Dropout2d(0.3), nn.ReLU())
        sizes = stack.sizes
        stack.convt(64, 64, 5, 2, 2, to=sizes[1]).add(nn.Dropout2d(0.3), nn.ReLU())
        stack.convt(64, in_channels, 5, 2, 2, to=sizes[0]).add(nn.Tanh())
        return stack.sequential()
    if level < NUM_LEVELS - 1:
        c, dropout = _CHANNELS[level - 1], _MODULE_DROPOUT[level - 1]
        return nn.Sequential(*_conv_drop_relu(c, c, dropout, 1), *_conv_drop_relu(c, c, dropout, 1))
    return nn.Sequential(
        nn.Linear(512, 512), nn.Dropout(0.5), nn.ReLU(), nn.Linear(512, 512), nn.Dropout(0.5), nn.ReLU()
    )


def build_autoencoder(in_channels: int, image_size: int) -> AutoEncoder:
    """The §4.5 EMNIST auto-encoder (no BatchNorm, Tanh output for data in [-1, 1]); 2,058,243 parameters
    with 3 channels."""
    enc = Stack(image_size)
    enc.conv(in_channels, 64, 5, 2, 2).add(nn.Dropout2d(0.1), nn.ReLU())
    enc.conv(64, 128, 5, 2, 2).add(nn.Dropout2d(0.3), nn.ReLU())
    enc.conv(128, 256, 5, 2, 2).add(nn.Dropout2d(0.5), nn.ReLU())
    sizes = enc.sizes
    dec = Stack(enc.size)
    dec.convt(256, 128, 5, 2, 2, to=sizes[2]).add(nn.Dropout2d(0.5), nn.ReLU())
    dec.convt(128, 64, 5, 2, 2, to=sizes[1]).add(nn.Dropout2d(0.3), nn.ReLU())
    dec.convt(64, in_channels, 5, 2, 2, to=sizes[0]).add(nn.Tanh())
    return AutoEncoder(enc.sequential(), dec.sequential())
