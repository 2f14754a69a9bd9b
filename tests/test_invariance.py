"""Invariance scores (paper section 7.2): a hand-computed example and a direct per-unit implementation."""

from __future__ import annotations

import numpy as np
import pytest

from comprobust.invariance import invariance_scores

A, B, ID, AB = ("A",), ("B",), ("Identity",), ("A", "B")


def test_hand_computed_example() -> None:
    # Columns: 4 units. Unit 0 and 1 are worked out by hand below; unit 2 has a constant grid; unit 3 is dead.
    means = {
        A: np.array([[0.2, 1.0, 0.5, 0.0], [0.6, 2.0, 0.5, 0.0]]),
        B: np.array([[0.4, 3.0, 0.5, 0.0], [0.8, 4.0, 0.5, 0.0]]),
        ID: np.array([[0.0, 2.0, 0.5, 0.0], [1.0, 2.0, 0.5, 0.0]]),
        AB: np.array([[0.5, 5.0, 0.5, 0.0], [0.5, 0.0, 0.5, 0.0]]),
    }
    unit_max = {c: np.array([1.0, 5.0, 0.5, 0.0]) for c in means}
    [score] = invariance_scores(means, unit_max)
    # Unit 0: E = [[.2,.6],[.4,.8],[0,1]] (already in [0,1]); preferred class 1; I_elem = 1-(1-.6) = .6;
    #         Q̂ row of AB = [.5,.5]; I_comp = 1 - min|[.6,.8,1]-.5| = .9
    # Unit 1: /5 -> A [.2,.4], B [.6,.8], ID [.4,.4]; Ê = A [0,1/3], B [2/3,1], ID [1/3,1/3]; p = 1;
    #         I_elem = 1-(1-1/3) = 1/3; Q = E + AB [1,0] -> Q̂ AB [1,0]; I_comp = 1 - min|[1/3,1,1/3]-0| = 2/3
    assert score.units == 2
    assert score.elemental == pytest.approx(np.median([0.6, 1 / 3]))
    assert score.composition_score == pytest.approx(np.median([0.9, 2 / 3]))


def direct_scores(means, maxima, composition):
    """The formula unit by unit, with plain loops."""
    global_max = np.max(np.stack(list(maxima.values())), axis=0)
    elem_scores, comp_scores = [], []
    for u in range(len(global_max)):
        if global_max[u] <= 1e-6:
            continue
        rows = [(n,) for n in composition] + [ID]
        grid_e = np.array([[means[r][c, u] / global_max[u] for c in range(means[r].shape[0])] for r in rows])
        row_k = np.array([means[composition][c, u] / global_max[u] for c in range(grid_e.shape[1])])
        grid_q = np.vstack([grid_e, row_k])
        if grid_e.max() == grid_e.min() or grid_q.max() == grid_q.min():
            continue
        e_hat = (grid_e - grid_e.min()) / (grid_e.max() - grid_e.min())
        q_hat = (grid_q - grid_q.min()) / (grid_q.max() - grid_q.min())
        p = int(np.argmax(e_hat.sum(axis=0)))
        elem_scores.append(1 - (e_hat[:, p].max() - e_hat[:, p].min()))
        comp_scores.append(1 - min(abs(e_hat[r, p] - q_hat[-1, p]) for r in range(len(rows))))
    return np.median(elem_scores), np.median(comp_scores), len(elem_scores)


def test_vectorised_scores_equal_the_direct_formula_on_random_activations() -> None:
    rng = np.random.default_rng(0)
    compositions = [ID, ("X",), ("Y",), ("Z",), ("X", "Y"), ("Z", "X", "Y")]
    means = {c: rng.gamma(1.0, size=(5, 40)) * (rng.random(40) > 0.1) for c in compositions}
    maxima = {c: means[c].max(axis=0) * 1.5 for c in compositions}
    scores = {s.composition: s for s in invariance_scores(means, maxima)}
    assert set(scores) == {("X", "Y"), ("Z", "X", "Y")}
    for composition, score in scores.items():
        elemental, comp, units = direct_scores(means, maxima, composition)
        assert score.units == units
        assert score.elemental == pytest.approx(elemental)
        assert score.composition_score == pytest.approx(comp)


def test_compositions_whose_elementals_were_not_evaluated_are_skipped() -> None:
    means = {ID: np.ones((2, 3)), A: np.ones((2, 3)), AB: np.ones((2, 3))}
    assert invariance_scores(means, {c: np.ones(3) for c in means}) == []
