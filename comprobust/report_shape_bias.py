"""The shape-bias report (issue 17): Geirhos's shape bias by architecture and training regime, per class, the share of
decisions for each cue, and accuracy on the cue conditions; tables as pandas frames, figures as matplotlib figures
(object API, no pyplot state), each drawn from its table so that what is plotted is what is tabulated.

Inputs, one row per evaluated network (``summary``) and one per network and shape class (``per_class``)::

    summary:   architecture, regime, seed, shape_bias, [frac/shape, frac/texture, frac/other],
               [acc/natural, acc/shape, acc/texture, acc/conflict]      (accuracy in percent, as comprobust logs it)
    per_class: architecture, regime, seed, class, shape_bias

``cue_conflict_rows`` builds both from a ``shape_bias.CueConflict`` (``bias/shape`` is accepted for ``shape_bias``).
Across seeds every value is a mean with its two-sided 95% Student-t interval (``statistics.t_interval``); one seed
gives the mean and "n/a (1 seed)" instead of an interval, and NaN values (an empty denominator) are left out and
counted in ``nan_seeds``.

Files (``write_shape_bias_report``): shape-bias.png / .csv, shape-bias-by-class.png / .csv, cue-accuracy.png / .csv,
cue-shares.png / .csv.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from comprobust.atomic import atomic_write_text
from comprobust.report_figures import reference_line
from comprobust.shape_bias import CueConflict
from comprobust.statistics import ONE_SEED, format_interval, t_interval

ARCH, REGIME, SEED, CLASS = "architecture", "regime", "seed", "class"
BIAS = "shape_bias"
CONDITIONS: tuple[str, ...] = ("natural", "shape", "texture", "conflict")
SHARES: tuple[str, ...] = ("shape", "texture", "other")
NO_PREFERENCE = 0.5
ALIASES = {"bias/shape": BIAS, "arch": ARCH}
INTERVAL_COLUMNS = ("seeds", "nan_seeds", "mean", "ci_low", "ci_high", "interval")
FILES = {
    "shape_bias": "shape-bias",
    "by_class": "shape-bias-by-class",
    "accuracy": "cue-accuracy",
    "shares": "cue-shares",
}


# ------------------------------------------------------------------------------------------------------ input


def cue_conflict_rows(
    architecture: str,
    regime: str,
    seed: int,
    result: CueConflict,
    accuracy: Mapping[str, float] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One evaluated network's ``summary`` row and ``per_class`` rows, from its ``cue_conflict`` result on the
    cues shape and texture and its accuracy (percent) on each condition (``{"natural": 97.0, ...}``)."""
    if tuple(result.cues[:2]) != ("shape", "texture"):
        raise ValueError(
            f"a shape-bias report needs the cues shape and texture first, got {list(result.cues)}"
        )
    key = {ARCH: architecture, REGIME: regime, SEED: seed}
    summary = {**key, BIAS: result.bias("shape"), "trials": result.trials}
    summary.update({f"frac/{share}": result.fraction(share) for share in SHARES})
    summary.update({f"acc/{condition}": value for condition, value in (accuracy or {}).items()})
    per_class = [
        {**key, CLASS: int(row["class"]), BIAS: row["bias/shape"], "trials": int(row["trials"])}
        for row in result.per_class
    ]
    return summary, per_class


def _normalised(frame: pd.DataFrame, needed: Sequence[str], what: str) -> pd.DataFrame:
    frame = frame.rename(columns={k: v for k, v in ALIASES.items() if v not in frame.columns})
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"{what} lacks the columns {missing} (it has {list(frame.columns)})")
    return frame


def _order(values: Iterable[Any]) -> list[Any]:
    """Distinct values in order of first appearance (the experiment's order, not the alphabet's)."""
    return list(dict.fromkeys(values))


# ----------------------------------------------------------------------------------------------------- tables


def interval_table(frame: pd.DataFrame, value: str, by: Sequence[str]) -> pd.DataFrame:
    """Per group of ``by`` (in order of appearance): seeds with a finite ``value``, seeds with NaN, the mean and its
    95% t-interval over seeds (NaN bounds and "n/a (1 seed)" with one seed; "n/a" with none)."""
    rows = []
    keys = frame[list(by)].drop_duplicates()
    for key in keys.itertuples(index=False, name=None):
        part = frame[np.logical_and.reduce([frame[c] == k for c, k in zip(by, key)])]
        values = part[value].astype(float).to_numpy()
        interval = t_interval(values)
        rows.append(
            {
                **dict(zip(by, key)),
                "seeds": interval.n,
                "nan_seeds": int(np.isnan(values).sum()),
                "mean": interval.mean,
                "ci_low": interval.low,
                "ci_high": interval.high,
                "interval": _interval_text(interval.mean, interval.low, interval.high, value),
            }
        )
    return pd.DataFrame(rows, columns=[*by, *INTERVAL_COLUMNS])


