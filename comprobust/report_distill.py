"""The distillation report's tables (issue 16): what a student keeps of its teacher's mechanisms, per loss, teacher,
transfer set and test condition; the teachers' own accuracy; the from-scratch baselines. Pure functions of the frame
that ``RunStore.conditions()`` returns (one row per cue-dataset run and test condition;
``comprobust.results.conditions``), as pandas frames; ``comprobust.report_distill_figures`` draws each of them and
writes the report.

**Students** (``students``): the ``distill`` rows, keyed by student group (the transfer set, i.e. the student's
``mechanisms``, with its architecture when it varies; the distill stage too, but only when two stages would otherwise
give the same cell, so that losses run as separate stages still pair), teacher (its ``teacher.*`` axes), loss (KD
first, then Jacobian and Contrastive), test condition and seed. Test conditions and teacher mechanisms are ordered as
the experiment's condition list orders them (falling back to the order of appearance).

**Differences** (``distill_table``) are seed-paired: for each (student group, teacher, test condition, seed), the
loss's value minus KD's with the same teacher, transfer set, condition and seed; the cell shows their mean over seeds
(seeds without both runs drop out). Without any KD run, every loss is shown absolute. For KL (nats, KL(teacher ||
student)) lower is closer to the teacher, so a negative difference means the loss distils more faithfully than KD;
for agreement (% top-1 agreement with the teacher) and accuracy (%) a positive one does.

**Cells** (one table row each) hold ``seeds`` (n), ``mean`` (the seed mean), ``ci_low``, ``ci_high`` (the 95%
Student-t interval over seeds, ``statistics.t_interval``) and ``interval`` (text, with "n/a (1 seed)" for one seed,
``statistics.format_interval``).

**Teachers** (``teachers_table``): the teachers' own accuracy per test condition, rows = teacher mechanisms, from the
supervised stages that taught a student. The frame does not name a student's teacher stage, so a supervised stage
counts as a teacher stage when its runs' accuracy equals, on every (seed, mechanisms, condition) it shares with them,
the ``teacher_accuracy`` that the students of ``teacher.mechanisms`` measured (both are scored on the same test
images, ``cue_test_seed``); ``teacher_stages=`` overrides this. With no such stage, the students' ``teacher_accuracy``
itself is shown. **Baselines** (``baselines_table``): the other supervised stages (the from-scratch baselines), rows =
stage and mechanisms; when no teacher stage is identified, every supervised stage, labelled by stage name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from comprobust.statistics import format_interval, t_interval

IDENTITY = ("stage", "method", "dataset", "seed", "run_id")
TABLE_COLUMNS = ("condition", "length", "accuracy", "teacher_accuracy", "kl", "agreement", "images")
SUPERVISED, DISTILL = "supervised", "distill"
KD = "kd"
LOSS_ORDER = ("kd", "jacobian", "contrastive")
TEACHER_PREFIX = "teacher."
INTERVAL_COLUMNS = ("seeds", "mean", "ci_low", "ci_high", "interval")
ABSOLUTE = "absolute"
MATCH_TOLERANCE = (
    1e-6  # percent: a teacher's own accuracy equals what its students measured, up to float noise
)
BLANK = ""  # an axis a run does not have (a stage without an architecture axis), in keys and labels


@dataclass(frozen=True)
class Metric:
    """A column of the students' rows and how it is drawn."""

    column: str
    file: str
    title: str
    unit: str
    digits: int
    cmap: str
    fixed_range: tuple[float, float] | None  # the absolute colour range (None: 0 .. the largest mean)
    diff_cmap: str  # differences: blue where the loss is closer to the teacher (or more accurate) than KD


METRICS: tuple[Metric, ...] = (
    Metric(
        "agreement",
        "distill-agree",
        "Student-teacher top-1 agreement",
        "%",
        1,
        "viridis",
        (0.0, 100.0),
        "RdBu",
    ),
    Metric("accuracy", "distill-acc", "Student accuracy", "%", 1, "viridis", (0.0, 100.0), "RdBu"),
    Metric("kl", "distill-kl", "KL(teacher || student)", "nats", 3, "magma_r", None, "RdBu_r"),
)


# ------------------------------------------------------------------------------------------------------ input


def first_seen(values: Iterable[Any]) -> list[Any]:
    """Distinct values in order of first appearance (the experiment's order, not the alphabet's)."""
    return list(dict.fromkeys(values))


