"""The names of the networks, without building any (no torch): what a config is checked against.
`comprobust.models` builds them."""

from __future__ import annotations

ARCHITECTURES: tuple[str, ...] = ("emnist", "cifar", "facescrub", "small")
"""The architectures experiments may name. The ViTs are built by name too, but join this tuple only when the
training loop offers AdamW with warmup (issue 17): plain SGD from scratch would handicap them."""

VIT_ARCHITECTURES: tuple[str, ...] = ("vit-cpu", "vit")
