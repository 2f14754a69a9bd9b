"""The shape-bias report: the numbers its tables hold and its figures draw (intervals against scipy), not pixels."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from comprobust.report_shape_bias import (
    cue_accuracy_figure,
    cue_accuracy_table,
    cue_conflict_rows,
    cue_shares_figure,
    drawn_intervals,
    per_class_figure,
    per_class_table,
    shape_bias_figure,
    shape_bias_table,
    system_label,
    write_shape_bias_report,
)
from comprobust.shape_bias import cue_conflict

BIASES = {  # (architecture, regime) -> shape bias per seed
    ("small", "natural"): [0.42, 0.55, 0.47],
    ("small", "stylized"): [0.97, 0.93, 0.99],
    ("vit-cpu", "natural"): [0.31],  # one seed: a mean, no interval
    ("vit-cpu", "stylized"): [0.88, 0.91, 0.86],
}


def summary_frame(biases: dict = BIASES) -> pd.DataFrame:
    rows = []
    for (architecture, regime), values in biases.items():
        for seed, value in enumerate(values):
            rows.append(
                {
                    "architecture": architecture,
                    "regime": regime,
                    "seed": seed,
                    "shape_bias": value,
                    "acc/natural": 95.0 + seed,
                    "acc/shape": 60.0 + 10 * value + seed,
                    "acc/texture": 40.0 - seed,
                    "acc/conflict": 50.0 * value,
                    "frac/shape": 0.5 * value,
                    "frac/texture": 0.5 * (1 - value),
                    "frac/other": 0.5,
                }
            )
    return pd.DataFrame(rows)


def scipy_interval(values: list[float]) -> tuple[float, float, float]:
    x = np.asarray(values)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    return float(x.mean()), float(low), float(high)


def test_the_table_holds_each_groups_mean_and_95_percent_t_interval() -> None:
    table = shape_bias_table(summary_frame())
    assert list(zip(table["architecture"], table["regime"])) == list(BIASES)  # the experiment's order
    for row in table.itertuples(index=False):
        values = BIASES[(row.architecture, row.regime)]
        assert row.seeds == len(values) and row.nan_seeds == 0
        if len(values) > 1:
            assert (row.mean, row.ci_low, row.ci_high) == pytest.approx(scipy_interval(values), rel=1e-12)
            assert row.interval == f"{row.mean:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"
        else:
            assert row.mean == values[0] and math.isnan(row.ci_low) and math.isnan(row.ci_high)
            assert row.interval == "0.310 [n/a (1 seed)]"


def test_the_figure_draws_the_tables_intervals_per_regime_and_the_half_line() -> None:
    fig, table = shape_bias_figure(summary_frame())
    (ax,) = fig.axes
    drawn = drawn_intervals(ax)
    assert list(drawn) == ["natural", "stylized"]
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == ["small", "vit-cpu"]
    for regime, points in drawn.items():
        expected = table[table["regime"] == regime]
        assert np.round(points["x"]).astype(int).tolist() == [
            ticks.index(a) for a in expected["architecture"]
        ]
        for column in ("mean", "ci_low", "ci_high"):
            np.testing.assert_allclose(points[column], expected[column], rtol=1e-12)
    small_natural = drawn["natural"].iloc[0]
    mean, low, high = scipy_interval(BIASES[("small", "natural")])
    assert (small_natural["mean"], small_natural["ci_low"], small_natural["ci_high"]) == pytest.approx(
        (mean, low, high), rel=1e-12
    )
    assert math.isnan(drawn["natural"].iloc[1]["ci_low"])  # vit-cpu natural: one seed, no bar ...
    assert [t.get_text() for t in ax.texts if "seed" in t.get_text()] == ["n/a (1 seed)"]  # ... but a note
    (half,) = [line for line in ax.lines if line.get_gid() == "no-preference"]
    assert list(half.get_ydata()) == [0.5, 0.5]
    assert "95% t-interval" in ax.get_title() and "1-3 seeds" in ax.get_title()


def test_a_single_seed_everywhere_and_nan_biases_do_not_fail() -> None:
    one = {key: values[:1] for key, values in BIASES.items()}
    fig, table = shape_bias_figure(summary_frame(one))
    assert (table["seeds"] == 1).all() and table["ci_low"].isna().all()
    assert sum("n/a (1 seed)" in t.get_text() for t in fig.axes[0].texts) == 4
    assert "(1 seed)" in fig.axes[0].get_title()
    with_nan = summary_frame(
        {("small", "natural"): [0.4, float("nan"), 0.6], ("vit-cpu", "natural"): [math.nan]}
    )
    table = shape_bias_table(with_nan)
    first, second = table.itertuples(index=False)
    assert (first.seeds, first.nan_seeds) == (2, 1)
    assert (first.mean, first.ci_low, first.ci_high) == pytest.approx(scipy_interval([0.4, 0.6]))
    assert (second.seeds, second.nan_seeds, second.interval) == (0, 1, "n/a")
    fig, _ = shape_bias_figure(with_nan)
    assert "n/a" in [t.get_text() for t in fig.axes[0].texts]


def test_rows_from_the_evaluator_give_per_class_biases_of_an_oracle() -> None:
    rng = np.random.default_rng(0)
    shape = rng.integers(0, 10, 500)
    texture = (shape + 1 + rng.integers(0, 9, 500)) % 10
    decisions = np.where(shape < 5, shape, texture)  # shape-true on classes 0-4, texture-true on 5-9
    summaries, per_class = [], []
    for seed in (0, 1):
        result = cue_conflict(decisions, {"shape": shape, "texture": texture}, num_classes=10)
        summary, rows = cue_conflict_rows("small", "natural", seed, result, {"conflict": 50.0})
        summaries.append(summary)
        per_class.extend(rows)
    assert summaries[0]["shape_bias"] == pytest.approx((shape < 5).mean())
    assert summaries[0]["frac/other"] == 0.0 and summaries[0]["acc/conflict"] == 50.0
    table = per_class_table(pd.DataFrame(per_class))
    assert table["class"].tolist() == list(range(10))
    assert table["mean"].tolist() == [1.0] * 5 + [0.0] * 5
    assert (table["ci_low"] == table["mean"]).all()  # two identical seeds: a zero-width interval
    fig, _ = per_class_figure(pd.DataFrame(per_class))
    (points,) = drawn_intervals(fig.axes[0]).values()
    assert points["mean"].tolist() == [1.0] * 5 + [0.0] * 5
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == [str(c) for c in range(10)]
    with pytest.raises(ValueError, match="cues shape and texture first"):
        cue_conflict_rows("small", "natural", 0, cue_conflict(texture, {"texture": texture, "shape": shape}))


def test_cue_accuracy_and_shares_per_condition() -> None:
    summary = summary_frame()
    table = cue_accuracy_table(summary)
    assert table["condition"].tolist()[:4] == ["natural", "shape", "texture", "conflict"]
    assert len(table) == 4 * len(BIASES)
    row = table[(table["architecture"] == "small") & (table["regime"] == "stylized")]
    shape_acc = [60.0 + 10 * v + seed for seed, v in enumerate(BIASES[("small", "stylized")])]
    expected = scipy_interval(shape_acc)
    got = row[row["condition"] == "shape"].iloc[0]
    assert (got["mean"], got["ci_low"], got["ci_high"]) == pytest.approx(expected, rel=1e-12)
    fig, drawn_table = cue_accuracy_figure(summary, chance=10.0)
    drawn = drawn_intervals(fig.axes[0])
    assert list(drawn) == [
        "small / natural",
        "small / stylized",
        "vit-cpu / natural: n/a (1 seed)",
        "vit-cpu / stylized",
    ]
    points = drawn["small / stylized"]
    assert points.loc[1, ["mean", "ci_low", "ci_high"]].tolist() == pytest.approx(expected, rel=1e-12)
    assert [line.get_ydata()[0] for line in fig.axes[0].lines if line.get_gid() == "chance"] == [10.0]
    fig, shares = cue_shares_figure(summary)
    assert shares["decision"].tolist()[:3] == ["shape", "texture", "other"]
    other = drawn_intervals(fig.axes[0])["small / natural"].loc[2]
    assert (other["mean"], other["ci_low"], other["ci_high"]) == pytest.approx((0.5, 0.5, 0.5))


def test_the_report_writes_figures_and_csvs_and_skips_absent_parts(tmp_path: Path) -> None:
    summary = summary_frame()
    per_class = pd.DataFrame(
        [
            {"architecture": a, "regime": r, "seed": s, "class": c, "shape_bias": 0.5}
            for (a, r), values in BIASES.items()
            for s in range(len(values))
            for c in range(3)
        ]
    )
    written = write_shape_bias_report(summary, per_class, tmp_path / "report")
    names = sorted(p.name for p in written.values())
    assert names == sorted(
        f"{stem}.{ext}"
        for stem in ("shape-bias", "shape-bias-by-class", "cue-accuracy", "cue-shares")
        for ext in ("png", "csv")
    )
    assert all(p.stat().st_size > 0 for p in written.values())
    csv = pd.read_csv(written["shape_bias_csv"])
    pd.testing.assert_frame_equal(csv, shape_bias_table(summary), check_dtype=False)
    accuracy = pd.read_csv(written["accuracy_csv"])
    assert list(accuracy.columns[:5]) == ["architecture", "regime", "seeds", "natural", "natural (95% CI)"]
    assert accuracy["conflict (95% CI)"].iloc[2] == "15.5 [n/a (1 seed)]"
    bare = summary[["architecture", "regime", "seed", "shape_bias"]].rename(
        columns={"shape_bias": "bias/shape"}
    )
    assert sorted(write_shape_bias_report(bare, None, tmp_path / "bare")) == [
        "shape_bias_csv",
        "shape_bias_png",
    ]
    with pytest.raises(ValueError, match=r"lacks the columns \['shape_bias'\]"):
        shape_bias_table(summary.drop(columns="shape_bias"))


def test_systems_are_labelled_by_architecture_only_when_several_are_compared() -> None:
    assert system_label("ERM", "vit-cpu", several=True) == "ERM[arch=vit-cpu]"
    assert system_label("ERM", "small", several=False) == "ERM"
