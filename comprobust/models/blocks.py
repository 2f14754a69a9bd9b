"""`BlockNetwork` (a classifier as an ordered list of blocks with numbered levels) and `AutoEncoder`.

Level j is the *input* of block j: level 0 is the image, the last level is the penultimate representation (the
input of the final linear classifier). Modules are inserted at levels: before block j every module of
``modules[j]`` runs, in list order (paper §4, §6: ordered by level first, by position in the composition
second).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

ModuleMap = Mapping[int, "Sequence[nn.Module] | nn.Module"]


class BlockNetwork(nn.Module):
    """A network run block by block, with optional modules inserted before any block.

    Attributes: ``blocks`` (``nn.ModuleList``), ``block_names`` (the paper's checkpoint names), ``arch``,
    ``input_shape`` (C, H, W) and ``num_classes``.
    """

    def __init__(
        self,
        blocks: Sequence[nn.Module],
        block_names: Sequence[str],
        input_shape: Sequence[int],
        num_classes: int,
        arch: str = "",
    ) -> None:
        super().__init__()
        if len(blocks) != len(block_names) or not blocks:
            raise ValueError(f"{len(blocks)} blocks but {len(block_names)} block names")
        self.blocks = nn.ModuleList(blocks)
        self.block_names = list(block_names)
        self.input_shape = tuple(int(s) for s in input_shape)
        self.num_classes = int(num_classes)
        self.arch = arch
        self._level_shapes: list[tuple[int, ...]] | None = None

    @property
    def num_levels(self) -> int:
        """Number of levels (= number of blocks); levels are 0..num_levels-1."""
        return len(self.blocks)

    @property
    def feature_dim(self) -> int:
        """Width D of the penultimate representation."""
        return self.level_shapes()[-1][0]

    def _modules_by_level(self, modules: ModuleMap | None) -> dict[int, list[nn.Module]]:
        if not modules:
            return {}
        out: dict[int, list[nn.Module]] = {}
        for level, mods in modules.items():
            if not isinstance(level, int) or not 0 <= level < self.num_levels:
                raise ValueError(f"module level {level!r} is not in 0..{self.num_levels - 1}")
            out[level] = [mods] if isinstance(mods, nn.Module) else list(mods)
        return out

    def _run(self, h: torch.Tensor, start: int, stop: int, mods: dict[int, list[nn.Module]]) -> torch.Tensor:
        for j in range(start, stop):
            for module in mods.get(j, ()):
                h = module(h)
            h = self.blocks[j](h)
        return h

    def _check_level(self, level: int) -> None:
        if not isinstance(level, int) or not 0 <= level <= self.num_levels:
            raise ValueError(f"level {level!r} is not in 0..{self.num_levels}")

    def forward(self, x: torch.Tensor, modules: ModuleMap | None = None) -> torch.Tensor:
        """Logits; ``modules[j]`` (a list, applied in order) runs just before block j."""
        return self._run(x, 0, self.num_levels, self._modules_by_level(modules))

    def forward_features(
        self, x: torch.Tensor, modules: ModuleMap | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, penultimate features (N, D)); the features are what the classifier sees, i.e. after any
        module at the last level."""
        mods = self._modules_by_level(modules)
        last = self.num_levels - 1
        h = self._run(x, 0, last, mods)
        for module in mods.get(last, ()):
            h = module(h)
        return self.blocks[last](h), h

    def run_to_level(self, x: torch.Tensor, level: int, modules: ModuleMap | None = None) -> torch.Tensor:
        """Features at ``level`` (the input of block ``level``), *before* any module at that level.

        Modules at lower levels are applied. ``level == num_levels`` gives the logits.
        """
        self._check_level(level)
        return self._run(x, 0, level, self._modules_by_level(modules))

    def run_from_level(self, h: torch.Tensor, level: int, modules: ModuleMap | None = None) -> torch.Tensor:
        """Logits from features at ``level``: the modules at ``level`` and above, and blocks ``level``..end.

        ``run_from_level(run_to_level(x, j, m), j, m) == forward(x, m)`` for every j.
        """
        self._check_level(level)
        return self._run(h, level, self.num_levels, self._modules_by_level(modules))

    def level_shapes(self) -> list[tuple[int, ...]]:
        """Per-example shape at every level 0..num_levels-1 (one eval-mode pass on a zero image, cached)."""
        if self._level_shapes is None:
            param = next(self.parameters())
            flags = [(m, m.training) for m in self.modules()]
            self.eval()
            try:
                with torch.no_grad():
                    h = torch.zeros((1, *self.input_shape), device=param.device, dtype=param.dtype)
                    shapes = []
                    for block in self.blocks:
                        shapes.append(tuple(h.shape[1:]))
                        h = block(h)
            finally:
                for module, training in flags:
                    module.training = training
            self._level_shapes = shapes
        return list(self._level_shapes)


class AutoEncoder(nn.Module):
    """Image -> image network made of an ``encoder`` and a ``decoder`` (paper §4.5: checkpoint names
    ``Encoder``, ``Decoder``)."""

    block_names = ("Encoder", "Decoder")

    def __init__(self, encoder: nn.Module, decoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))