def _interval_text(mean: float, low: float, high: float, value: str) -> str:
    digits = 1 if value.startswith("acc/") else 3
    return format_interval(mean, low, high, digits=digits)


def shape_bias_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Shape bias per architecture and training regime: seeds, mean, 95% t-interval."""
    summary = _normalised(summary, (ARCH, REGIME, SEED, BIAS), "the shape-bias summary")
    return interval_table(summary, BIAS, (ARCH, REGIME))


def per_class_table(per_class: pd.DataFrame) -> pd.DataFrame:
    """Shape bias per architecture, regime and shape class: seeds, mean, 95% t-interval."""
    per_class = _normalised(per_class, (ARCH, REGIME, SEED, CLASS, BIAS), "the per-class shape bias")
    return interval_table(per_class.sort_values(CLASS, kind="stable"), BIAS, (ARCH, REGIME, CLASS))


def _long_table(summary: pd.DataFrame, prefix: str, names: Sequence[str], column: str) -> pd.DataFrame:
    summary = _normalised(summary, (ARCH, REGIME, SEED), "the shape-bias summary")
    present = [name for name in names if f"{prefix}/{name}" in summary.columns]
    if not present:
        raise ValueError(f"the shape-bias summary has no {prefix}/<{'|'.join(names)}> column")
    parts = [
        interval_table(summary, f"{prefix}/{name}", (ARCH, REGIME)).assign(**{column: name})
        for name in present
    ]
    table = pd.concat(parts, ignore_index=True)
    groups = _order(zip(summary[ARCH], summary[REGIME]))
    table["_group"] = [groups.index(key) for key in zip(table[ARCH], table[REGIME])]
    table["_name"] = [present.index(name) for name in table[column]]
    table = table.sort_values(["_group", "_name"], kind="stable")
    return table[[ARCH, REGIME, column, *INTERVAL_COLUMNS]].reset_index(drop=True)


def cue_accuracy_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Accuracy (percent) on each cue condition present (natural, shape, texture, conflict), per architecture and
    regime: seeds, mean, 95% t-interval; long, one row per condition."""
    return _long_table(summary, "acc", CONDITIONS, "condition")


def cue_accuracy_wide(table: pd.DataFrame) -> pd.DataFrame:
    """``cue_accuracy_table`` as one row per architecture and regime: per condition, the mean and its interval."""
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for row in table.itertuples(index=False):
        out = rows.setdefault((row.architecture, row.regime), {ARCH: row.architecture, REGIME: row.regime})
        out["seeds"] = max(out.get("seeds", 0), row.seeds)
        out[row.condition] = row.mean
        out[f"{row.condition} (95% CI)"] = row.interval
    return pd.DataFrame(list(rows.values()))


