"""The distillation report's figures (issue 16), each drawn from its table (``comprobust.report_distill``) so that
what is drawn is what is written; matplotlib figures (object API, no pyplot state).

**The student heatmaps** (``distill-agree``, ``distill-acc``, ``distill-kl``; one figure per metric). A grid of panels:
one panel row per student group (``report_distill.students``: the transfer set, with the student's other axes), one
panel column per loss: KD absolute first, then Jacobian - KD and Contrastive - KD (seed-paired, ``distill_table``).
Inside a panel, rows are the teacher's mechanisms and columns the test conditions. This is the layout of Robust
Socratic's ``grid_*`` figures, chosen because the question is read along a panel row: "a student of teacher I, tested
on A (no image), does it follow its teacher (who is at chance there) or the box it saw in its transfer set?"; teacher
x condition keeps each teacher's profile over the conditions on one line, and the panels of one row put KD and the
two differences for the same cells side by side, at the same positions, so a cell is compared across losses by
looking straight across. Test conditions and teacher mechanisms are ordered as the experiment's condition list
orders them (falling back to the order of appearance).

**Cells** show the seed mean; a second, smaller line gives the half-width of the 95% Student-t interval over seeds
(``statistics.t_interval``), absent with one seed. A combination that was not run is blank (NaN, no text), never 0.
**Teachers** (``teachers``) and **baselines** (``baselines``) are drawn the same way, rows = teacher mechanisms, resp.
stage and mechanisms (``teachers_table``, ``baselines_table``). ``drawn_cells`` and ``panel`` read a drawn figure back.

``write_distill_report(frame, folder)`` writes each part as PNG + CSV (its table) and returns
``[(title, png, csv), ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from comprobust.atomic import atomic_write_text
from comprobust.report_distill import (
    ABSOLUTE,
    BLANK,
    INTERVAL_COLUMNS,
    KD,
    METRICS,
    TEACHER_PREFIX,
    Metric,
    as_metric,
    baselines_table,
    distill_table,
    first_seen,
    identify_teacher_stages,
    students,
    teachers_table,
)
from comprobust.statistics import ONE_SEED

LOSS_NAMES = {"kd": "KD", "jacobian": "Jacobian", "contrastive": "Contrastive"}
TEACHERS_FILE, BASELINES_FILE = "teachers", "baselines"


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
    metric = as_metric(metric)
    table = distill_table(frame, metric)
    data = students(frame)
    if data is None or table.empty:
        raise ValueError(f"the frame has no students with a {metric.column!r} value")
    group_cols = ["transfer" if c == "mechanisms" else c for c in data.group]
    compared = {loss: first_seen(table.loc[table["loss"] == loss, "compared"])[0] for loss in data.losses}
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
    rows = first_seen(zip(*(table[c] for c in key)))
    conditions = first_seen(table["condition"])
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
    source = first_seen(table["source"])[0]
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
