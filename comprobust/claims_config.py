"""The `claims:` block of an experiment: the paper's three claims and the criteria that judge them, fixed in
the YAML before the run (see experiments/claims.yaml and `comprobust.claims` for the tests).

    claims:
      baseline: ERM                 # evaluation system labels
      invariance: Contrastive       # the invariance-building method (C1)
      control: Contrastive-w0       # optional: the same pipeline with the contrastive weight at 0
      modular: Modular
      equivalence_margin: 2.0       # C1: the equivalence band (pp) of the two one-sided tests
      alpha: 0.05                   # every test's level
      share_of_sets: 0.8            # C2: the share of unordered sets Modular must win
      max_abs_r: 0.5                # C3: the partial correlation a supported "no prediction" must rule out
      lengths: [2, 3, 4, 5, 6]      # the composition lengths the claims are judged on

Kept light (no numpy, scipy or torch) because validating an experiment must stay fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from comprobust.errors import UserError
from comprobust.validation import check_keys, check_range, expect

ROLES = ("baseline", "invariance", "control", "modular")


@dataclass(frozen=True)
class ClaimCriteria:
    """Which systems play which part in the claims, and the thresholds, fixed before the results exist."""

    baseline: str
    invariance: str
    modular: str
    control: str | None = None
    equivalence_margin: float = 2.0
    alpha: float = 0.05
    share_of_sets: float = 0.8
    max_abs_r: float = 0.5
    lengths: tuple[int, ...] = (2, 3, 4, 5, 6)


def load_claims(raw: Any, where: str, systems: Iterable[str]) -> ClaimCriteria | None:
    """Validate a `claims:` mapping against the experiment's evaluation system labels; None when absent."""
    if raw is None:
        return None
    expect(raw, dict, where)
    defaults = ClaimCriteria("", "", "")
    check_keys(
        raw,
        [*ROLES, "equivalence_margin", "alpha", "share_of_sets", "max_abs_r", "lengths"],
        where,
        required=("baseline", "invariance", "modular"),
    )
    labels = list(systems)
    roles = {}
    for role in ROLES:
        if role in raw:
            label = expect(raw[role], str, f"{where}.{role}")
            if label not in labels:
                raise UserError(
                    f"{where}.{role}: {label!r} is not an evaluation system; use one of "
                    f"{', '.join(labels) or '(none defined under evaluation.systems)'}"
                )
            roles[role] = label
    if len(set(roles.values())) != len(roles):
        raise UserError(f"{where}: each role needs its own system, got {roles}")

    def number(key: str, low: float, high: float, high_open: bool = True) -> float:
        value = expect(raw.get(key, getattr(defaults, key)), float, f"{where}.{key}")
        return check_range(value, f"{where}.{key}", low, high, True, high_open)

    lengths = expect(raw.get("lengths", list(defaults.lengths)), list, f"{where}.lengths")
    for i, length in enumerate(lengths):
        check_range(expect(length, int, f"{where}.lengths[{i}]"), f"{where}.lengths[{i}]", 2, 6)
    if not lengths or len(set(lengths)) != len(lengths):
        raise UserError(f"{where}.lengths: give distinct composition lengths from 2 to 6, got {lengths}")
    return ClaimCriteria(
        **roles,
        equivalence_margin=number("equivalence_margin", 0.0, 100.0),
        alpha=number("alpha", 0.0, 0.5),
        share_of_sets=number("share_of_sets", 0.5, 1.0, False),
        max_abs_r=number("max_abs_r", 0.0, 1.0),
        lengths=tuple(sorted(lengths)),
    )
