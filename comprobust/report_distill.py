"""The distillation report (issue 16): what a student keeps of its teacher's mechanisms, per loss, teacher, transfer
set and test condition; the teachers' own accuracy; the from-scratch baselines. Pure functions of the frame that
``RunStore.conditions()`` returns (one row per cue-dataset run and test condition; ``comprobust.results.conditions``);
tables as pandas frames, figures as matplotlib figures (object API, no pyplot state), each figure drawn from its
table so that what is drawn is what is written.

**The student heatmaps** (``distill-agree``, ``distill-acc``, ``distill-kl``; one figure per metric). A grid of panels:
one panel row per student group (the transfer set, i.e. the student's ``mechanisms``, with its architecture when it
varies; the distill stage too, but only when two stages would otherwise give the same cell, so that losses run as
separate stages still pair), one panel column per loss: KD absolute first, then Jacobian - KD and Contrastive - KD.
Inside a panel, rows are the teacher's mechanisms and columns the test conditions. This is the layout of Robust Socratic's
``grid_*`` figures, chosen because the question is read along a panel row: "a student of teacher I, tested on A (no
image), does it follow its teacher (who is at chance there) or the box it saw in its transfer set?"; teacher x
condition keeps each teacher's profile over the conditions on one line, and the panels of one row put KD and the
two differences for the same cells side by side, at the same positions, so a cell is compared across losses by
looking straight across. Test conditions and teacher mechanisms are ordered as the experiment's condition list
orders them (falling back to the order of appearance).

**Differences** are seed-paired: for each (student group, teacher, test condition, seed), the loss's value minus KD's
with the same teacher, transfer set, condition and seed; the cell shows their mean over seeds (seeds without both
runs drop out). Without any KD run, every loss is shown absolute. For KL (nats, KL(teacher || student)) lower is
closer to the teacher, so a negative difference means the loss distils more faithfully than KD; for agreement
(% top-1 agreement with the teacher) and accuracy (%) a positive one does.

**Cells** show the seed mean; a second, smaller line gives the half-width of the 95% Student-t interval over seeds
(``statistics.t_interval``), absent with one seed. A combination that was not run is blank (NaN, no text), never 0.
The companion CSVs hold, per cell, ``seeds`` (n), ``mean``, ``ci_low``, ``ci_high`` and ``interval`` (text, with
"n/a (1 seed)" for one seed, ``statistics.format_interval``).

**Teachers** (``teachers``): the teachers' own accuracy per test condition, rows = teacher mechanisms, from the
supervised stages that taught a student. The frame does not name a student's teacher stage, so a supervised stage
counts as a teacher stage when its runs' accuracy equals, on every (seed, mechanisms, condition) it shares with them,
the ``teacher_accuracy`` that the students of ``teacher.mechanisms`` measured (both are scored on the same test
images, ``cue_test_seed``); ``teacher_stages=`` overrides this. With no such stage, the students' ``teacher_accuracy``
itself is shown. **Baselines** (``baselines``): the other supervised stages (the from-scratch baselines), rows =
stage and mechanisms; when no teacher stage is identified, every supervised stage, labelled by stage name.

``write_distill_report(frame, folder)`` writes each part as PNG + CSV and returns ``[(title, png, csv), ...]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from comprobust.atomic import atomic_write_text
from comprobust.statistics import ONE_SEED, format_interval, t_interval

IDENTITY = ("stage", "method", "dataset", "seed", "run_id")
TABLE_COLUMNS = ("condition", "length", "accuracy", "teacher_accuracy", "kl", "agreement", "images")
SUPERVISED, DISTILL = "supervised", "distill"
KD = "kd"
LOSS_ORDER = ("kd", "jacobian", "contrastive")
LOSS_NAMES = {"kd": "KD", "jacobian": "Jacobian", "contrastive": "Contrastive"}
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
TEACHERS_FILE, BASELINES_FILE = "teachers", "baselines"


# ------------------------------------------------------------------------------------------------------ input


def _order(values: Iterable[Any]) -> list[Any]:
    """Distinct values in order of first appearance (the experiment's order, not the alphabet's)."""
    return list(dict.fromkeys(values))


def _like(values: Iterable[Any], reference: Sequence[Any]) -> list[Any]:
    """Distinct values, those in ``reference`` in its order first, then the others in order of appearance."""
    distinct = _order(values)
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
    present = _order(losses)
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
    conditions = [_text(c) for c in _order(frame["condition"])]
    ordered = _like(rows["condition"], conditions)
    teachers = _order(zip(*(rows[c] for c in teacher))) if teacher else [()]
    teachers = sorted(teachers, key=lambda k: _rank(k, conditions))
    groups = _order(zip(*(rows[c] for c in group)))
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
    metric = _metric(metric)
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


def _metric(metric: Metric | str) -> Metric:
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
    for stage in _order(supervised["stage"]):
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
    order = _order(zip(*(rows[c] for c in key)))
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
    return [_text(c) for c in _order(frame["condition"])]


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


# ---------------------------------------------------------------------------------------------------- figures


def _colour_range(means: np.ndarray, metric: Metric, difference: bool) -> tuple[float, float]:
    finite = means[np.isfinite(means)]
    largest = float(np.abs(finite).max()) if len(finite) else 0.0
    if difference:
        limit = largest if largest > 0 else 1.0
        return -limit, limit
    if metric.fixed_range is not None:
        return metric.fixed_range
    return 0.0, largest if largest > 0 else 1.0


def _heatmap(
    ax: Axes,
    means: pd.DataFrame,
    half: pd.DataFrame,
    vmin: float,
    vmax: float,
    cmap: str,
    digits: int,
    signed: bool,
) -> None:
    """``means`` (rows x columns, NaN = not run: blank) as coloured cells, each annotated with its mean (gid
    "cell-mean") and, below it, "±" the 95% t half-width (gid "cell-spread") where there is one."""
    import seaborn as sns
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    values = means.to_numpy(float)
    sns.heatmap(
        means.astype(float),
        ax=ax,
        vmin=vmin,
        vmax=vmax,
        cmap=cmap,
        mask=~np.isfinite(values),
        cbar=False,
        annot=False,
        linewidths=0.5,
        linecolor="white",
        xticklabels=True,
        yticklabels=True,
    )
    ax.set_facecolor("white")
    colours, norm = colormaps[cmap], Normalize(vmin, vmax)
    sign = "+" if signed else ""
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            value = values[i, j]
            if not np.isfinite(value):
                continue
            r, g, b, _ = colours(norm(value))
            ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
            spread = half.iat[i, j]
            has_spread = bool(np.isfinite(spread))
            ax.text(
                j + 0.5,
                i + (0.4 if has_spread else 0.5),
                f"{value:{sign}.{digits}f}",
                ha="center",
                va="center",
                fontsize=7.5,
                color=ink,
                gid="cell-mean",
            )
            if has_spread:
                ax.text(
                    j + 0.5,
                    i + 0.7,
                    f"±{spread:.{digits}f}",
                    ha="center",
                    va="center",
                    fontsize=6.5,
                    color=ink,
                    gid="cell-spread",
                )
    ax.tick_params(axis="both", length=0, labelsize=8)
    ax.tick_params(axis="y", labelrotation=0)


def _grid(
    table: pd.DataFrame, rows: list[Any], row_key: Sequence[str], conditions: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The means and 95% half-widths of ``table`` as rows (``row_key`` values) x conditions, NaN where not run."""
    means = pd.DataFrame(np.nan, index=range(len(rows)), columns=conditions)
    half = means.copy()
    index = {tuple(r): i for i, r in enumerate(rows)}
    for named in table.to_dict("records"):
        i = index.get(tuple(named[c] for c in row_key))
        if i is None:
            continue
        means.at[i, named["condition"]] = named["mean"]
        half.at[i, named["condition"]] = named["ci_high"] - named["mean"]
    return means, half


