"""A small network for CPU demos, with the same block/level interface as the paper's networks.

Why: the paper's networks take hours per stage on a GPU; the offline demo must run every method end to end
on 2 CPU cores in minutes. This network trains to >90% on 28x28 MNIST digits in a few epochs, and a
forward+backward pass of a 256-batch at 28x28 takes about 20 ms on 2 cores. It works for any channel count
and image size (28, 32, 100, ...).

Layout at 28x28 (levels = inputs of the blocks; the conv maps are 16/8/4 at 32x32 and 50/25/13 at 100x100):

| block (name)         | layers                                      | output    | level of its input |
|----------------------|---------------------------------------------|-----------|--------------------|
| 0 ``ConvBlock1``     | Conv C->16 k3 s2 p1 (no bias), BN, ReLU     | 16x14x14  | 0: C x 28 x 28     |
| 1 ``ConvBlock2``     | Conv 16->32 k3 s2 p1 (no bias), BN, ReLU    | 32x7x7    | 1: 16 x 14 x 14    |
| 2 ``ConvBlock3``     | Conv 32->64 k3 s2 p1 (no bias), BN, ReLU    | 64x4x4    | 2: 32 x 7 x 7      |
| 3 ``FullyConnected`` | Flatten, Linear 1024->128, ReLU             | 128       | 3: 64 x 4 x 4      |
| 4 ``Classifier``     | Linear 128->C_out                           | C_out     | 4: 128 (penult.)   |

Candidate modules (names ``ConvModule0..3``, ``FullyConnectedModule4``), without residual connections like
the paper's: level 0 an image-space conv auto-encoder-like module (Conv C->16 s2 + BN + ReLU, Conv 16->16 +
BN + ReLU, ConvT 16->C s2, linear output); levels 1..3 two [Conv k3 s1 p1 + BN + ReLU] at the level's width;
level 4 two [Linear 128->128 + BN1d + ReLU]. Auto-encoder: Conv C->16 s2, Conv 16->32 s2 (each + BN +
ReLU), ConvT 32->16 s2 + BN + ReLU, ConvT 16->C s2 with a linear output. PyTorch default initialisation.
"""

from __future__ import annotations

from torch import nn

from comprobust.models.blocks import AutoEncoder, BlockNetwork
from comprobust.models.layers import Stack, conv_size

IMAGE_SIZE = 28
NUM_LEVELS = 5
BLOCK_NAMES = ("ConvBlock1", "ConvBlock2", "ConvBlock3", "FullyConnected", "Classifier")
CHANNELS = (16, 32, 64)
FEATURES = 128


def module_name(level: int) -> str:
    """Checkpoint name of the module at ``level`` (``ConvModule0..3``, ``FullyConnectedModule4``)."""
    return f"FullyConnectedModule{level}" if level == NUM_LEVELS - 1 else f"ConvModule{level}"


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def build_network(num_classes: int, in_channels: int, image_size: int) -> BlockNetwork:
    """Three stride-2 conv blocks, an FC block (-> 128) and a linear classifier."""
    blocks: list[nn.Module] = []
    cin, side = in_channels, image_size
    for cout in CHANNELS:
        blocks.append(nn.Sequential(*_conv_bn_relu(cin, cout, 2)))
        cin, side = cout, conv_size(side, 3, 2, 1)
    blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, FEATURES), nn.ReLU()))
    blocks.append(nn.Linear(FEATURES, num_classes))
    return BlockNetwork(blocks, BLOCK_NAMES, (in_channels, image_size, image_size), num_classes, "small")


def image_module(in_channels: int, image_size: int) -> nn.Sequential:
    """The level-0 module: image -> image of the same shape (also the ViTs' level-0 module)."""
    stack = Stack(image_size)
    stack.conv(in_channels, 16, 3, 2, 1).add(nn.BatchNorm2d(16), nn.ReLU())
    stack.conv(16, 16, 3, 1, 1).add(nn.BatchNorm2d(16), nn.ReLU())
    stack.convt(16, in_channels, 3, 2, 1, to=image_size)
    return stack.sequential()


def feature_module(width: int) -> nn.Sequential:
    """The penultimate-level module: two [Linear + BN1d + ReLU] at ``width`` (also the ViTs')."""
    return nn.Sequential(
        nn.Linear(width, width),
        nn.BatchNorm1d(width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.BatchNorm1d(width),
        nn.ReLU(),
    )


def build_module(level: int, in_channels: int, image_size: int) -> nn.Module:
    """The candidate module for ``level`` (maps the level's shape to itself)."""
    if level == 0:
        return image_module(in_channels, image_size)
    if level < NUM_LEVELS - 1:
        c = CHANNELS[level - 1]
        return nn.Sequential(*_conv_bn_relu(c, c, 1), *_conv_bn_relu(c, c, 1))
    return feature_module(FEATURES)


def build_autoencoder(in_channels: int, image_size: int) -> AutoEncoder:
    """A two-level conv auto-encoder (image -> image, same shape)."""
    enc = Stack(image_size)
    enc.conv(in_channels, 16, 3, 2, 1).add(nn.BatchNorm2d(16), nn.ReLU())
    enc.conv(16, 32, 3, 2, 1).add(nn.BatchNorm2d(32), nn.ReLU())
    sizes = enc.sizes
    dec = Stack(enc.size)
    dec.convt(32, 16, 3, 2, 1, to=sizes[1]).add(nn.BatchNorm2d(16), nn.ReLU())
    dec.convt(16, in_channels, 3, 2, 1, to=sizes[0])
    return AutoEncoder(enc.sequential(), dec.sequential())
