"""The mechanism/condition model: parsing and naming conditions, the named sets, one-line errors, exact `first`
fractions, per-(seed, epoch, index) keep fractions, uniform and label-independent randomisation, conflicts that
never show the label's cue."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from comprobust.data.cues import (
    ABSENT,
    CONFLICTING,
    RANDOMISED,
    TRUE,
    CueModel,
    Mechanism,
    class_ranks,
    first_count,
)
from comprobust.errors import UserError

MODEL = CueModel(
    "dominoes",
    (
        Mechanism("image", "I", "keep"),
        Mechanism("box", "A", "first", random_classes=tuple(range(10)), conflict_classes=tuple(range(9))),
        Mechanism("half", "B", "first"),
    ),
    10,
)
LABELS = np.repeat(np.arange(10), 300)  # 300 per class in label order, as a dominoes train split
RANKS, COUNTS = class_ranks(LABELS, 10)
INDICES = np.arange(len(LABELS))


def draw(condition: str | dict, seed: int = 0, epoch: int = 0, indices: np.ndarray = INDICES):  # type: ignore[no-untyped-def]
    return MODEL.draw(
        MODEL.parse(condition), LABELS[indices], RANKS[indices], COUNTS, indices, seed, epoch, "train"
    )


def test_conditions_parse_from_letters_percent_and_mappings_to_canonical_names() -> None:
    assert MODEL.parse("IAB").settings == (1.0, 1.0, 1.0)
    assert MODEL.parse("BA").name == "AB" and MODEL.parse("BA").settings == (0.0, 1.0, 1.0)
    assert MODEL.parse("100 0 0").name == "I"
    condition = MODEL.parse("100 R 60")
    assert (condition.name, condition.settings, condition.length) == ("100 R 60", (1.0, "R", 0.6), 2)
    assert MODEL.parse({"image": 1.0, "box": "R", "half": 0.6}) == condition
    assert MODEL.parse({"A": 1}).name == "A"
    assert MODEL.parse("0 0 0").name == "0 0 0" and MODEL.parse("0 0 0").length == 0
    assert MODEL.parse("x 100 r").settings == ("X", 1.0, "R")
    assert MODEL.parse("X 100 R").length == 1
    assert MODEL.parse("100 33.3 0").name == "100 33.3 0"


def test_named_sets_are_the_references() -> None:
    names = {name: [c.name for c in MODEL.conditions(name)] for name in MODEL.condition_sets}
    assert names == {
        "exhaustive": ["I", "A", "B", "AB", "IB", "IA", "IAB"],
        "targeted": ["I", "100 0 60", "100 30 60", "100 60 90", "100 90 60"],
        "targeted_cf": ["IAB", "AB", "100 R 100", "100 100 R", "R 100 100"],
        "frac_cf": ["I", "A", "B"],
    }
    assert [c.length for c in MODEL.conditions("exhaustive")] == [1, 1, 1, 2, 2, 2, 3]
    assert [c.name for c in MODEL.conditions(["frac_cf", "IAB"])] == ["I", "A", "B", "IAB"]
    assert [c.name for c in MODEL.conditions("IA")] == ["IA"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            "IX",
            r"^condition 'IX': unknown mechanism 'X' in 'IX'; write letters of I \(image\), A \(box\), B \(half\)",
        ),
        (
            "exhaustiv",
            r"^unknown condition 'exhaustiv' \(did you mean 'exhaustive'\?\); write letters of .*a set: exhaustive, targeted, targeted_cf, frac_cf$",
        ),
        (
            "100 R",
            r"^condition '100 R' has 2 setting\(s\) but dominoes has 3 mechanisms \(I \(image\), A \(box\), B \(half\)\)",
        ),
        (
            "100 200 0",
            r"^condition '100 200 0': setting '200' is out of range; percentages must be in 0..100$",
        ),
        (
            "100 Q 0",
            r"^condition '100 Q 0': setting 'Q' must be a percentage 0..100, R \(randomised\) or X \(conflict\)$",
        ),
        (
            {"image": 1, "colour": 1},
            r"unknown mechanism 'colour'; mechanisms of dominoes: I \(image\), A \(box\), B \(half\)$",
        ),
        ({"box": 1.5}, r"setting 1.5 is out of range; fractions must be in \[0, 1\]$"),
        ("Z", r"^condition 'Z': unknown mechanism 'Z'; write letters"),
        ("IAA", r"^condition 'IAA' names a mechanism twice"),
        ("exhaustive", r"^'exhaustive' is a set of conditions \(I, A, B, AB, IB, IA, IAB\)"),
        ("", r"^condition '' of dominoes: write letters"),
    ],
)
def test_bad_conditions_are_one_line_user_errors(value: object, message: str) -> None:
    with pytest.raises(UserError, match=message) as info:
        MODEL.parse(value)
    assert "\n" not in str(info.value)


def test_a_condition_listed_twice_is_refused() -> None:
    with pytest.raises(UserError, match="'I' is listed twice"):
        MODEL.conditions(["I", "100 0 0"])
    with pytest.raises(UserError, match="expected a set name or a list"):
        MODEL.conditions([])


def test_first_fractions_cue_exactly_the_first_images_of_each_class() -> None:
    result = draw({"box": 0.3, "half": 0.0})
    present = result.classes["box"] >= 0
    assert present.sum() == 900
    np.testing.assert_array_equal(present, RANKS < 90)
    np.testing.assert_array_equal(result.classes["box"][present], LABELS[present])
    assert (result.modes["box"][present] == TRUE).all() and (result.modes["box"][~present] == ABSENT).all()
    assert (result.classes["half"] == -1).all() and (result.classes["image"] == -1).all()
    assert first_count(300, 0.3) == 90 and first_count(300, 0.6) == 180 and first_count(7, 0.5) == 3
    assert (draw("100 60 90").classes["half"] >= 0).sum() == 2700


def test_keep_fractions_are_per_seed_epoch_and_index_not_per_batch() -> None:
    kept = draw({"image": 0.5}, epoch=0).classes["image"] >= 0
    assert 0.45 <= kept.mean() <= 0.55
    again = draw({"image": 0.5}, epoch=0).classes["image"] >= 0
    np.testing.assert_array_equal(kept, again)
    # in batches of 64, in any order: the same images
    order = np.random.default_rng(0).permutation(len(LABELS))
    pieces = np.zeros(len(LABELS), bool)
    for start in range(0, len(order), 64):
        chunk = order[start : start + 64]
        pieces[chunk] = draw({"image": 0.5}, epoch=0, indices=chunk).classes["image"] >= 0
    np.testing.assert_array_equal(kept, pieces)
    next_epoch = draw({"image": 0.5}, epoch=1).classes["image"] >= 0
    assert 0.4 < (kept != next_epoch).mean() < 0.6  # independent draws differ on about half
    other_seed = draw({"image": 0.5}, seed=1).classes["image"] >= 0
    assert (kept != other_seed).any()
    assert (draw("IAB").classes["image"] == LABELS).all()


def test_randomised_box_is_uniform_over_0_to_9_and_independent_of_the_label() -> None:
    result = draw("100 R 100")
    box = result.classes["box"]
    assert (result.modes["box"] == RANDOMISED).all()
    shares = np.bincount(box, minlength=10) / len(box)
    assert shares.shape == (10,) and shares.min() >= 0.07 and shares.max() <= 0.13
    table = np.zeros((10, 10))
    np.add.at(table, (LABELS, box), 1)
    assert chi2_contingency(table).pvalue > 0.001
    # the other cues are untouched
    assert (result.classes["image"] == LABELS).all() and (result.classes["half"] == LABELS).all()
    # fresh per epoch, fixed per (seed, epoch)
    assert (draw("100 R 100", epoch=1).classes["box"] != box).mean() > 0.8
    np.testing.assert_array_equal(draw("100 R 100").classes["box"], box)


def test_conflicts_never_show_the_label_and_differ_across_cues() -> None:
    result = draw("X X X")
    image, box, half = (result.classes[name] for name in ("image", "box", "half"))
    for shown in (image, box, half):
        assert (shown != LABELS).all() and (shown >= 0).all()
    assert (image != box).all() and (image != half).all() and (box != half).all()
    assert box.max() <= 8  # the box conflicts with a box that is drawn (9 draws none)
    assert all((result.modes[name] == CONFLICTING).all() for name in ("image", "box", "half"))
    assert set(np.unique(half)) == set(range(10))
    # a single conflict is uniform over the 9 other classes
    single = draw("100 100 X").classes["half"]
    offsets = (single - LABELS) % 10
    counts = np.bincount(offsets, minlength=10)
    assert counts[0] == 0 and counts[1:].min() > 240 and counts[1:].max() < 420


def test_a_model_needs_distinct_letters_and_enough_classes_for_its_conflicts() -> None:
    with pytest.raises(TypeError, match="distinct letters"):
        CueModel("bad", (Mechanism("a", "A", "first"), Mechanism("b", "A", "first")), 10)
    tiny = CueModel("tiny", (Mechanism("a", "A", "keep"), Mechanism("b", "B", "first")), 2)
    labels = np.array([0, 1])
    ranks, counts = class_ranks(labels, 2)
    with pytest.raises(UserError, match="no class left for a conflict"):
        tiny.draw(tiny.parse("X X"), labels, ranks, counts, np.arange(2), seed=0)
