"""A small network for CPU demos, with the same block/level interface as the paper's networks.

Why: the paper's networks take hours per stage on a GPU; the offline demo must run every method end to end
on 2 CPU cores in minutes. This network trains to >90% on 28x28 MNIST digits in a few epochs, and a
forward+backward pass of a 256-batch at 28x28 takes about 20 ms on 2 cores. It works for any channel count
and image size (28, 32, 100, ...), square or (H, W) (each axis shrinks as a square side would: 56x28 -> 28x14 ->
14x7 -> 7x4, so the FC block reads 64x7x4).

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
from comprobust.models.layers import conv_size, convt_output_padding

IMAGE_SIZE = 28
RECTANGULAR = ("network", "module", "autoencoder")  # builds (H, W) images too (dominoes is 1x56x28)
NUM_LEVELS = 5
BLOCK_NAMES = ("ConvBlock1", "ConvBlock2", "ConvBlock3", "FullyConnected", "Classifier")
CHANNELS = (16, 32, 64)
FEATURES = 128


def module_name(level: int) -> str:
    """Checkpoint name of the module at ``level`` (``ConvModule0..3``, ``FullyConnectedModule4``)."""
    return f"FullyConnectedModule{level}" if level == NUM_LEVELS - 1 else f"ConvModule{level}"


def _conv_bn_relu(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def _sides(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size[0], image_size[1]) if isinstance(image_size, tuple) else (image_size, image_size)


def _conv_sides(sides: tuple[int, int], kernel: int, stride: int, padding: int) -> tuple[int, int]:
    height, width = (conv_size(side, kernel, stride, padding) for side in sides)
    if min(height, width) < 1:
        raise ValueError(f"the feature map shrinks to {height}x{width} pixels; the input image is too small")
    return height, width


def _convt(cin: int, cout: int, sides: tuple[int, int], to: tuple[int, int]) -> nn.ConvTranspose2d:
    """ConvTranspose2d k3 s2 p1 from `sides` to `to`, per axis (one int output padding on square maps)."""
    pads = (convt_output_padding(sides[0], to[0], 3, 2, 1), convt_output_padding(sides[1], to[1], 3, 2, 1))
    return nn.ConvTranspose2d(cin, cout, 3, 2, 1, output_padding=pads[0] if pads[0] == pads[1] else pads)


def build_network(num_classes: int, in_channels: int, image_size: int | tuple[int, int]) -> BlockNetwork:
    """Three stride-2 conv blocks, an FC block (-> 128) and a linear classifier; `image_size` is a side or
    (H, W) (each axis shrinks as a square side would)."""
    blocks: list[nn.Module] = []
    cin, sides = in_channels, _sides(image_size)
    for cout in CHANNELS:
        blocks.append(nn.Sequential(*_conv_bn_relu(cin, cout, 2)))
        cin, sides = cout, _conv_sides(sides, 3, 2, 1)
    blocks.append(nn.Sequential(nn.Flatten(), nn.Linear(cin * sides[0] * sides[1], FEATURES), nn.ReLU()))
    blocks.append(nn.Linear(FEATURES, num_classes))
    return BlockNetwork(blocks, BLOCK_NAMES, (in_channels, *_sides(image_size)), num_classes, "small")


def image_module(in_channels: int, image_size: int | tuple[int, int]) -> nn.Sequential:
    """The level-0 module: image -> image of the same shape (also the ViTs' level-0 module)."""
    sides = _sides(image_size)
    inner = _conv_sides(sides, 3, 2, 1)
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, 2, 1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, 1, 1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        _convt(16, in_channels, inner, sides),
    )


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


def build_module(level: int, in_channels: int, image_size: int | tuple[int, int]) -> nn.Module:
    """The candidate module for ``level`` (maps the level's shape to itself)."""
    if level == 0:
        return image_module(in_channels, image_size)
    if level < NUM_LEVELS - 1:
        c = CHANNELS[level - 1]
        return nn.Sequential(*_conv_bn_relu(c, c, 1), *_conv_bn_relu(c, c, 1))
    return feature_module(FEATURES)


def build_autoencoder(in_channels: int, image_size: int | tuple[int, int]) -> AutoEncoder:
    """A two-level conv auto-encoder (image -> image, same shape)."""
    sides = [_sides(image_size)]
    for _ in range(2):
        sides.append(_conv_sides(sides[-1], 3, 2, 1))
    encoder = nn.Sequential(
        nn.Conv2d(in_channels, 16, 3, 2, 1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
    )
    decoder = nn.Sequential(
        _convt(32, 16, sides[2], sides[1]),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        _convt(16, in_channels, sides[1], sides[0]),
    )
    return AutoEncoder(encoder, decoder)
