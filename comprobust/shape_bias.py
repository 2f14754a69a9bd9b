"""The cue-conflict evaluator: Geirhos et al.'s shape bias, for any set of cues that each name a class.

Only trials whose cues all name different classes count (a trial whose shape and texture agree says nothing about
which cue was used; rgeirhos/texture-vs-shape#6). With n_X the decisions equal to cue X's class on those trials,
the bias towards X is n_X / sum_Y n_Y; with the cues shape and texture, ``bias/shape`` = n_shape / (n_shape +
n_texture) is Geirhos's shape bias. ``frac/X`` = n_X / trials and ``frac/other`` (decisions for no cue) show how many
decisions the bias rests on. Per-class biases group trials by the first cue's class (Geirhos groups by the shape
category). A bias with an empty denominator is NaN, and ``notes`` says why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike


@dataclasses.dataclass(frozen=True)
class CueConflict:
    """The outcome of ``cue_conflict``; ``summary()`` gives the scalars, ``per_class`` one row per class."""

    cues: tuple[str, ...]
    trials: int  # trials whose cues all disagree
    dropped: int  # trials left out: cues agreeing, or a cue absent (class -1)
    counts: Mapping[str, int]  # decisions for each cue, and "other" for none
    per_class: tuple[Mapping[str, float], ...]  # class, trials, n/<cue>, n/other, bias/<cue>
    notes: tuple[str, ...]

    def bias(self, cue: str) -> float:
        """n_cue / (decisions for any cue); NaN when no decision went to a cue."""
        return _ratio(self.counts[cue], sum(self.counts[c] for c in self.cues))

    def fraction(self, cue: str) -> float:
        """Decisions for ``cue`` (or ``other``) over the conflict trials; NaN without trials."""
        return _ratio(self.counts[cue], self.trials)

    def summary(self) -> dict[str, float]:
        """``bias/<cue>``, ``frac/<cue>``, ``frac/other``, ``trials`` and ``dropped``: what a run logs."""
        out = {f"bias/{cue}": self.bias(cue) for cue in self.cues}
        out.update({f"frac/{cue}": self.fraction(cue) for cue in (*self.cues, "other")})
        out.update(trials=float(self.trials), dropped=float(self.dropped))
        return out

    def table(self) -> tuple[list[str], list[list[float]]]:
        """The per-class results as a table's columns and rows (what a run logs as the table ``cue_conflict``):
        class, trials, n/<cue> for each cue and n/other, bias/<cue> for each cue."""
        columns = [
            "class",
            "trials",
            *(f"n/{cue}" for cue in (*self.cues, "other")),
            *(f"bias/{cue}" for cue in self.cues),
        ]
        return columns, [[row[column] for column in columns] for row in self.per_class]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


def cue_conflict(
    decisions: ArrayLike, cues: Mapping[str, ArrayLike], num_classes: int | None = None
) -> CueConflict:
    """Score ``decisions`` (class indices (N,), or scores (N, K) whose argmax is taken) against ``cues``.

    ``cues`` maps each cue's name to the class it names in every trial (-1 where the cue is absent), first the cue
    to group per-class results by, e.g. ``{"shape": shape_classes, "texture": texture_classes}``.
    """
    names = tuple(cues)
    if len(names) < 2 or "other" in names:
        raise ValueError(f"cue_conflict needs at least two cues, none named 'other'; got {list(names)}")
    decided = np.asarray(decisions)
    decided = decided.argmax(axis=-1) if decided.ndim == 2 else decided
    classes = np.stack([np.asarray(cues[name], dtype=np.int64) for name in names])  # (cues, N)
    if decided.ndim != 1 or classes.shape[1] != len(decided):
        raise ValueError(f"decisions of shape {np.shape(decisions)} for cues of {classes.shape[1]} trials")
    keep = (classes >= 0).all(axis=0)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            keep &= classes[i] != classes[j]
    decided, classes = decided[keep], classes[:, keep]
    hits = {name: decided == classes[i] for i, name in enumerate(names)}
    hits["other"] = ~np.any(np.stack(list(hits.values())), axis=0)
    counts = {name: int(hit.sum()) for name, hit in hits.items()}
    notes = []
    if not keep.any():
        notes.append(
            f"no trial has conflicting cues ({len(keep)} trials, all left out): biases and fractions are NaN"
        )
    elif counts["other"] == int(keep.sum()):
        notes.append(
            f"no decision matched any cue on the {int(keep.sum())} conflict trials: the biases are NaN"
        )
    n = num_classes if num_classes is not None else int(classes.max(initial=-1)) + 1
    rows, empty = [], []
    for label in range(n):
        in_class = classes[0] == label
        row: dict[str, float] = {"class": label, "trials": int(in_class.sum())}
        row.update({f"n/{name}": int(hit[in_class].sum()) for name, hit in hits.items()})
        cue_decisions = sum(row[f"n/{name}"] for name in names)
        row.update({f"bias/{name}": _ratio(row[f"n/{name}"], cue_decisions) for name in names})
        if not cue_decisions:
            empty.append(label)
        rows.append(row)
    if empty and keep.any():
        notes.append(f"{names[0]} classes {empty}: no conflict decision for any cue, their biases are NaN")
    return CueConflict(names, int(keep.sum()), int((~keep).sum()), counts, tuple(rows), tuple(notes))
