"""The paper's invariance scores of the penultimate layer (section 7.2), vectorised over units.

Inputs per composition: the per-class mean activation (C, U) and the per-unit maximum (U,). For a composition
K = (k_1..k_n), the elemental grid E has one row per elemental of K plus Identity (classes as columns); the
composition grid Q is E plus the composition's own row. Each grid is min-max normalised by its own extremes;
p is the unit's preferred class (argmax of the column sums of Ê). Then

    I_elem(u) = 1 - (max_r Ê[r, p] - min_r Ê[r, p])
    I_comp(u) = 1 - min_r |Ê[r, p] - Q̂[K, p]|

and a composition's scores are the medians over live units (global maximum > 1e-6). Units whose grid is
constant are skipped (the reference code would divide 0 by 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

DEAD_UNIT = 1e-6


@dataclass(frozen=True)
class InvarianceScore:
    composition: tuple[str, ...]
    elemental: float  # median I_elem over scored units (NaN if none)
    composition_score: float  # median I_comp over scored units (NaN if none)
    units: int  # number of units scored


def unit_scores(
    elemental_rows: np.ndarray, composition_row: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """I_elem and I_comp per unit, and the mask of units whose grids are not constant.

    `elemental_rows`: (R, C, U) normalised class means of the elementals and Identity; `composition_row`: (C, U).
    """
    grid_e = elemental_rows
    grid_q = np.concatenate([elemental_rows, composition_row[None]], axis=0)
    e_min, e_max = grid_e.min(axis=(0, 1)), grid_e.max(axis=(0, 1))
    q_min, q_max = grid_q.min(axis=(0, 1)), grid_q.max(axis=(0, 1))
    valid = (e_max > e_min) & (q_max > q_min)
    e_span = np.where(valid, e_max - e_min, 1.0)
    q_span = np.where(valid, q_max - q_min, 1.0)
    e_hat = (grid_e - e_min) / e_span
    q_hat_k = (composition_row - q_min) / q_span  # the composition row of Q̂
    preferred = e_hat.sum(axis=0).argmax(axis=0)  # (U,)
    units = np.arange(e_hat.shape[2])
    at_p = e_hat[:, preferred, units]  # (R, U)
    i_elem = 1.0 - (at_p.max(axis=0) - at_p.min(axis=0))
    i_comp = 1.0 - np.abs(at_p - q_hat_k[preferred, units][None]).min(axis=0)
    return i_elem, i_comp, valid


def invariance_scores(
    class_means: Mapping[tuple[str, ...], np.ndarray],
    unit_max: Mapping[tuple[str, ...], np.ndarray],
    compositions: Sequence[tuple[str, ...]] | None = None,
) -> list[InvarianceScore]:
    """Scores of every composition of length >= 2 whose elementals (and Identity) were evaluated too."""
    global_max = np.max(np.stack(list(unit_max.values())), axis=0)
    alive = global_max > DEAD_UNIT
    scale = np.where(alive, global_max, 1.0)
    normalised = {c: np.where(alive, means / scale, 0.0) for c, means in class_means.items()}
    scores = []
    for composition in compositions or [c for c in class_means if len(c) >= 2]:
        rows = [(name,) for name in composition] + [("Identity",)]
        if composition not in normalised or any(row not in normalised for row in rows):
            continue
        i_elem, i_comp, valid = unit_scores(np.stack([normalised[r] for r in rows]), normalised[composition])
        keep = valid & alive
        scores.append(
            InvarianceScore(
                composition,
                float(np.median(i_elem[keep])) if keep.any() else float("nan"),
                float(np.median(i_comp[keep])) if keep.any() else float("nan"),
                int(keep.sum()),
            )
        )
    return scores
