"""The cue-conflict evaluator on oracle predictors: shape bias, cue shares, per-class biases, empty denominators."""

from __future__ import annotations

import math

import numpy as np
import pytest

from comprobust.shape_bias import cue_conflict

RNG = np.random.default_rng(0)
SHAPE = RNG.integers(0, 10, 400)
TEXTURE = (SHAPE + 1 + RNG.integers(0, 9, 400)) % 10  # always a conflict
CUES = {"shape": SHAPE, "texture": TEXTURE}


def neither() -> np.ndarray:
    """A decision for a class that is neither cue's."""
    out = (SHAPE + 1) % 10
    clash = out == TEXTURE
    out[clash] = (SHAPE[clash] + 2) % 10
    return out


def test_always_shape_gives_1_and_always_texture_gives_0() -> None:
    shape = cue_conflict(SHAPE, CUES).summary()
    assert shape["bias/shape"] == 1.0 and shape["bias/texture"] == 0.0
    assert shape["frac/shape"] == 1.0 and shape["frac/other"] == 0.0 and shape["trials"] == 400
    texture = cue_conflict(TEXTURE, CUES).summary()
    assert texture["bias/shape"] == 0.0 and texture["frac/texture"] == 1.0


def test_half_shape_half_texture_gives_one_half_and_other_decisions_only_change_the_shares() -> None:
    half = np.where(np.arange(400) % 2 == 0, SHAPE, TEXTURE)
    assert cue_conflict(half, CUES).summary()["bias/shape"] == 0.5
    mixed = np.where(np.arange(400) % 4 == 0, SHAPE, np.where(np.arange(400) % 4 == 1, TEXTURE, neither()))
    summary = cue_conflict(mixed, CUES).summary()
    assert summary["bias/shape"] == 0.5
    assert (summary["frac/shape"], summary["frac/texture"], summary["frac/other"]) == (0.25, 0.25, 0.5)
    three_to_one = np.where(np.arange(400) % 4 == 0, TEXTURE, SHAPE)
    assert cue_conflict(three_to_one, CUES).bias("shape") == 0.75


def test_congruent_trials_and_trials_without_a_cue_do_not_change_the_bias() -> None:
    decisions = np.where(np.arange(400) % 4 == 0, TEXTURE, SHAPE)
    base = cue_conflict(decisions, CUES).summary()
    congruent = RNG.integers(0, 10, 100)
    absent = RNG.integers(0, 10, 50)
    more = cue_conflict(
        np.concatenate([decisions, congruent, absent]),
        {
            "shape": np.concatenate([SHAPE, congruent, absent]),
            "texture": np.concatenate([TEXTURE, congruent, np.full(50, -1)]),
        },
    ).summary()
    assert more["dropped"] == 150 and more["trials"] == 400
    assert {k: v for k, v in more.items() if k != "dropped"} == {
        k: v for k, v in base.items() if k != "dropped"
    }


def test_per_class_biases_group_by_the_shape_class() -> None:
    decisions = np.where(SHAPE < 5, SHAPE, TEXTURE)  # shape-true on 0-4, texture-true on 5-9
    result = cue_conflict(decisions, CUES, num_classes=10)
    assert [row["bias/shape"] for row in result.per_class] == [1.0] * 5 + [0.0] * 5
    assert [row["trials"] for row in result.per_class] == np.bincount(SHAPE, minlength=10).tolist()
    assert result.bias("shape") == pytest.approx((SHAPE < 5).mean())
    assert result.notes == ()


def test_empty_denominators_give_nan_with_a_note() -> None:
    result = cue_conflict(neither(), CUES)
    assert math.isnan(result.bias("shape")) and result.fraction("other") == 1.0
    assert "no decision matched any cue" in result.notes[0]
    agreeing = cue_conflict(SHAPE, {"shape": SHAPE, "texture": SHAPE})
    assert agreeing.trials == 0 and math.isnan(agreeing.summary()["frac/shape"])
    assert "no trial has conflicting cues" in agreeing.notes[0]
    only_low = SHAPE < 3
    partial = cue_conflict(
        SHAPE[only_low], {"shape": SHAPE[only_low], "texture": TEXTURE[only_low]}, num_classes=5
    )
    assert [math.isnan(row["bias/shape"]) for row in partial.per_class] == [False] * 3 + [True] * 2
    assert "shape classes [3, 4]" in partial.notes[0]


def test_scores_are_reduced_by_argmax_and_three_cues_need_all_distinct() -> None:
    scores = np.eye(10)[SHAPE] + 0.1
    assert cue_conflict(scores, CUES).bias("shape") == 1.0
    third = np.where(np.arange(400) < 100, SHAPE, (TEXTURE + 3) % 10)  # 100 trials clash with the shape cue
    result = cue_conflict(TEXTURE, {"shape": SHAPE, "texture": TEXTURE, "box": third})
    assert result.trials == ((third != SHAPE) & (third != TEXTURE)).sum() <= 300
    assert result.bias("texture") == 1.0 and result.bias("box") == 0.0
    with pytest.raises(ValueError, match="at least two cues"):
        cue_conflict(SHAPE, {"shape": SHAPE})
    with pytest.raises(ValueError, match="for cues of 400 trials"):
        cue_conflict(SHAPE[:10], CUES)


def test_the_per_class_table_as_logged() -> None:
    decisions = np.where(SHAPE < 5, SHAPE, TEXTURE)
    result = cue_conflict(decisions, CUES, num_classes=10)
    columns, rows = result.table()
    assert columns == ["class", "trials", "n/shape", "n/texture", "n/other", "bias/shape", "bias/texture"]
    assert [row[0] for row in rows] == list(range(10))
    assert [row[5] for row in rows] == [1.0] * 5 + [0.0] * 5
    assert sum(row[1] for row in rows) == result.trials == sum(row[2] + row[3] + row[4] for row in rows)
