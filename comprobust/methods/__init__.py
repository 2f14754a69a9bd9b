"""Training methods: declarative specs in `specs.py` (no torch), one module per method with `train(context)`,
and `trainer`, the one table from a method's name to its `train`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comprobust.methods.common import Export, StageContext


def trainer(method: str) -> Callable[[StageContext], Export]:
    """The `train` function of `method` (a key of `specs.METHODS`)."""
    from comprobust.methods import (
        autoencoders,
        backbone,
        contrastive,
        distill,
        erm,
        imgspace,
        modules,
        supervised,
    )

    trainers: dict[str, Callable[[StageContext], Export]] = {
        "erm": erm.train,
        "contrastive": contrastive.train,
        "backbone": backbone.train,
        "modules": modules.train,
        "autoencoders": autoencoders.train,
        "imgspace": imgspace.train,
        "supervised": supervised.train,
        "distill": distill.train,
    }
    return trainers[method]