def _seeds_note(table: pd.DataFrame) -> str:
    counts = sorted({int(n) for n in table["seeds"] if n > 0})
    if not counts:
        return "no seeds"
    if counts == [1]:
        return f"1 seed: means, {ONE_SEED} for intervals"
    counted = f"{counts[0]} seeds" if len(counts) == 1 else f"{counts[0]}-{counts[-1]} seeds"
    return f"seed means, ± 95% t half-width ({counted})"


def _panel_title(loss: str, compared: str) -> str:
    name = LOSS_NAMES.get(loss, loss)
    return name if compared == ABSOLUTE else f"{name} − {LOSS_NAMES[KD]}"


def distill_figure(frame: pd.DataFrame, metric: Metric | str) -> tuple[Figure, pd.DataFrame]:
    """The heatmap grid of one metric (see the module docstring) with the table it draws (``distill_table``).
    Panel titles: "<Loss>" or "<Loss> − KD", then the student group; y: teacher mechanisms; x: test condition."""
    metric = _metric(metric)
    table = distill_table(frame, metric)
    data = students(frame)
    if data is None or table.empty:
        raise ValueError(f"the frame has no students with a {metric.column!r} value")
    group_cols = ["transfer" if c == "mechanisms" else c for c in data.group]
    compared = {loss: _order(table.loc[table["loss"] == loss, "compared"])[0] for loss in data.losses}
    absolute = table[table["compared"] == ABSOLUTE]["mean"].to_numpy(float)
    difference = table[table["compared"] != ABSOLUTE]["mean"].to_numpy(float)
    ranges = {False: _colour_range(absolute, metric, False), True: _colour_range(difference, metric, True)}
    teachers = data.teachers
    height = 0.42 * len(teachers) + 1.3
    width = 0.62 * len(data.conditions) + 1.6
    fig = Figure(
        figsize=(width * len(data.losses) + 1.6, height * len(data.groups) + 0.9), layout="constrained"
    )
    axes = np.atleast_2d(fig.subplots(len(data.groups), len(data.losses), squeeze=False))
    teacher_label = ", ".join(c[len(TEACHER_PREFIX) :] for c in data.teacher) or "teacher"
    for r, group in enumerate(data.groups):
        in_group = np.logical_and.reduce([table[c] == v for c, v in zip(group_cols, group)])
        for c, loss in enumerate(data.losses):
            ax = axes[r, c]
            part = table[in_group & (table["loss"] == loss)]
            is_difference = compared[loss] != ABSOLUTE
            means, half = _grid(part, teachers, data.teacher, data.conditions)
            means.index = half.index = [data.teacher_label(t) for t in teachers]
            _heatmap(
                ax,
                means,
                half,
                *ranges[is_difference],
                metric.diff_cmap if is_difference else metric.cmap,
                metric.digits,
                is_difference,
            )
            ax.set_title(f"{_panel_title(loss, compared[loss])} · {data.group_label(group)}", fontsize=9)
            ax.set_ylabel(f"teacher {teacher_label}" if c == 0 else "")
            ax.set_xlabel("test condition" if r == len(data.groups) - 1 else "")
    _colourbars(fig, axes, data.losses, compared, ranges, metric)
    fig.suptitle(
        f"{metric.title} ({metric.unit}) by loss, teacher and test condition; {_seeds_note(table)}",
        fontsize=10,
    )
    return fig, table


