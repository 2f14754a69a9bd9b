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

