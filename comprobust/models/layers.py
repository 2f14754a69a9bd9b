"""Small helpers shared by the architecture files: spatial sizes and a conv/transposed-conv stack builder."""

from __future__ import annotations

from torch import nn


def conv_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output side of a square Conv2d / MaxPool2d (no dilation)."""
    return (size + 2 * padding - kernel) // stride + 1


def convt_output_padding(size: int, target: int, kernel: int, stride: int, padding: int) -> int:
    """The ``output_padding`` that makes a ConvTranspose2d map side ``size`` to side ``target``."""
    op = target - ((size - 1) * stride - 2 * padding + kernel)
    if not 0 <= op < max(stride, 1):
        raise ValueError(f"a transposed conv (k{kernel} s{stride} p{padding}) cannot map {size} to {target}")
    return op


class Stack:
    """Builds an ``nn.Sequential`` of layers while tracking the square spatial side (``size``, ``sizes``).

    ``conv`` and ``convt`` append a layer; ``convt(..., to=n)`` picks the output padding that reaches side n,
    so a decoder can mirror its encoder's sizes for any input size.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.sizes = [size]
        self.layers: list[nn.Module] = []

    def conv(self, cin: int, cout: int, kernel: int, stride: int, padding: int, bias: bool = True) -> Stack:
        self.layers.append(nn.Conv2d(cin, cout, kernel, stride, padding, bias=bias))
        self._resize(conv_size(self.size, kernel, stride, padding))
        return self

    def convt(self, cin: int, cout: int, kernel: int, stride: int, padding: int, to: int) -> Stack:
        op = convt_output_padding(self.size, to, kernel, stride, padding)
        self.layers.append(nn.ConvTranspose2d(cin, cout, kernel, stride, padding, output_padding=op))
        self._resize(to)
        return self

    def add(self, *layers: nn.Module) -> Stack:
        self.layers.extend(layers)
        return self

    def _resize(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"the feature map shrinks to {size} pixels; the input image is too small")
        self.size = size
        self.sizes.append(size)

    def sequential(self) -> nn.Sequential:
        return nn.Sequential(*self.layers)


def bn_relu(channels: int) -> list[nn.Module]:
    """BatchNorm2d + ReLU, the activation of the CIFAR and FaceScrub modules and auto-encoders."""
    return [nn.BatchNorm2d(channels), nn.ReLU()]


def image_space_module(
    in_channels: int, image_size: int, kernel: int, strides: tuple[int, int, int]
) -> nn.Sequential:
    """The level-0 candidate module of the CIFAR and FaceScrub networks (paper section 4.4): three convolutions
    (32, 64, 64 channels, padding 2, `strides`) and three transposed convolutions mirroring them back to the
    image's shape, each but the last followed by BatchNorm and ReLU; no output activation."""
    stack = Stack(image_size)
    for cin, cout, stride in ((in_channels, 32, strides[0]), (32, 64, strides[1]), (64, 64, strides[2])):
        stack.conv(cin, cout, kernel, stride, 2).add(*bn_relu(cout))
    sizes = stack.sizes
    stack.convt(64, 64, kernel, strides[2], 2, to=sizes[2]).add(*bn_relu(64))
    stack.convt(64, 32, kernel, strides[1], 2, to=sizes[1]).add(*bn_relu(32))
    stack.convt(32, in_channels, kernel, strides[0], 2, to=sizes[0])
    return stack.sequential()