def cue_shares_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The share of conflict decisions for the shape, for the texture and for neither, per architecture and regime:
    seeds, mean, 95% t-interval; long, one row per share."""
    return _long_table(summary, "frac", SHARES, "decision")


# ---------------------------------------------------------------------------------------------------- figures


def _colours(count: int) -> list[tuple[float, float, float]]:
    import seaborn as sns

    return list(sns.color_palette("colorblind", max(count, 1)))


def _offsets(count: int, width: float = 0.6) -> np.ndarray:
    """x offsets of `count` series dodged within one category."""
    if count == 1:
        return np.zeros(1)
    return np.linspace(-width / 2, width / 2, count)


def _errorbar(ax: Axes, x: np.ndarray, part: pd.DataFrame, colour: Any, label: str, **style: Any) -> None:
    """Means with 95% t-interval bars (none where the bounds are NaN: one seed), labelled for the legend."""
    mean = part["mean"].to_numpy(float)
    below = mean - part["ci_low"].to_numpy(float)
    above = part["ci_high"].to_numpy(float) - mean
    ax.errorbar(
        x, mean, yerr=np.vstack([below, above]), fmt="o", color=colour, capsize=4, label=label, **style
    )


def _annotate_missing(ax: Axes, x: np.ndarray, part: pd.DataFrame, y_missing: float) -> None:
    """ "n/a (1 seed)" next to a mean without an interval, "n/a" where no seed gave a value (the shape-bias figure;
    the figures with many series say it in the legend instead)."""
    for position, row in zip(x, part.itertuples(index=False)):
        if row.seeds == 1:
            ax.annotate(
                ONE_SEED,
                xy=(position, row.mean),
                xytext=(6, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
                color="0.3",
            )
        elif row.seeds == 0:
            ax.annotate("n/a", xy=(position, y_missing), ha="center", fontsize=8, color="0.3")


def _no_preference_line(ax: Axes) -> None:
    reference_line(
        ax, NO_PREFERENCE, "no preference (0.5)", "0.35", linewidth=1.1, fontsize=8, gid="no-preference"
    )


def _unit_ylim(ax: Axes, table: pd.DataFrame) -> None:
    """0..1 (a bias's range), widened to show a t-interval that reaches past it (few seeds, wide spread)."""
    low = np.nanmin([0.0, *table["ci_low"].to_numpy(float)])
    high = np.nanmax([1.0, *table["ci_high"].to_numpy(float)])
    ax.set_ylim(low - 0.02, high + 0.02)


def _seeds_note(table: pd.DataFrame) -> str:
    seeds = sorted(set(table["seeds"]))
    counted = (
        f"{seeds[0]} seed{'s' if seeds[0] != 1 else ''}"
        if len(seeds) == 1
        else f"{seeds[0]}-{seeds[-1]} seeds"
    )
    return f"mean and 95% t-interval over seeds ({counted})"


def shape_bias_figure(summary: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """Shape bias by architecture (x) and training regime (colour), means with 95% t-intervals over seeds and the
    0.5 line; with the table it draws (``shape_bias_table``). Series are labelled by regime, in table order."""
    table = shape_bias_table(summary)
    architectures, regimes = _order(table[ARCH]), _order(table[REGIME])
    fig = Figure(figsize=(max(5.0, 1.6 * len(architectures) + 2.5), 4.4))
    ax = fig.subplots()
    for offset, colour, regime in zip(_offsets(len(regimes)), _colours(len(regimes)), regimes):
        part = table[table[REGIME] == regime]
        x = np.array([architectures.index(a) for a in part[ARCH]]) + offset
        _errorbar(ax, x, part, colour, str(regime), markersize=7)
        _annotate_missing(ax, x, part, 0.03)
    _no_preference_line(ax)
    ax.set_xticks(range(len(architectures)), [str(a) for a in architectures])
    ax.set_xlim(-0.7, len(architectures) - 0.3)
    _unit_ylim(ax, table)
    ax.set_xlabel("Architecture")
    ax.set_ylabel("Shape bias: shape / (shape + texture) decisions")
    ax.set_title(f"Shape bias on cue-conflict trials ({_seeds_note(table)})", fontsize=10)
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    ax.legend(title="Training", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 0.9))
    return fig, table


def _series_label(architecture: Any, regime: Any, part: pd.DataFrame) -> str:
    """`architecture / regime`, plus "n/a (1 seed)" when no value of the series has an interval (one seed)."""
    one_seed = bool(len(part)) and bool((part["seeds"] <= 1).all())
    return f"{architecture} / {regime}" + (f": {ONE_SEED}" if one_seed else "")


def per_class_figure(per_class: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """Shape bias per shape class (x), one series per architecture and regime, with 95% t-intervals over seeds and
    the 0.5 line; with the table it draws (``per_class_table``)."""
    table = per_class_table(per_class)
    classes = sorted(set(table[CLASS]))
    series = _order(zip(table[ARCH], table[REGIME]))
    fig = Figure(figsize=(max(6.0, 0.7 * len(classes) + 3.0), 4.4))
    ax = fig.subplots()
    for offset, colour, (architecture, regime) in zip(
        _offsets(len(series), 0.5), _colours(len(series)), series
    ):
        part = table[(table[ARCH] == architecture) & (table[REGIME] == regime)]
        x = np.array([classes.index(c) for c in part[CLASS]]) + offset
        _errorbar(ax, x, part, colour, _series_label(architecture, regime, part), markersize=5)
    _no_preference_line(ax)
    ax.set_xticks(range(len(classes)), [str(c) for c in classes])
    _unit_ylim(ax, table)
    ax.set_xlabel("Shape class")
    ax.set_ylabel("Shape bias")
    ax.set_title(f"Shape bias per shape class ({_seeds_note(table)})", fontsize=10)
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    ax.legend(title="Architecture / training", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 0.9))
    return fig, table


def cue_accuracy_figure(summary: pd.DataFrame, chance: float | None = None) -> tuple[Figure, pd.DataFrame]:
    """Accuracy (percent) on the natural, shape, texture and conflict conditions (x), one series per architecture
    and regime, with 95% t-intervals over seeds (and a chance line when given); with ``cue_accuracy_table``.

    On ``conflict`` the label is the shape's class, so its accuracy is the share of shape decisions."""
    table = cue_accuracy_table(summary)
    return _category_figure(table, "condition", "Accuracy (%)", "Accuracy by cue condition", chance), table


def cue_shares_figure(summary: pd.DataFrame) -> tuple[Figure, pd.DataFrame]:
    """The share of cue-conflict decisions for the shape, for the texture and for neither cue (x), one series per
    architecture and regime, with 95% t-intervals over seeds; with ``cue_shares_table``."""
    table = cue_shares_table(summary)
    fig = _category_figure(table, "decision", "Share of conflict decisions", "Which cue decided", None)
    _unit_ylim(fig.axes[0], table)
    return fig, table


def _category_figure(
    table: pd.DataFrame, column: str, ylabel: str, title: str, chance: float | None
) -> Figure:
    categories = _order(table[column])
    series = _order(zip(table[ARCH], table[REGIME]))
    fig = Figure(figsize=(max(6.0, 1.5 * len(categories) + 3.0), 4.4))
    ax = fig.subplots()
    for offset, colour, (architecture, regime) in zip(_offsets(len(series)), _colours(len(series)), series):
        part = table[(table[ARCH] == architecture) & (table[REGIME] == regime)]
        x = np.array([categories.index(c) for c in part[column]]) + offset
        _errorbar(ax, x, part, colour, _series_label(architecture, regime, part), markersize=6)
    if chance is not None:
        ax.axhline(chance, color="0.5", linestyle=":", linewidth=1.0, zorder=0, gid="chance")
    ax.set_xticks(range(len(categories)), [str(c) for c in categories])
    ax.set_xlim(-0.7, len(categories) - 0.3)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title} ({_seeds_note(table)})", fontsize=10)
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    ax.legend(title="Architecture / training", frameon=False, loc="upper left", bbox_to_anchor=(1.0, 0.9))
    return fig


