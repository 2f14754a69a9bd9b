"""The names of the networks, without building any (no torch): what a config is checked against.
`comprobust.models` builds them."""

from __future__ import annotations

CNN_ARCHITECTURES: tuple[str, ...] = ("emnist", "cifar", "facescrub", "small")
"""The paper's networks per dataset, and `small`, the CPU demo's."""

VIT_ARCHITECTURES: tuple[str, ...] = ("vit-cpu", "vit")
"""Vision transformers (`comprobust.models.vit`): train them with `optimizer: adamw` and a warmup."""

ARCHITECTURES: tuple[str, ...] = CNN_ARCHITECTURES + VIT_ARCHITECTURES
"""Every architecture an experiment or a stage may name."""
