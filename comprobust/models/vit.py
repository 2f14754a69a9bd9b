"""Vision transformers with the block/level interface: ``vit-cpu`` (CPU demos) and ``vit`` (ViT-Ti/4).

Built from torchvision's ``EncoderBlock`` (its ``VisionTransformer`` hard-codes 3 input channels). With patch p,
width D, depth d and a square image of side S (a multiple of p), there are T = (S/p)^2 patch tokens:

| block (name)                  | layers                                                          | level of its input |
|-------------------------------|-----------------------------------------------------------------|--------------------|
| 0 ``PatchEmbed``              | Conv C->D k=s=p, flatten, prepend class token, add position emb | 0: C x S x S       |
| 1..d ``EncoderBlock1..d``     | torchvision EncoderBlock (pre-norm attention + MLP, no dropout) | j: (T+1) x D       |
| d+1 ``ClassToken``            | LayerNorm (eps 1e-6), keep the class token                      | d+1: (T+1) x D     |
| d+2 ``Classifier``            | Linear D -> C_out                                               | d+2: D (penult.)   |

Candidate modules (``ConvModule0``, ``EncoderModule1..d+1``, ``FullyConnectedModule<d+2>``): ``small``'s image-space
module at level 0, a fresh EncoderBlock at every token level, ``small``'s feature module at width D at the
penultimate level; the auto-encoder is ``small``'s. So Modular and ImgSpace can use a ViT as they use the CNNs.

Initialisation is torchvision's ViT (patch conv truncated normal with std sqrt(1/fan_in) and zero bias, position
embedding normal std 0.02, zero class token, EncoderBlock's own), except the classifier: a fresh ``nn.Linear`` like
the other networks' (torchvision zero-initialises its head).

``vit-cpu`` (p 4, D 64, depth 4, 4 heads, MLP 128) has 139,018 parameters at 1x28x28 with 10 classes (``small``:
155,898); ``vit`` is ViT-Ti/4 (p 4, D 192, depth 12, 3 heads, MLP 768; 5.4M parameters), for 32x32 colour images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.vision_transformer import EncoderBlock

from comprobust.errors import UserError
from comprobust.models import small
from comprobust.models.blocks import AutoEncoder, BlockNetwork


class PatchEmbed(nn.Module):
    """Image (N, C, H, W) -> tokens (N, T+1, D): patch projection, class token first, position embedding added."""

    def __init__(self, in_channels: int, width: int, patch: int, image_size: int) -> None:
        super().__init__()
        self.image_size = image_size
        self.proj = nn.Conv2d(in_channels, width, kernel_size=patch, stride=patch)
        nn.init.trunc_normal_(self.proj.weight, std=math.sqrt(1 / (in_channels * patch * patch)))
        assert self.proj.bias is not None
        nn.init.zeros_(self.proj.bias)
        self.class_token = nn.Parameter(torch.zeros(1, 1, width))
        tokens = (image_size // patch) ** 2 + 1
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, width).normal_(std=0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            raise ValueError(
                f"this ViT was built for {self.image_size}x{self.image_size} images, got "
                f"{x.shape[-2]}x{x.shape[-1]}"
            )
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        return torch.cat([self.class_token.expand(len(x), -1, -1), tokens], dim=1) + self.pos_embedding


class ClassToken(nn.Module):
    """Tokens (N, T+1, D) -> the class token (N, D)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


@dataclass(frozen=True)
class ViT:
    """One ViT configuration; it offers what the model registry asks of an architecture (the names of an
    architecture module: ``IMAGE_SIZE``, ``MIN_IMAGE_SIZE``, ``NUM_LEVELS``, ``module_name``, ``build_*``)."""

    name: str
    patch: int
    width: int
    depth: int
    heads: int
    mlp: int
    IMAGE_SIZE: int

    @property
    def MIN_IMAGE_SIZE(self) -> int:  # noqa: N802 (the registry's name for it)
        return self.patch

    @property
    def NUM_LEVELS(self) -> int:  # noqa: N802
        return self.depth + 3

    def block_names(self) -> tuple[str, ...]:
        """``PatchEmbed``, ``EncoderBlock1..depth``, ``ClassToken``, ``Classifier``."""
        return (
            "PatchEmbed",
            *(f"EncoderBlock{i}" for i in range(1, self.depth + 1)),
            "ClassToken",
            "Classifier",
        )

    def module_name(self, level: int) -> str:
        """Checkpoint name of the module at ``level``."""
        if level == 0:
            return "ConvModule0"
        return f"FullyConnectedModule{level}" if level == self.NUM_LEVELS - 1 else f"EncoderModule{level}"

    def encoder_block(self) -> EncoderBlock:
        """A fresh torchvision EncoderBlock of this width (no dropout)."""
        return EncoderBlock(self.heads, self.width, self.mlp, dropout=0.0, attention_dropout=0.0)

    def _check_size(self, image_size: int) -> None:
        if image_size % self.patch:
            raise UserError(
                f"the {self.name!r} network cuts images into {self.patch}x{self.patch} patches: "
                f"image_size {image_size} is not a multiple of {self.patch}"
            )

    def build_network(self, num_classes: int, in_channels: int, image_size: int) -> BlockNetwork:
        """A freshly initialised ViT classifier as a ``BlockNetwork``."""
        self._check_size(image_size)
        blocks: list[nn.Module] = [PatchEmbed(in_channels, self.width, self.patch, image_size)]
        blocks += [self.encoder_block() for _ in range(self.depth)]
        blocks += [
            nn.Sequential(nn.LayerNorm(self.width, eps=1e-6), ClassToken()),
            nn.Linear(self.width, num_classes),
        ]
        return BlockNetwork(
            blocks, self.block_names(), (in_channels, image_size, image_size), num_classes, self.name
        )

    def build_module(self, level: int, in_channels: int, image_size: int) -> nn.Module:
        """The candidate module for ``level`` (maps the level's shape to itself)."""
        self._check_size(image_size)
        if level == 0:
            return small.image_module(in_channels, image_size)
        if level < self.NUM_LEVELS - 1:
            return self.encoder_block()
        return small.feature_module(self.width)

    def build_autoencoder(self, in_channels: int, image_size: int) -> AutoEncoder:
        """``small``'s image-space auto-encoder."""
        self._check_size(image_size)
        return small.build_autoencoder(in_channels, image_size)


VIT_CPU = ViT("vit-cpu", patch=4, width=64, depth=4, heads=4, mlp=128, IMAGE_SIZE=28)
VIT_TI = ViT("vit", patch=4, width=192, depth=12, heads=3, mlp=768, IMAGE_SIZE=32)
