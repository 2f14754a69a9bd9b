"""Optimisers and the learning-rate schedule: SGD or AdamW, linear warmup then cosine decay.

The schedule is a pure function of the epoch (``warmup_cosine``), run by a ``LambdaLR``, so a checkpoint needs only
the scheduler's ``state_dict`` (its epoch counter) to resume with bit-identical learning rates. With no warmup the
values are those of ``CosineAnnealingLR(T_max=total)`` (eta_min 0). AdamW leaves biases, normalisation weights,
the class token and the position embedding out of weight decay, as ViT/DeiT training does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import torch
from torch import nn

OPTIMIZERS: tuple[str, ...] = ("sgd", "adamw")
NO_DECAY_NAMES: tuple[str, ...] = ("class_token", "pos_embedding")
"""Parameter names (last dotted part) kept out of AdamW's weight decay, besides every parameter with ndim <= 1."""


def warmup_cosine(epoch: int, warmup: int, total: int) -> float:
    """The learning-rate factor of ``epoch`` (0-based): (epoch+1)/(warmup+1) for the first ``warmup`` epochs, then a
    cosine from 1 at ``warmup`` towards 0 at ``total``; 0 from ``total`` on.

    E.g. warmup 1, total 4: [0.5, 1.0, 0.75, 0.25].
    """
    if not 0 <= warmup < total:
        raise ValueError(f"warmup must be in 0..total-1 epochs, got warmup {warmup} and total {total}")
    if epoch < warmup:
        return (epoch + 1) / (warmup + 1)
    if epoch >= total:
        return 0.0
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (total - warmup)))


def warmup_cosine_scheduler(
    optimizer: torch.optim.Optimizer, warmup: int, total: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that sets every group's lr to its initial lr times ``warmup_cosine``; step it once per epoch."""
    warmup_cosine(0, warmup, total)  # validates the arguments now rather than at the first step
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(warmup_cosine, warmup=warmup, total=total)
    )


def decay_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], weight_decay: float
) -> list[dict[str, object]]:
    """Trainable parameters in two groups: with ``weight_decay``, and without (ndim <= 1 or in NO_DECAY_NAMES)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, parameter in named_parameters:
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim <= 1 or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES
        (no_decay if exempt else decay).append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(
    kind: str,
    named_parameters: Iterable[tuple[str, nn.Parameter]],
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """``sgd``: SGD with momentum, decay on every trainable parameter (the training loop's optimiser until now).
    ``adamw``: AdamW (decoupled decay) with ``decay_groups``."""
    if kind == "sgd":
        parameters = [p for _, p in named_parameters if p.requires_grad]
        return torch.optim.SGD(parameters, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if kind == "adamw":
        return torch.optim.AdamW(decay_groups(named_parameters, weight_decay), lr=lr, betas=betas)
    raise ValueError(f"unknown optimizer {kind!r}: choose one of {', '.join(OPTIMIZERS)}")
