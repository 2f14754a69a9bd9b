"""Networks as lists of blocks with numbered levels, their candidate modules and image-space auto-encoders.

Architectures (paper §4): ``emnist`` (4-conv DTN-like network, 28x28), ``cifar`` (ResNet-18 without max-pool,
32x32), ``facescrub`` (Inception-v3 at 100x100) and ``small`` (a CPU-demo network, see
``comprobust.models.small``), plus the vision transformers ``vit-cpu`` and ``vit`` (``comprobust.models.vit``).
Level j of a network is the input of its block j; ``build_module(arch, j)`` is the candidate module that maps
the level-j shape to itself and is inserted just before block j (``BlockNetwork.forward(x, modules={j: [...]})``).
"""

from __future__ import annotations

import operator
from types import ModuleType
from typing import Any

from torch import nn

from comprobust.architectures import ARCHITECTURES, VIT_ARCHITECTURES
from comprobust.errors import UserError
from comprobust.models import cifar, emnist, facescrub, small, vit
from comprobust.models.blocks import AutoEncoder, BlockNetwork
from comprobust.registry import Registry

__all__ = [
    "ARCHITECTURES",
    "VIT_ARCHITECTURES",
    "AutoEncoder",
    "BlockNetwork",
    "ImageSize",
    "build_autoencoder",
    "build_module",
    "build_network",
    "default_image_size",
    "module_name",
    "num_levels",
]

NETWORKS: Registry[ModuleType | vit.ViT] = Registry("architecture")
"""Architecture name -> what builds its networks, modules and auto-encoders (a module of this package or a ViT
configuration); the names are `ARCHITECTURES + VIT_ARCHITECTURES`."""
for _name, _builder in (
    ("emnist", emnist),
    ("cifar", cifar),
    ("facescrub", facescrub),
    ("small", small),
    ("vit-cpu", vit.VIT_CPU),
    ("vit", vit.VIT_TI),
):
    NETWORKS.add(_name, _builder)


def _arch(arch: str) -> ModuleType | vit.ViT:
    return NETWORKS.require(arch)


def _build(arch: str) -> Any:
    """What builds `arch`'s models; `_image_size` has refused (H, W) for those without `RECTANGULAR`."""
    return _arch(arch)


def _positive(name: str, value: Any) -> int:
    try:
        number = operator.index(value)  # int and numpy integers, not floats or strings
    except TypeError:
        number = 0
    if isinstance(value, bool) or number < 1:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return number


ImageSize = int | tuple[int, int]
"""An image's side (square) or (H, W)."""


def _image_size(arch: str, image_size: ImageSize | None, kind: str = "network") -> ImageSize:
    """The checked image size: an int for square images ((n, n) becomes n, so square networks are built exactly
    as before), (H, W) for rectangular ones, which only the kinds of model ("network", "module", "autoencoder")
    an architecture lists in `RECTANGULAR` accept."""
    spec = _arch(arch)
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2:
            raise UserError(f"image_size must be a side or (H, W), got {image_size!r}")
        height, width = (_positive("image_size", s) for s in image_size)
        if height != width and kind not in getattr(spec, "RECTANGULAR", ()):
            what = "network" if kind == "network" else f"network's {kind}s"
            raise UserError(
                f"the {arch!r} {what} need{'s' if kind == 'network' else ''} square images, got {height}x{width}; "
                "use the 'small' network"
            )
        sides: tuple[int, ...] = (height, width)
    else:
        sides = (spec.IMAGE_SIZE if image_size is None else _positive("image_size", image_size),)
    minimum = getattr(spec, "MIN_IMAGE_SIZE", 8)
    if min(sides) < minimum:
        shown = "x".join(str(s) for s in sides)
        raise UserError(
            f"image_size {shown} is too small for the {arch!r} network: use at least {minimum} "
            f"(its default is {spec.IMAGE_SIZE})"
        )
    return sides[0] if len(sides) == 1 or sides[0] == sides[1] else (sides[0], sides[1])


def _level(arch: str, level: Any) -> int:
    n = _arch(arch).NUM_LEVELS
    try:
        number = operator.index(level)
    except TypeError:
        number = -1
    if isinstance(level, bool) or not 0 <= number < n:
        raise UserError(f"module level {level!r} does not exist for the {arch!r} network: use 0..{n - 1}")
    return number


def default_image_size(arch: str) -> int:
    """The paper's image side for ``arch`` (28 emnist, 32 cifar, 100 facescrub, 28 small and vit-cpu, 32 vit)."""
    return _arch(arch).IMAGE_SIZE


def num_levels(arch: str) -> int:
    """Number of levels (= blocks) of the ``arch`` network."""
    return _arch(arch).NUM_LEVELS


def module_name(arch: str, level: int) -> str:
    """The paper's checkpoint name of the candidate module at ``level`` (e.g. ``ConvModule1``)."""
    return _arch(arch).module_name(_level(arch, level))


def build_network(
    arch: str, num_classes: int, in_channels: int = 3, image_size: ImageSize | None = None
) -> BlockNetwork:
    """A freshly initialised ``arch`` classifier as a ``BlockNetwork`` (image side defaults to the arch's)."""
    size = _image_size(arch, image_size)
    return _build(arch).build_network(
        _positive("num_classes", num_classes), _positive("in_channels", in_channels), size
    )


def build_module(
    arch: str, level: int, in_channels: int = 3, image_size: ImageSize | None = None
) -> nn.Module:
    """A freshly initialised candidate module for ``level`` of ``arch`` (level shape -> same shape)."""
    size = _image_size(arch, image_size, "module")
    return _build(arch).build_module(_level(arch, level), _positive("in_channels", in_channels), size)


def build_autoencoder(arch: str, in_channels: int = 3, image_size: ImageSize | None = None) -> AutoEncoder:
    """A freshly initialised image-space auto-encoder for ``arch`` (image -> image of the same shape)."""
    size = _image_size(arch, image_size, "autoencoder")
    return _build(arch).build_autoencoder(_positive("in_channels", in_channels), size)