def _colourbars(
    fig: Figure,
    axes: np.ndarray,
    losses: list[str],
    compared: dict[str, str],
    ranges: dict[bool, tuple[float, float]],
    metric: Metric,
) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    for is_difference in (False, True):
        columns = [c for c, loss in enumerate(losses) if (compared[loss] != ABSOLUTE) == is_difference]
        if not columns:
            continue
        cmap = metric.diff_cmap if is_difference else metric.cmap
        mappable = ScalarMappable(Normalize(*ranges[is_difference]), cmap)
        closer = {"kl": "negative: closer to the teacher", "agreement": "positive: closer to the teacher"}
        label = (
            f"loss − KD ({metric.unit}, seed-paired)\n{closer.get(metric.column, 'positive: more accurate')}"
            if is_difference
            else f"{metric.column} ({metric.unit})"
        )
        fig.colorbar(mappable, ax=list(axes[:, columns].ravel()), label=label, shrink=0.8, aspect=30)


def _rows_figure(table: pd.DataFrame, key: list[str], title: str, ylabel: str) -> Figure:
    rows = _order(zip(*(table[c] for c in key)))
    conditions = _order(table["condition"])
    means, half = _grid(table, rows, key, conditions)
    means.index = half.index = [" · ".join(v for v in r if v != BLANK) for r in rows]
    fig = Figure(figsize=(0.62 * len(conditions) + 3.2, 0.42 * len(rows) + 1.6), layout="constrained")
    ax = fig.subplots()
    _heatmap(ax, means, half, 0.0, 100.0, "viridis", 1, False)
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    fig.colorbar(ScalarMappable(Normalize(0.0, 100.0), "viridis"), ax=ax, label="Accuracy (%)")
    ax.set_title(f"{title}; {_seeds_note(table)}", fontsize=9)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("test condition")
    return fig


def teachers_figure(
    frame: pd.DataFrame, teacher_stages: Sequence[str] | None = None
) -> tuple[Figure, pd.DataFrame]:
    """The teachers' accuracy (%), rows = teacher mechanisms (and stage, architecture when they vary), columns =
    test condition; with ``teachers_table``."""
    table = teachers_table(frame, teacher_stages)
    if table.empty:
        raise ValueError("the frame has no teachers")
    key = [c for c in table.columns if c not in ("condition", *INTERVAL_COLUMNS, "source")]
    source = _order(table["source"])[0]
    fig = _rows_figure(table, key, f"Teachers' accuracy (%) ({source})", "teacher " + ", ".join(key))
    return fig, table


