"""The distillation losses' names and their defaults, without torch (configs are checked against them)."""

from __future__ import annotations

import difflib

from comprobust.errors import UserError

LOSS_NAMES: tuple[str, ...] = ("kd", "jacobian", "contrastive")
"""kd: KL at temperature T; jacobian: KD + logit-Jacobian matching; contrastive: KD + CRD-style term."""

PAIR_MODES: tuple[str, ...] = ("class", "instance")
"""Contrastive positives: other same-class samples (the reference's) or the same instance (Tian et al.'s CRD)."""

HEAD_MODES: tuple[str, ...] = ("trained", "fresh")
"""CRD projection heads: trained with the student (default) or redrawn untrained every step (the reference's v2)."""

DIVERGENCES: tuple[str, ...] = ("kl", "mse")
"""The KD term: KL(teacher || student) of the softened distributions, or the mean squared difference."""

DEFAULTS: dict[str, dict[str, float | int | str | bool]] = {
    "kd": {"temperature": 30.0, "kd_t2": False, "kd_divergence": "kl"},
    "jacobian": {"temperature": 30.0, "alpha": 0.15, "top_k": 20},
    "contrastive": {
        "temperature": 30.0,
        "alpha": 0.03,
        "contrast_temperature": 0.1,
        "contrast_eps": 0.97,
        "crd_pairs": "class",
        "crd_heads": "trained",
        "crd_dim": 128,
    },
}
"""Each loss's defaults, as in the reference (loss_common.py, get_nonbase_loss_frac, contrastive.py)."""


def check_choice(kind: str, value: object, choices: tuple[str, ...]) -> str:
    """`value` when it is one of `choices`, else a one-line UserError naming it, the choices and the closest."""
    if isinstance(value, str) and value in choices:
        return value
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UserError(f"unknown {kind} {value!r}{hint}; choose one of {', '.join(choices)}")


def check_loss(name: object) -> str:
    """The loss name, checked: `check_loss("jacobain")` raises "unknown loss 'jacobain' (did you mean
    'jacobian'?); choose one of kd, jacobian, contrastive"."""
    return check_choice("loss", name, LOSS_NAMES)
