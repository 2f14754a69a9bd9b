"""The distillation report: the numbers its CSVs hold and its heatmaps draw (texts and colour arrays read back from
the artists), against hand computations and scipy, on a frame built by ``conditions_frame`` from run records."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

from comprobust.report_distill import (
    baselines_table,
    distill_table,
    identify_teacher_stages,
    teachers_table,
)
from comprobust.report_distill_figures import (
    distill_figure,
    drawn_cells,
    panel,
    teachers_figure,
    write_distill_report,
)
from comprobust.results.conditions import conditions_frame
from comprobust.results.records import RunRecord

CONDITIONS = ["I", "A", "IA"]
SEEDS = [0, 1]
TEACHERS = ["I", "IA"]
LOSSES = ["kd", "jacobian", "contrastive"]
# (teacher mechanisms, seed) -> accuracy per condition
TEACHER_ACC = {
    ("I", 0): [81.0, 10.0, 80.0],
    ("I", 1): [79.0, 12.0, 78.5],
    ("IA", 0): [83.0, 97.0, 99.0],
    ("IA", 1): [84.0, 95.0, 98.0],
}
SCRATCH_ACC = {0: [70.0, 60.0, 90.0], 1: [72.0, 64.0, 91.0]}
# runs not made: no contrastive student of teacher IA (a blank row), no KD student of teacher IA on seed 1 (one seed)
MISSING = {("contrastive", "IA", 0), ("contrastive", "IA", 1), ("kd", "IA", 1)}


def agreement(loss: str, teacher: str, seed: int, condition: int) -> float:
    base = {"I": 60.0, "IA": 80.0}[teacher] + 4.0 * condition
    return (
        base
        + {"kd": 0.0, "jacobian": 3.0, "contrastive": -2.0}[loss]
        + seed * (1.5 + condition) * (1 + LOSSES.index(loss))
    )


def accuracy(loss: str, teacher: str, seed: int, condition: int) -> float:
    return 50.0 + 7.0 * condition + {"kd": 1.0, "jacobian": 2.5, "contrastive": 0.5}[loss] - 2.0 * seed


def kl(loss: str, teacher: str, seed: int, condition: int) -> float:
    return 0.1 * (1 + condition) + {"kd": 0.05, "jacobian": 0.02, "contrastive": 0.04}[loss] + 0.01 * seed


def record(run_id: str, created: float, config: dict, table: pd.DataFrame) -> RunRecord:
    return RunRecord(
        run_id,
        run_id,
        "p",
        "",
        "distill",
        "train",
        "finished",
        created,
        "",
        config,
        {},
        {"conditions": table},
    )


def supervised_table(values: list[float]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "condition": CONDITIONS,
            "length": [1, 1, 2],
            "accuracy": values,
            "loss": [0.7, 2.3, 0.4],
            "images": 100,
        }
    )


def build_frame(with_teachers: bool = True) -> pd.DataFrame:
    records = []
    created = 0.0
    for seed in SEEDS:
        for teacher in TEACHERS:
            if with_teachers:
                config = {
                    "stage": "teacher",
                    "method": "supervised",
                    "seed": seed,
                    "axes": {"mechanisms": teacher},
                }
                table = supervised_table(TEACHER_ACC[(teacher, seed)])
                records.append(record(f"teacher-{teacher}-s{seed}", created, config, table))
                created += 1
        config = {"stage": "scratch", "method": "supervised", "seed": seed, "axes": {"mechanisms": "IAB"}}
        records.append(record(f"scratch-s{seed}", created, config, supervised_table(SCRATCH_ACC[seed])))
        created += 1
        for teacher in TEACHERS:
            for loss in LOSSES:
                if (loss, teacher, seed) in MISSING:
                    continue
                axes = {"mechanisms": "IAB", "loss": loss, "teacher.mechanisms": teacher}
                config = {"stage": "student", "method": "distill", "seed": seed, "axes": axes}
                n = range(len(CONDITIONS))
                table = pd.DataFrame(
                    {
                        "condition": CONDITIONS,
                        "length": [1, 1, 2],
                        "accuracy": [accuracy(loss, teacher, seed, c) for c in n],
                        "teacher_accuracy": TEACHER_ACC[(teacher, seed)],
                        "loss": [0.9, 1.1, 1.3],  # the student's CE: the axis `loss` takes its place
                        "kl": [kl(loss, teacher, seed, c) for c in n],
                        "agreement": [agreement(loss, teacher, seed, c) for c in n],
                        "images": 100,
                    }
                )
                records.append(record(f"student-{teacher}-{loss}-s{seed}", created, config, table))
                created += 1
    frame, notes = conditions_frame(records)
    assert not notes
    return frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return build_frame()


@pytest.fixture(scope="module")
def agreement_figure(frame: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    return distill_figure(frame, "agreement")


def fast_save(fig: Figure, path: Path) -> Path:
    """Stands in for `report_figures.save` where a test checks which parts are written, not their pixels (a real
    PNG of a figure is written once, in `test_a_heatmap_figure_saves_as_png`)."""
    path.write_bytes(b"png")
    return path


@pytest.fixture(scope="module")
def written(frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path, Path]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("comprobust.report_figures.save", fast_save)
        return write_distill_report(frame, tmp_path_factory.mktemp("report"))


def scipy_interval(values: list[float]) -> tuple[float, float]:
    x = np.asarray(values, float)
    low, high = stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=stats.sem(x))
    return float(low), float(high)


def cell(table: pd.DataFrame, loss: str, teacher: str, condition: str) -> pd.Series:
    rows = table[
        (table["loss"] == loss) & (table["teacher.mechanisms"] == teacher) & (table["condition"] == condition)
    ]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_kd_is_absolute_and_other_losses_are_seed_paired_differences_with_t_intervals(
    frame: pd.DataFrame,
) -> None:
    table = distill_table(frame, "agreement")
    # KD, teacher I, condition A (index 1): seeds give 64.0 and 64.0 + 2.5 = 66.5
    kd = cell(table, "kd", "I", "A")
    assert kd["compared"] == "absolute" and kd["seeds"] == 2 and kd["transfer"] == "IAB"
    assert kd["mean"] == pytest.approx(65.25)
    assert (kd["ci_low"], kd["ci_high"]) == pytest.approx(scipy_interval([64.0, 66.5]))
    # Jacobian - KD, teacher I, condition A: seed 0: 67 - 64 = 3; seed 1: (67 + 5) - (64 + 2.5) = 5.5
    jac = cell(table, "jacobian", "I", "A")
    assert jac["compared"] == "jacobian - kd" and jac["seeds"] == 2
    assert jac["mean"] == pytest.approx(4.25)
    assert (jac["ci_low"], jac["ci_high"]) == pytest.approx(scipy_interval([3.0, 5.5]))
    assert jac["interval"].startswith("+4.2 [") or jac["interval"].startswith("+4.3 [")
    # every difference cell against a direct computation
    for teacher in TEACHERS:
        for c, condition in enumerate(CONDITIONS):
            for loss in ("jacobian", "contrastive"):
                pairs = [
                    agreement(loss, teacher, s, c) - agreement("kd", teacher, s, c)
                    for s in SEEDS
                    if (loss, teacher, s) not in MISSING and ("kd", teacher, s) not in MISSING
                ]
                if (loss, teacher, 0) in MISSING:
                    continue
                assert cell(table, loss, teacher, condition)["mean"] == pytest.approx(np.mean(pairs))


def test_the_heatmap_draws_and_annotates_exactly_the_table(
    agreement_figure: tuple[Figure, pd.DataFrame],
) -> None:
    fig, table = agreement_figure
    assert [ax.get_title() for ax in fig.axes[:3]] == [
        "KD · transfer IAB",
        "Jacobian − KD · transfer IAB",
        "Contrastive − KD · transfer IAB",
    ]
    kd = drawn_cells(panel(fig, "KD"))
    assert list(dict.fromkeys(kd["row"])) == TEACHERS and list(dict.fromkeys(kd["column"])) == CONDITIONS
    shown = kd.set_index(["row", "column"])
    assert shown.loc[("I", "A"), "value"] == pytest.approx(65.25)
    assert shown.loc[("I", "A"), "text"] == "65.2"  # 65.25 rounds half to even
    low, high = scipy_interval([64.0, 66.5])
    assert shown.loc[("I", "A"), "spread"] == f"±{high - 65.25:.1f}"
    jac = drawn_cells(panel(fig, "Jacobian")).set_index(["row", "column"])
    assert jac.loc[("I", "A"), "value"] == pytest.approx(4.25) and jac.loc[("I", "A"), "text"] == "+4.2"
    # teacher IA, condition IA (index 2): seed 0 only (no KD on seed 1): 91 - 88 = 3
    assert jac.loc[("IA", "IA"), "value"] == pytest.approx(3.0)
    for loss, title in (("kd", "KD"), ("jacobian", "Jacobian"), ("contrastive", "Contrastive")):
        drawn = drawn_cells(panel(fig, title)).set_index(["row", "column"])
        part = table[table["loss"] == loss]
        assert len(drawn) == len(part)
        for row in part.itertuples(index=False):
            assert drawn.loc[(row[table.columns.get_loc("teacher.mechanisms")], row.condition), "value"] == (
                pytest.approx(row.mean)
            )


def test_missing_combinations_are_blank_not_zero(agreement_figure: tuple[Figure, pd.DataFrame]) -> None:
    fig, table = agreement_figure
    assert table[(table["loss"] == "contrastive") & (table["teacher.mechanisms"] == "IA")].empty
    ax = panel(fig, "Contrastive")
    drawn = drawn_cells(ax)
    assert set(drawn["row"]) == {"I"} and len(drawn) == 3
    from matplotlib.collections import QuadMesh

    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    array = np.ma.asarray(mesh.get_array()).reshape(2, 3)
    assert np.ma.getmaskarray(array)[1].all() and not np.ma.getmaskarray(array)[0].any()
    assert [t.get_text() for t in ax.get_yticklabels()] == TEACHERS  # the row is there, blank


def test_one_seed_cells_have_a_mean_and_no_interval(
    frame: pd.DataFrame, agreement_figure: tuple[Figure, pd.DataFrame]
) -> None:
    fig, table = agreement_figure
    for loss in ("kd", "jacobian"):
        one = cell(table, loss, "IA", "A")
        assert one["seeds"] == 1 and math.isnan(one["ci_low"]) and math.isnan(one["ci_high"])
        assert "n/a (1 seed)" in one["interval"]
    assert cell(table, "kd", "IA", "A")["mean"] == pytest.approx(agreement("kd", "IA", 0, 1))
    drawn = drawn_cells(panel(fig, "KD")).set_index(["row", "column"])
    assert drawn.loc[("IA", "A"), "spread"] == "" and drawn.loc[("I", "A"), "spread"] != ""
    one_seed = frame[frame["seed"] == 0]
    single = distill_table(one_seed, "kl")
    assert (single["seeds"] == 1).all() and single["interval"].str.contains("n/a \\(1 seed\\)").all()
    fig, _ = distill_figure(one_seed, "kl")
    assert "1 seed" in fig.get_suptitle()


def test_kl_and_accuracy_differences(frame: pd.DataFrame) -> None:
    acc = distill_table(frame, "accuracy")
    # contrastive - kd accuracy: 0.5 - 1.0 on both seeds
    assert cell(acc, "contrastive", "I", "IA")["mean"] == pytest.approx(-0.5)
    assert cell(acc, "kd", "I", "I")["mean"] == pytest.approx(np.mean([51.0, 49.0]))
    divergence = distill_table(frame, "kl")
    assert cell(divergence, "jacobian", "I", "A")["mean"] == pytest.approx(-0.03)
    assert cell(divergence, "kd", "I", "A")["mean"] == pytest.approx(0.255)


def test_teachers_are_identified_and_baselines_are_the_other_supervised_stages(frame: pd.DataFrame) -> None:
    assert identify_teacher_stages(frame) == ["teacher"]
    teachers = teachers_table(frame)
    assert list(dict.fromkeys(teachers["mechanisms"])) == TEACHERS and set(teachers["source"]) == {
        "teacher runs"
    }
    row = teachers[(teachers["mechanisms"] == "IA") & (teachers["condition"] == "A")].iloc[0]
    assert row["mean"] == pytest.approx(96.0) and (row["ci_low"], row["ci_high"]) == pytest.approx(
        scipy_interval([97.0, 95.0])
    )
    fig, _ = teachers_figure(frame)
    drawn = drawn_cells(fig.axes[0]).set_index(["row", "column"])
    assert drawn.loc[("IA", "A"), "text"] == "96.0" and drawn.loc[("I", "I"), "value"] == pytest.approx(80.0)
    baselines = baselines_table(frame)
    assert set(baselines["stage"]) == {"scratch"} and list(baselines["mechanisms"].unique()) == ["IAB"]
    assert baselines.set_index("condition").loc["A", "mean"] == pytest.approx(62.0)


def test_without_teacher_runs_the_students_measurements_stand_in(frame: pd.DataFrame) -> None:
    bare = build_frame(with_teachers=False)
    assert identify_teacher_stages(bare) == []
    teachers = teachers_table(bare)
    assert set(teachers["source"]) == {"students' teacher_accuracy"}
    row = teachers[(teachers["mechanisms"] == "I") & (teachers["condition"] == "IA")].iloc[0]
    assert row["mean"] == pytest.approx(np.mean([80.0, 78.5])) and row["seeds"] == 2
    assert set(baselines_table(bare)["stage"]) == {"scratch"}
    # a teacher stage whose numbers do not match its students' is not taken for one
    changed = frame.copy()
    changed.loc[changed["stage"] == "teacher", "accuracy"] += 1.0
    assert identify_teacher_stages(changed) == []
    assert set(baselines_table(changed)["stage"]) == {"teacher", "scratch"}


def test_the_report_writes_each_part_and_its_csv_holds_the_table(
    frame: pd.DataFrame, written: list[tuple[str, Path, Path]]
) -> None:
    assert [png.name for _, png, _ in written] == [
        "distill-agree.png",
        "distill-acc.png",
        "distill-kl.png",
        "teachers.png",
        "baselines.png",
    ]
    assert [csv.name for _, _, csv in written][3:] == ["teachers.csv", "baselines.csv"]
    assert [t for t, _, _ in written][3:] == [
        "Teachers' accuracy (%)",
        "From-scratch baselines' accuracy (%)",
    ]
    for _, png, csv in written:
        assert png.exists() and csv.exists()
    agree = pd.read_csv(written[0][2])
    assert (
        len(agree) == len(distill_table(frame, "agreement")) == 6 + 6 + 3
    )  # kd, jacobian: 2 x 3; contrastive: 1 x 3
    assert {"metric", "transfer", "teacher.mechanisms", "loss", "compared", "condition", "seeds"} <= set(
        agree
    )
    jac = cell(agree, "jacobian", "I", "A")
    assert jac["mean"] == pytest.approx(4.25) and jac["seeds"] == 2
    assert (jac["ci_low"], jac["ci_high"]) == pytest.approx(scipy_interval([3.0, 5.5]))
    one = cell(agree, "kd", "IA", "I")
    assert "n/a (1 seed)" in one["interval"] and np.isnan(one["ci_low"]) and one["seeds"] == 1
    assert cell(pd.read_csv(written[2][2]), "kd", "I", "A")["mean"] == pytest.approx(0.255)
    teachers = pd.read_csv(written[3][2])
    row = teachers[(teachers["mechanisms"] == "I") & (teachers["condition"] == "A")].iloc[0]
    assert row["mean"] == pytest.approx(11.0) and (row["ci_low"], row["ci_high"]) == pytest.approx(
        scipy_interval([10.0, 12.0])
    )


def test_absent_columns_skip_parts_and_an_empty_frame_gives_nothing(
    frame: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("comprobust.report_figures.save", fast_save)
    assert write_distill_report(pd.DataFrame(), tmp_path / "a") == []
    empty, _ = conditions_frame([])
    assert write_distill_report(empty, tmp_path / "b") == []
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    supervised_only = frame[frame["method"] == "supervised"]
    written = write_distill_report(supervised_only, tmp_path / "c")
    assert [(t, p.name) for t, p, _ in written] == [
        ("Supervised runs' accuracy (%) by stage", "baselines.png")
    ]
    assert set(pd.read_csv(written[0][2])["stage"]) == {"teacher", "scratch"}
    no_kl = frame.drop(columns=["kl", "accuracy"])
    names = [p.name for _, p, _ in write_distill_report(no_kl, tmp_path / "d")]
    # no accuracy column: no students' accuracy, no supervised runs to show; the students measured their teachers
    assert names == ["distill-agree.png", "teachers.png"]


def test_a_heatmap_figure_saves_as_png(agreement_figure: tuple[Figure, pd.DataFrame], tmp_path: Path) -> None:
    from comprobust.report_figures import save

    path = save(agreement_figure[0], tmp_path / "distill-agree.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_losses_run_as_separate_stages_still_pair_and_repeated_cells_split_by_stage(
    frame: pd.DataFrame,
) -> None:
    split = frame.copy()
    split.loc[split["loss"].eq("jacobian") & split["method"].eq("distill"), "stage"] = "jacobian-students"
    table = distill_table(split, "agreement")
    assert cell(table, "jacobian", "I", "A")["mean"] == pytest.approx(4.25) and "stage" not in table.columns
    twice = pd.concat([frame, frame[frame["method"] == "distill"].assign(stage="again")], ignore_index=True)
    table = distill_table(twice, "agreement")
    assert set(table["stage"]) == {"student", "again"}
    again = table[table["stage"] == "again"]
    assert cell(again, "jacobian", "I", "A")["mean"] == pytest.approx(4.25)