def baselines_figure(
    frame: pd.DataFrame, teacher_stages: Sequence[str] | None = None
) -> tuple[Figure, pd.DataFrame]:
    """The from-scratch baselines' accuracy (%), rows = stage and mechanisms, columns = test condition; with
    ``baselines_table``."""
    table = baselines_table(frame, teacher_stages)
    if table.empty:
        raise ValueError("the frame has no supervised runs other than teachers")
    key = [c for c in table.columns if c not in ("condition", *INTERVAL_COLUMNS)]
    return _rows_figure(table, key, _baselines_title(frame, teacher_stages), ", ".join(key)), table


def _baselines_title(frame: pd.DataFrame, teacher_stages: Sequence[str] | None) -> str:
    stages = list(teacher_stages) if teacher_stages is not None else identify_teacher_stages(frame)
    return "From-scratch baselines' accuracy (%)" if stages else "Supervised runs' accuracy (%) by stage"


def drawn_cells(ax: Axes) -> pd.DataFrame:
    """What a heatmap panel shows, one row per drawn cell: row and column labels, the colour array's value and the
    annotation texts ("" for no spread). For tests and for checking a figure against its table; reads the
    artists, not pixels. Blank (not run) cells have no row."""
    from matplotlib.collections import QuadMesh

    mesh = next(c for c in ax.collections if isinstance(c, QuadMesh))
    rows = [t.get_text() for t in ax.get_yticklabels()]
    columns = [t.get_text() for t in ax.get_xticklabels()]
    array = np.ma.asarray(mesh.get_array()).reshape(len(rows), len(columns))
    texts: dict[tuple[int, int], dict[str, str]] = {}
    for text in ax.texts:
        gid = text.get_gid()
        if gid in ("cell-mean", "cell-spread"):
            x, y = text.get_position()
            texts.setdefault((int(y), int(x)), {})[gid] = text.get_text()
    out = []
    for (i, j), found in sorted(texts.items()):
        out.append(
            {
                "row": rows[i],
                "column": columns[j],
                "value": float(array[i, j]) if not np.ma.is_masked(array[i, j]) else float("nan"),
                "text": found.get("cell-mean", ""),
                "spread": found.get("cell-spread", ""),
            }
        )
    return pd.DataFrame(out, columns=["row", "column", "value", "text", "spread"])


def panel(fig: Figure, title_start: str, group: str = "") -> Axes:
    """The heatmap panel of ``fig`` whose title starts with ``title_start`` (and mentions ``group``)."""
    for ax in fig.axes:
        title = ax.get_title()
        if title.startswith(title_start) and group in title:
            return ax
    raise KeyError(f"no panel titled {title_start!r} {group!r}: {[a.get_title() for a in fig.axes]}")


# --------------------------------------------------------------------------------------------------- writing


def write_distill_report(
    frame: pd.DataFrame, folder: Path, teacher_stages: Sequence[str] | None = None
) -> list[tuple[str, Path, Path]]:
    """Every part whose columns the frame has, as ``<folder>/<file>.png`` and ``.csv``: the students' agreement,
    accuracy and KL heatmaps (``distill-agree``, ``distill-acc``, ``distill-kl``), the teachers' accuracy
    (``teachers``) and the baselines' (``baselines``). Returns ``[(title, png, csv), ...]`` in that order; [] for an
    empty frame."""
    from comprobust.report_figures import save

    if frame is None or frame.empty or "condition" not in frame.columns:
        return []
    folder = Path(folder)
    stages = list(teacher_stages) if teacher_stages is not None else identify_teacher_stages(frame)
    written: list[tuple[str, Path, Path]] = []

    def publish(title: str, file: str, fig: Figure, table: pd.DataFrame) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        png, csv = save(fig, folder / f"{file}.png"), folder / f"{file}.csv"
        atomic_write_text(csv, table.to_csv(index=False))
        written.append((title, png, csv))

    data = students(frame)
    for metric in METRICS:
        if data is not None and metric.column in data.rows.columns and data.rows[metric.column].notna().any():
            fig, table = distill_figure(frame, metric)
            publish(f"{metric.title} ({metric.unit})", metric.file, fig, table)
    if not teachers_table(frame, stages).empty:
        publish("Teachers' accuracy (%)", TEACHERS_FILE, *teachers_figure(frame, stages))
    if not baselines_table(frame, stages).empty:
        publish(_baselines_title(frame, stages), BASELINES_FILE, *baselines_figure(frame, stages))
    return written
