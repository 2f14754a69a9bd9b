"""comprobust.statistics against hand-computed and scipy values, on small synthetic frames (no training)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from comprobust import diagnostics
from comprobust import statistics as st
from comprobust.corruptions import ELEMENTALS, corrupt
from comprobust.report_statistics import format_intervals, format_levels, levels_table, statistics_html
from comprobust.sample_images import sample_digits, sample_photo_patches

T_975_DF2 = 4.302652729911275  # Student t quantile 0.975 with 2 degrees of freedom (tables)
COMPOSITIONS = [
    "Identity",
    "Contrast",
    "Invert",
    "Rotate90",
    "Contrast-Invert",
    "Invert-Contrast",
    "Contrast-Rotate90",
    "Rotate90-Contrast",
    "Invert-Rotate90",
    "Rotate90-Invert",
    "Contrast-Invert-Rotate90",
    "Rotate90-Invert-Contrast",
]


def accuracy(method: str, seed: int, composition: str) -> float:
    """A known, irregular accuracy: Modular is ahead by an amount that depends on the seed and composition."""
    length = composition.count("-") + 1
    base = 80.0 - 10 * length + {1: 0.0, 2: 3.0, 3: -1.5}[seed]
    bump = (len(composition) % 7) - 3.0
    return base + (bump + 2.0 + seed if method == "Modular" else 0.0)


def results_frame(seeds=(1, 2, 3), methods=("ERM", "Modular")) -> pd.DataFrame:
    rows = [
        {
            "method": m,
            "seed": s,
            "composition": c,
            "length": c.count("-") + 1,
            "accuracy": accuracy(m, s, c),
            "run_id": f"eval-{m}-{s}",
        }
        for m in methods
        for s in seeds
        for c in COMPOSITIONS
    ]
    return pd.DataFrame(rows)


def test_t_interval_matches_the_t_table_and_one_seed_is_not_a_failure() -> None:
    interval = st.t_interval([1.0, 2.0, 6.0])
    half = T_975_DF2 * np.std([1.0, 2.0, 6.0], ddof=1) / np.sqrt(3)
    assert (interval.mean, interval.n) == (3.0, 3)
    assert interval.low == pytest.approx(3.0 - half) and interval.high == pytest.approx(3.0 + half)
    single = st.t_interval([7.0])
    assert single.mean == 7.0 and np.isnan(single.low) and single.n == 1
    assert st.format_interval(single.mean, single.low, single.high) == "7.0 [n/a (1 seed)]"
    assert st.format_interval(1.25, -0.5, 3.0, signed=True) == "+1.2 [-0.5, +3.0]"


def test_length_intervals_and_seed_paired_differences_by_hand() -> None:
    results = results_frame()
    lengths = st.length_intervals(results).set_index(["method", "length"])
    for (method, length), row in lengths.iterrows():
        names = [c for c in COMPOSITIONS if c.count("-") + 1 == length]
        per_seed = [np.mean([accuracy(method, s, c) for c in names]) for s in (1, 2, 3)]
        expected = st.t_interval(per_seed)
        assert row["seeds"] == 3 and row["mean"] == pytest.approx(np.mean(per_seed))
        assert row["ci_high"] - row["mean"] == pytest.approx(
            T_975_DF2 * np.std(per_seed, ddof=1) / np.sqrt(3)
        )
        assert row["ci_low"] == pytest.approx(expected.low)
    differences = st.paired_differences(results)
    assert set(zip(differences["method"], differences["baseline"])) == {("Modular", "ERM")}
    for row in differences.itertuples():
        names = [c for c in COMPOSITIONS if c.count("-") + 1 == row.length]
        diffs = [
            np.mean([accuracy("Modular", s, c) - accuracy("ERM", s, c) for c in names]) for s in (1, 2, 3)
        ]
        assert row.mean == pytest.approx(np.mean(diffs))
        assert row.ci_low == pytest.approx(st.t_interval(diffs).low)
        assert row.seeds_won == sum(d > 0 for d in diffs)


def test_set_level_view_averages_orderings_and_tests_with_scipys_wilcoxon() -> None:
    results = results_frame()
    sets = st.set_means(results)
    pair = sets[(sets["method"] == "ERM") & (sets["set"] == "Contrast+Invert")]
    hand = np.mean([accuracy("ERM", s, c) for s in (1, 2, 3) for c in ("Contrast-Invert", "Invert-Contrast")])
    assert pair["accuracy"].item() == pytest.approx(hand)
    comparisons = st.set_comparisons(results).set_index("lengths")
    assert list(comparisons.index) == ["1", "2", "3", st.POOLED]
    wide = sets.pivot_table(index=["length", "set"], columns="method", values="accuracy")
    pooled = (wide["Modular"] - wide["ERM"])[wide.index.get_level_values("length") >= 2].to_numpy()
    row = comparisons.loc[st.POOLED]
    assert row["sets"] == 4 and row["mean_diff"] == pytest.approx(pooled.mean())
    assert row["share_won"] == pytest.approx((pooled > 0).mean())
    expected = stats.wilcoxon(pooled[pooled != 0])
    assert row["p"] == pytest.approx(expected.pvalue) and row["wilcoxon"] == pytest.approx(expected.statistic)
    assert comparisons.loc["3", "sets"] == 1


def test_holm_by_hand() -> None:
    adjusted = st.holm([0.01, 0.04, 0.03, np.nan, 0.5])
    assert adjusted[:3] == pytest.approx([0.04, 0.09, 0.09])
    assert np.isnan(adjusted[3]) and adjusted[4] == pytest.approx(0.5)


def test_partial_correlation_equals_the_regression_coefficients_t_test() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(size=12)
    x = z + rng.normal(size=12)
    y = 0.5 * x - z + rng.normal(size=12)
    residual = [v - np.polyval(np.polyfit(z, v, 1), z) for v in (x, y)]
    r = float(st.partial_correlation(x, y, z))
    assert r == pytest.approx(stats.pearsonr(*residual).statistic)
    design = np.column_stack([np.ones(12), z, x])  # y ~ 1 + z + x: the t-test of x's coefficient
    coef, rss = np.linalg.lstsq(design, y, rcond=None)[:2]
    se = np.sqrt(rss[0] / (12 - 3) * np.linalg.inv(design.T @ design)[2, 2])
    assert st.partial_p(r, 12) == pytest.approx(2 * stats.t.sf(abs(coef[2] / se), 12 - 3))


def invariance_frame(results: pd.DataFrame) -> pd.DataFrame:
    """Scores per composition: elemental invariance depends only on the set, as in the real score."""
    rows = []
    for row in results[results["length"] >= 2].itertuples():
        members = sorted(row.composition.split("-"))
        rows.append(
            {
                "method": row.method,
                "seed": row.seed,
                "composition": row.composition,
                "length": row.length,
                "elemental_invariance": sum(map(len, members)) / 10 + row.seed,
                "composition_invariance": len(row.composition) % 5 + row.seed / 3,
                "accuracy": row.accuracy,
            }
        )
    return pd.DataFrame(rows)


def test_invariance_tests_use_sets_as_units_and_holm_over_the_whole_grid() -> None:
    new = [
        "Swirl",
        "GaussianBlur",
        *("-".join(p) for p in itertools.permutations(["Swirl", "GaussianBlur", "Contrast"], 2)),
    ]
    extra = [
        {
            "method": m,
            "seed": s,
            "composition": c,
            "length": c.count("-") + 1,
            "accuracy": 40.0 + i * s,
            "run_id": "x",
        }
        for m in ("ERM", "Modular")
        for s in (1, 2, 3)
        for i, c in enumerate(new)
    ]
    results = pd.concat([results_frame(), pd.DataFrame(extra)], ignore_index=True)
    invariance = invariance_frame(results)
    sets = st.invariance_sets(invariance, results)
    erm2 = sets[(sets["method"] == "ERM") & (sets["length"] == 2)]
    assert len(erm2) == 6  # 6 unordered pairs behind 12 ordered compositions
    row = erm2[erm2["set"] == "Contrast+Invert"].iloc[0]
    assert row["elemental_accuracy"] == pytest.approx(
        np.mean([accuracy("ERM", s, c) for s in (1, 2, 3) for c in ("Contrast", "Invert")])
    )
    tests = st.invariance_tests(invariance, results, samples=500)
    assert len(tests) == 3 * 5 * 2  # every pair of scores x length x method is reported
    tested = tests[tests["p"].notna()]
    assert set(tested["length"]) == {2} and set(tested["sets"]) == {6}
    one = tested[
        (tested["method"] == "ERM") & (tested["y"] == "accuracy") & (tested["x"] == "elemental_invariance")
    ].iloc[0]
    x, y, z = (erm2[c].to_numpy() for c in ("elemental_invariance", "accuracy", "elemental_accuracy"))
    assert one["partial_r"] == pytest.approx(float(st.partial_correlation(x, y, z)))
    assert -1 <= one["ci_low"] <= one["partial_r"] <= one["ci_high"] <= 1
    np.testing.assert_allclose(tests["p_holm"], st.holm(tests["p"]))
    assert tests.loc[tests["length"] == 6, "note"].str.contains("4 needed").all()


def commute(images: np.ndarray, a: str, b: str) -> bool:
    return np.array_equal(np.asarray(corrupt(images, f"{a}-{b}")), np.asarray(corrupt(images, f"{b}-{a}")))


def test_documented_commuting_pairs_are_exactly_those_the_engine_commutes() -> None:
    """Documented pairs give identical grey and colour images; every other pair differs somewhere on 50 digits."""
    digits, patches = sample_digits(50), sample_photo_patches(3)
    for a, b in diagnostics.EXACTLY_COMMUTING:
        assert commute(digits, a, b) and commute(patches, a, b), (a, b)
    others = set(itertools.combinations(ELEMENTALS, 2)) - set(diagnostics.EXACTLY_COMMUTING)
    assert not any(commute(digits, a, b) for a, b in others)


def test_commuting_diagnostic_is_zero_for_a_monolithic_network(small_mnist) -> None:
    from comprobust.evaluation import evaluate, monolithic
    from comprobust.models import build_network

    torch.manual_seed(0)
    network = build_network("small", 10, in_channels=1, image_size=28).eval()
    compositions = [
        tuple(p.split("-")) for a, b in diagnostics.EXACTLY_COMMUTING for p in (f"{a}-{b}", f"{b}-{a}")
    ]
    rows = evaluate(monolithic(network), small_mnist, compositions, batch_size=100).rows
    results = pd.DataFrame(rows).assign(method="ERM", seed=0)
    modular = results.assign(method="Modular", accuracy=results["accuracy"] + np.arange(len(results)))
    diagnostic = diagnostics.commuting_diagnostics(pd.concat([results, modular]))
    assert len(diagnostic) == 2 * len(diagnostics.EXACTLY_COMMUTING)
    assert (diagnostic.loc[diagnostic["method"] == "ERM", "abs_diff"] == 0).all()
    assert (diagnostic.loc[diagnostic["method"] == "Modular", "abs_diff"] == 1).all()


def runs_frame() -> pd.DataFrame:
    def train(run_id, stage, best, last, inputs=(), **summary):
        return {
            "run_id": run_id,
            "kind": "train",
            "state": "finished",
            "job_type": stage,
            "seed": 1,
            "config.stage": stage,
            "config.corruption": summary.pop("corruption", None),
            "config.inputs": json.dumps([f"model-{i}:best" for i in inputs]),
            "summary.best_epoch": best,
            "summary.epoch": last,
            "config.params.max_epochs": last + 1,
            **{f"summary.{k}": v for k, v in summary.items()},
        }

    return pd.DataFrame(
        [
            train("backbone-1", "backbone", 4, 9),
            train(
                "modules-in-1",
                "modules",
                2,
                2,
                ["backbone-1"],
                corruption="Invert",
                level=1,
                level_0_val_acc=50.0,
                level_1_val_acc=62.0,
                level_2_val_acc=60.0,
            ),
            train(
                "modules-co-1",
                "modules",
                1,
                2,
                ["backbone-1"],
                corruption="Contrast",
                level=3,
                level_3_val_acc=90.2,
                level_2_val_acc=90.0,
                level_margin=0.2,
                level_margin_se=0.5,
                level_runner_up=2,
            ),
            train("erm-old", "erm", 1, 2),  # fed no evaluation in the results: not listed
            {
                "run_id": "eval-modular-1",
                "kind": "evaluate",
                "state": "finished",
                "job_type": "evaluate",
                "seed": 1,
                "config.inputs": json.dumps(
                    ["model-backbone-1:best", "model-modules-in-1:best", "model-modules-co-1:best"]
                ),
            },
        ]
    )


def test_training_diagnostics_flag_best_epoch_last_and_measure_the_level_margin() -> None:
    results = pd.DataFrame({"run_id": ["eval-modular-1"]})
    training = diagnostics.training_diagnostics(runs_frame(), results).set_index("run_id")
    assert list(training.index) == ["backbone-1", "modules-in-1", "modules-co-1"]
    assert training["converged"].to_dict() == {
        "backbone-1": True,
        "modules-in-1": False,
        "modules-co-1": True,
    }
    assert training.loc["modules-in-1", "level"] == 1
    assert training.loc["modules-in-1", "level_margin"] == pytest.approx(2.0)  # from the per-level accuracies
    assert (
        training.loc["modules-co-1", "level_margin"] == 0.2 and training.loc["modules-co-1", "runner_up"] == 2
    )
    assert training.loc["modules-co-1", "level_resolved"] is False  # 0.2 pp on a 0.5 pp standard error
    assert training.loc["modules-in-1", "level_resolved"] is None  # no standard error recorded
    levels = levels_table(training.reset_index())
    assert levels.loc["Contrast", 1] == "3? (+0.2 ± 0.5 over 2)" and levels.loc["Invert", 1] == "1 (+2.0)"
    assert "? = within 2 SE" in format_levels(training.reset_index())


def test_one_seed_prints_n_a_instead_of_failing() -> None:
    results = results_frame(seeds=(1,))
    report = st.compute_statistics(results, invariance_frame(results), runs_frame())
    assert report.lengths["ci_low"].isna().all() and report.differences["ci_low"].isna().all()
    text = format_intervals(report)
    assert "n/a (1 seed)" in text and "Modular" in text
    page = statistics_html(report)
    assert "n/a (1 seed)" in page and "won 1/1" in page
    assert set(report.tables()) == {
        f"statistics-{n}.csv"
        for n in ("lengths", "differences", "sets", "invariance", "training", "commuting")
    }