def _like(values: Iterable[Any], reference: Sequence[Any]) -> list[Any]:
    """Distinct values, those in ``reference`` in its order first, then the others in order of appearance."""
    distinct = first_seen(values)
    return [v for v in reference if v in distinct] + [v for v in distinct if v not in reference]


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return BLANK
    return str(value)


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The runs' axis columns: after the identity columns and before the table's (``conditions_frame`` order)."""
    columns = list(frame.columns)
    end = columns.index("condition") if "condition" in columns else len(columns)
    return [c for c in columns[:end] if c not in IDENTITY and c not in TABLE_COLUMNS]


def _loss_order(losses: Iterable[str]) -> list[str]:
    present = first_seen(losses)
    return [loss for loss in LOSS_ORDER if loss in present] + sorted(set(present) - set(LOSS_ORDER))


@dataclass(frozen=True)
class Students:
    """The students' rows with their keys as text: ``group`` (the panel rows: transfer set and the student's other
    axes), ``teacher`` (the teacher's axes), loss, condition and seed."""

    rows: pd.DataFrame
    group: list[str]  # columns naming a student group, in order (stage first when several stages share axes)
    teacher: list[str]  # teacher.* columns
    conditions: list[str]
    losses: list[str]
    teachers: list[tuple[str, ...]]
    groups: list[tuple[str, ...]]

    def teacher_label(self, key: tuple[str, ...]) -> str:
        parts = [v for v in key if v != BLANK]
        return " · ".join(parts) if parts else "teacher"

    def group_label(self, key: tuple[str, ...]) -> str:
        named = {c: v for c, v in zip(self.group, key) if v != BLANK}
        out = []
        for column, value in named.items():
            if column == "mechanisms":
                out.append(f"transfer {value}")
            elif column == "stage":
                out.append(f"stage {value}")
            else:
                out.append(f"{column} {value}")
        return ", ".join(out) or "students"


def students(frame: pd.DataFrame) -> Students | None:
    """The ``distill`` rows of the frame, keyed (None when there are none)."""
    if frame.empty or "method" not in frame.columns or "condition" not in frame.columns:
        return None
    rows = frame[frame["method"] == DISTILL].copy()
    if rows.empty:
        return None
    axes = [c for c in axis_columns(frame) if rows[c].notna().any()]
    teacher = [c for c in axes if c.startswith(TEACHER_PREFIX)]
    own = [c for c in axes if c not in teacher and c != "loss"]
    own = (["mechanisms"] if "mechanisms" in own else []) + [c for c in own if c != "mechanisms"]
    rows["loss"] = [_text(v) or KD for v in rows["loss"]] if "loss" in rows.columns else KD
    for column in [*own, *teacher, "condition"]:
        rows[column] = [_text(v) for v in rows[column]]
    key = [*own, *teacher, "loss", "condition", "seed"]
    several = rows.astype({"seed": str}).duplicated(key, keep=False).any()
    group = ["stage", *own] if several or not own else own
    rows["stage"] = [_text(v) for v in rows["stage"]]
    conditions = [_text(c) for c in first_seen(frame["condition"])]
    ordered = _like(rows["condition"], conditions)
    teachers = first_seen(zip(*(rows[c] for c in teacher))) if teacher else [()]
    teachers = sorted(teachers, key=lambda k: _rank(k, conditions))
    groups = first_seen(zip(*(rows[c] for c in group)))
    groups = sorted(
        groups, key=lambda k: _rank(k[group.index("mechanisms")] if "mechanisms" in group else "", conditions)
    )
    return Students(rows, group, teacher, ordered, _loss_order(rows["loss"]), teachers, groups)


def _rank(key: Any, conditions: Sequence[str]) -> int:
    """A sort key putting mechanisms named like conditions in the conditions' order (the sort is stable)."""
    first = key[0] if isinstance(key, tuple) and key else key
    return conditions.index(first) if first in conditions else len(conditions)


# ----------------------------------------------------------------------------------------------------- tables


def _interval_row(values: Iterable[float], digits: int, signed: bool) -> dict[str, Any]:
    interval = t_interval(values)
    return {
        "seeds": interval.n,
        "mean": interval.mean,
        "ci_low": interval.low,
        "ci_high": interval.high,
        "interval": format_interval(interval.mean, interval.low, interval.high, digits=digits, signed=signed),
    }


def distill_table(frame: pd.DataFrame, metric: Metric | str) -> pd.DataFrame:
    """Per student group, teacher, loss and test condition that was run: ``compared`` ("absolute" for KD, and for
    every loss when no KD was run; "<loss> - kd" otherwise), the seeds (n) with a value (for a difference: with
    both the loss's and KD's run), the mean over seeds of the value or of the seed-paired difference, its 95%
    t-interval and its text. Empty when the frame has no students or no such column."""
    metric = as_metric(metric)
    data = students(frame)
    keys = ["metric", "transfer", "loss", "compared", "condition"]
    if data is None or metric.column not in data.rows.columns or data.rows[metric.column].isna().all():
        return pd.DataFrame(columns=[*keys, *INTERVAL_COLUMNS])
    rows = data.rows
    cell = [*data.group, *data.teacher, "condition"]
    per_seed = rows.groupby([*cell, "loss", "seed"], sort=False, dropna=False)[metric.column].mean()
    wide = per_seed.unstack("loss")
    has_kd = KD in wide.columns
    out = []
    for loss in data.losses:
        compared = f"{loss} - {KD}" if has_kd and loss != KD else ABSOLUTE
        values = wide[loss] - wide[KD] if compared != ABSOLUTE else wide[loss]
        ran = wide[loss].notna() | wide[loss].index.isin(_ran(rows, cell, loss))
        for key, part in values[ran].groupby(level=cell, sort=False):
            key = key if isinstance(key, tuple) else (key,)
            named = dict(zip(cell, key))
            out.append(
                {
                    **named,
                    "loss": loss,
                    "compared": compared,
                    **_interval_row(part.dropna(), metric.digits, compared != ABSOLUTE),
                }
            )
    table = pd.DataFrame(out, columns=[*cell, "loss", "compared", *INTERVAL_COLUMNS])
    table.insert(0, "metric", metric.column)
    group_rank = {g: i for i, g in enumerate(data.groups)}
    teacher_rank = {t: i for i, t in enumerate(data.teachers)}
    table["_g"] = [group_rank[tuple(k)] for k in zip(*(table[c] for c in data.group))]
    table["_t"] = (
        [teacher_rank[tuple(k)] for k in zip(*(table[c] for c in data.teacher))] if data.teacher else 0
    )
    table["_l"] = [data.losses.index(v) for v in table["loss"]]
    table["_c"] = [data.conditions.index(v) for v in table["condition"]]
    table = table.sort_values(["_g", "_l", "_t", "_c"], kind="stable").drop(columns=["_g", "_t", "_l", "_c"])
    return table.rename(columns={"mechanisms": "transfer"}).reset_index(drop=True)


def _ran(rows: pd.DataFrame, cell: list[str], loss: str) -> pd.MultiIndex:
    """(cell, seed) keys where ``loss`` was run even if its value is NaN (kept as n = 0 rows, not dropped)."""
    part = rows[rows["loss"] == loss]
    return pd.MultiIndex.from_frame(part[[*cell, "seed"]]) if len(part) else pd.MultiIndex.from_tuples([])


def as_metric(metric: Metric | str) -> Metric:
    """``metric`` itself, or the metric of that column or file name."""
    if isinstance(metric, Metric):
        return metric
    for candidate in METRICS:
        if metric in (candidate.column, candidate.file):
            return candidate
    raise ValueError(f"unknown metric {metric!r}; one of {[m.column for m in METRICS]}")


def identify_teacher_stages(frame: pd.DataFrame, tolerance: float = MATCH_TOLERANCE) -> list[str]:
    """The supervised stages whose runs' accuracy equals (within ``tolerance`` percent) the ``teacher_accuracy`` that
    students measured, on every (seed, mechanisms and other teacher axes, condition) they share, and that share at
    least one; in order of appearance."""
    data = students(frame)
    if data is None or "teacher_accuracy" not in data.rows.columns or not data.teacher:
        return []
    axes = [c[len(TEACHER_PREFIX) :] for c in data.teacher]
    if any(a not in frame.columns for a in axes):
        return []
    measured = data.rows[[*data.teacher, "condition", "seed", "teacher_accuracy"]].rename(
        columns=dict(zip(data.teacher, axes))
    )
    measured = measured.dropna(subset=["teacher_accuracy"]).astype({"seed": str})
    supervised = _supervised(frame)
    found = []
    for stage in first_seen(supervised["stage"]):
        own = supervised[supervised["stage"] == stage][[*axes, "condition", "seed", "accuracy"]].copy()
        for column in axes:
            own[column] = [_text(v) for v in own[column]]
        shared = own.astype({"seed": str}).merge(measured, on=[*axes, "condition", "seed"])
        if len(shared) and bool(
            (
                np.abs(shared["accuracy"].astype(float) - shared["teacher_accuracy"].astype(float))
                <= tolerance
            ).all()
        ):
            found.append(stage)
    return found


def _supervised(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty or "method" not in frame.columns or "accuracy" not in frame.columns:
        return pd.DataFrame(columns=["stage", "seed", "condition", "accuracy"])
    rows = frame[frame["method"] == SUPERVISED].copy()
    rows["stage"] = [_text(v) for v in rows["stage"]]
    rows["condition"] = [_text(v) for v in rows["condition"]]
    return rows


def _row_table(rows: pd.DataFrame, key: list[str], conditions: Sequence[str], value: str) -> pd.DataFrame:
    """Per ``key`` (in order of appearance) and condition: the seed mean of ``value`` and its 95% t-interval."""
    per_seed = rows.groupby([*key, "condition", "seed"], sort=False, dropna=False)[value].mean()
    out = []
    for cell, part in per_seed.groupby(level=[*key, "condition"], sort=False):
        out.append({**dict(zip([*key, "condition"], cell)), **_interval_row(part, 1, False)})
    table = pd.DataFrame(out, columns=[*key, "condition", *INTERVAL_COLUMNS])
    order = first_seen(zip(*(rows[c] for c in key)))
    table["_k"] = [order.index(k) for k in zip(*(table[c] for c in key))]
    table["_c"] = [list(conditions).index(c) for c in table["condition"]]
    return table.sort_values(["_k", "_c"], kind="stable").drop(columns=["_k", "_c"]).reset_index(drop=True)


def _supervised_key(rows: pd.DataFrame, with_stage: bool) -> tuple[pd.DataFrame, list[str]]:
    """Text keys of supervised rows: stage (when asked), mechanisms and any other axis a run has."""
    axes = [
        c
        for c in axis_columns(rows)
        if c != "loss" and not c.startswith(TEACHER_PREFIX) and rows[c].notna().any()
    ]  # a supervised run's `loss` column is its cross-entropy, not an axis
    axes = (["mechanisms"] if "mechanisms" in axes else []) + [c for c in axes if c != "mechanisms"]
    rows = rows.copy()
    for column in axes:
        rows[column] = [_text(v) for v in rows[column]]
    return rows, (["stage"] if with_stage or not axes else []) + axes


def _conditions(frame: pd.DataFrame) -> list[str]:
    return [_text(c) for c in first_seen(frame["condition"])]


def teachers_table(frame: pd.DataFrame, teacher_stages: Sequence[str] | None = None) -> pd.DataFrame:
    """The teachers' own accuracy (%) per teacher and test condition: seeds, mean, 95% t-interval, and ``source``
    ("teacher runs" of the identified stages, or "students' teacher_accuracy" when no stage is identified); empty
    when neither is in the frame."""
    stages = list(teacher_stages) if teacher_stages is not None else identify_teacher_stages(frame)
    supervised = _supervised(frame)
    own = supervised[supervised["stage"].isin(stages)]
    if len(own) and own["accuracy"].notna().any():
        rows, key = _supervised_key(own, with_stage=len(set(own["stage"])) > 1)
        table = _row_table(rows, key, _conditions(frame), "accuracy")
        return table.assign(source="teacher runs")
    data = students(frame)
    if (
        data is None
        or "teacher_accuracy" not in data.rows.columns
        or data.rows["teacher_accuracy"].isna().all()
    ):
        return pd.DataFrame(columns=["mechanisms", "condition", *INTERVAL_COLUMNS, "source"])
    teacher = data.teacher or ["teacher"]
    rows = data.rows.assign(teacher="teacher") if not data.teacher else data.rows
    # every student of a teacher measured the same number; one value per (teacher, seed, condition)
    rows = rows.groupby([*teacher, "condition", "seed"], sort=False, as_index=False)[
        "teacher_accuracy"
    ].mean()
    rank = {t: i for i, t in enumerate(data.teachers)}
    rows = rows.iloc[
        np.argsort([rank.get(tuple(k), 0) for k in zip(*(rows[c] for c in teacher))], kind="stable")
    ]
    table = _row_table(rows, teacher, data.conditions, "teacher_accuracy")
    names = {c: c[len(TEACHER_PREFIX) :] for c in teacher if c.startswith(TEACHER_PREFIX)}
    return table.rename(columns=names).assign(source="students' teacher_accuracy")


def baselines_table(frame: pd.DataFrame, teacher_stages: Sequence[str] | None = None) -> pd.DataFrame:
    """Accuracy (%) of the supervised runs that taught no student (from-scratch baselines) per stage, mechanisms and
    test condition: seeds, mean, 95% t-interval; every supervised stage when no teacher stage is identified."""
    stages = list(teacher_stages) if teacher_stages is not None else identify_teacher_stages(frame)
    supervised = _supervised(frame)
    rows = supervised[~supervised["stage"].isin(stages)]
    if rows.empty or rows["accuracy"].isna().all():
        return pd.DataFrame(columns=["stage", "condition", *INTERVAL_COLUMNS])
    rows, key = _supervised_key(rows, with_stage=True)
    return _row_table(rows, key, _conditions(frame), "accuracy")