def drawn_intervals(ax: Axes) -> dict[str, pd.DataFrame]:
    """What the error-bar series of ``ax`` show, per legend label: x, mean, low and high (NaN without a bar).
    For tests and for checking a figure against its table; reads the artists, not pixels."""
    from matplotlib.container import ErrorbarContainer

    out = {}
    for container in ax.containers:
        if not isinstance(container, ErrorbarContainer):
            continue
        line, _caps, bars = container.lines
        x, y = (np.asarray(v, float) for v in line.get_data())
        low = np.full(len(x), np.nan)
        high = np.full(len(x), np.nan)
        for segment in bars[0].get_segments() if bars else []:
            if len(segment) != 2:  # a NaN bar (one seed) is an empty segment
                continue
            (sx, y0), (_, y1) = segment
            hits = np.flatnonzero(np.isclose(x, sx))
            if len(hits):
                low[hits[0]], high[hits[0]] = min(y0, y1), max(y0, y1)
        out[str(container.get_label())] = pd.DataFrame({"x": x, "mean": y, "ci_low": low, "ci_high": high})
    return out


# --------------------------------------------------------------------------------------------------- writing


def write_shape_bias_report(
    summary: pd.DataFrame,
    per_class: pd.DataFrame | None,
    folder: Path,
    chance: float | None = None,
) -> dict[str, Path]:
    """Every shape-bias figure (PNG) and table (CSV) under ``folder``; the parts whose columns are absent (no
    per-class rows, no accuracy, no shares) are skipped. Returns {part: path} for what was written."""
    from comprobust.report_figures import save

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def publish(part: str, fig: Figure, table: pd.DataFrame) -> None:
        written[f"{part}_png"] = save(fig, folder / f"{FILES[part]}.png")
        written[f"{part}_csv"] = folder / f"{FILES[part]}.csv"
        atomic_write_text(written[f"{part}_csv"], table.to_csv(index=False))

    publish("shape_bias", *shape_bias_figure(summary))
    if per_class is not None and len(per_class):
        publish("by_class", *per_class_figure(per_class))
    if any(f"acc/{c}" in summary.columns for c in CONDITIONS):
        fig, table = cue_accuracy_figure(summary, chance)
        publish("accuracy", fig, cue_accuracy_wide(table))
    if any(f"frac/{s}" in summary.columns for s in SHARES):
        publish("shares", *cue_shares_figure(summary))
    return written


def system_label(label: str, architecture: str, several: bool) -> str:
    """A system's name in corruption figures: ``ERM[arch=vit-cpu]`` when several architectures are compared."""
    return f"{label}[arch={architecture}]" if several else label
