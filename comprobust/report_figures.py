"""The report's figures (paper section 7) as PNG files, drawn with matplotlib's object API (no global pyplot
state, no display needed) and seaborn.

* `boxplot`: accuracy by number of corruptions in the composition (1..6), one box per method, dashed chance
  and ceiling lines.
* `heatmap`: compositions x methods, compositions in the paper's order (by length, then name, each followed by
  its permutations), split into side-by-side panels so that 167 rows stay readable.
* `invariance_plot`: one facet per composition length 2..6, a scatter and least-squares line (with its 95%
  confidence band) per method, and Pearson r and p per method and facet; the sixth panel holds the legend.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from comprobust.atomic import atomic_write
from comprobust.results import METHOD_ORDER

DPI = 110
LENGTHS = (1, 2, 3, 4, 5, 6)
INVARIANCE_LENGTHS = (2, 3, 4, 5, 6)
AXIS_LABELS = {
    "elemental_invariance": "Elemental invariance (median over units)",
    "composition_invariance": "Composition invariance (median over units)",
    "accuracy": "Accuracy on the composition (%)",
}


def palette(methods: Sequence[str]) -> dict[str, tuple]:
    """One colour per method, stable across reports (the paper's methods keep their colours)."""
    import seaborn as sns

    colours = sns.color_palette("colorblind", len(METHOD_ORDER) + len(methods))
    out, extra = {}, len(METHOD_ORDER)
    for method in methods:
        if method in METHOD_ORDER:
            out[method] = colours[METHOD_ORDER.index(method)]
        else:
            out[method] = colours[extra]
            extra += 1
    return out


def save(fig: Figure, path: Path) -> Path:
    """Write the figure as PNG atomically."""
    atomic_write(
        path,
        lambda handle: fig.savefig(handle, format="png", dpi=DPI, bbox_inches="tight", facecolor="white"),
    )
    return path


# -------------------------------------------------------------------------------------------------- box plot


def reference_line(
    ax: Axes,
    y: float,
    text: str,
    color: str,
    *,
    text_color: str | None = None,
    linewidth: float = 1.2,
    fontsize: float = 9,
    gid: str | None = None,
) -> None:
    """A dashed horizontal line at `y` behind the data, labelled with `text` just right of the axes."""
    ax.axhline(y, color=color, linestyle="--", linewidth=linewidth, zorder=0, gid=gid)
    ax.annotate(
        text,
        xy=(1.0, y),
        xycoords=("axes fraction", "data"),
        xytext=(4, 0),
        textcoords="offset points",
        va="center",
        fontsize=fontsize,
        color=text_color or color,
    )


def boxplot(
    means: pd.DataFrame, methods: Sequence[str], chance: float | None, ceiling: float | None, path: Path
) -> Path:
    """Accuracy (%) by number of corruptions, hue = method. `means`: one row per (method, composition)."""
    import seaborn as sns

    colours = palette(methods)
    fig = Figure(figsize=(11, 5.6))
    ax = fig.subplots()
    lengths = [n for n in LENGTHS if n in set(means["length"])]
    sns.boxplot(
        data=means,
        x="length",
        y="accuracy",
        hue="method",
        order=lengths,
        hue_order=list(methods),
        palette=colours,
        ax=ax,
        fliersize=3,
        linewidth=1.0,
        saturation=1.0,
    )
    if chance is not None:
        reference_line(ax, chance, f"chance {chance:.1f}%", "0.35", text_color="0.25")
    if ceiling is not None:
        reference_line(ax, ceiling, f"ceiling {ceiling:.1f}%\n(best Identity)", "firebrick")
    ax.set_ylim(0, 100)
    ax.set_xlabel("Corruptions in composition", fontsize=11)
    ax.set_ylabel("Accuracy (%)", fontsize=11)
    counts = means.drop_duplicates(["length", "composition"]).groupby("length").size()
    ax.set_xticks(range(len(lengths)), [f"{n}\n({counts.get(n, 0)} seq.)" for n in lengths])
    ax.grid(axis="y", color="0.9")
    ax.set_axisbelow(True)
    ax.legend(
        title="Method",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.16),
        ncol=min(len(methods), 5),
        frameon=False,
    )
    return save(fig, path)


# --------------------------------------------------------------------------------------------------- heatmap


def paper_order(names: Sequence[str]) -> list[str]:
    """The paper's composition order: sorted by (number of corruptions, lower-case name), each followed by
    its permutations (the compositions of the same corruptions, in that order)."""
    ordered = sorted(dict.fromkeys(names), key=lambda n: (n.count("-"), n.lower()))
    placed: list[str] = []
    seen: set[str] = set()
    for name in ordered:
        if name in seen:
            continue
        members = frozenset(name.split("-"))
        for other in ordered:
            if other not in seen and frozenset(other.split("-")) == members:
                placed.append(other)
                seen.add(other)
    return placed


def heatmap(means: pd.DataFrame, methods: Sequence[str], path: Path, max_rows: int = 60) -> Path:
    """Accuracy per composition (rows, abbreviated) and method (columns), annotated, in panels."""
    import seaborn as sns

    label = means["abbreviation"].where(
        means["abbreviation"].notna() & (means["abbreviation"] != ""), means["composition"]
    )
    grid = means.assign(label=label).pivot_table(index="label", columns="method", values="accuracy")
    columns = [m for m in methods if m in grid.columns]
    grid = grid.reindex(index=paper_order(list(grid.index)), columns=columns)
    panels = max(1, math.ceil(len(grid) / max_rows))
    rows = math.ceil(len(grid) / panels)
    width = panels * (1.6 + 0.62 * grid.shape[1]) + 1.2
    fig = Figure(figsize=(width, 0.19 * rows + 1.8))
    axes = np.atleast_1d(fig.subplots(1, panels, gridspec_kw={"wspace": 0.55}))
    cbar_ax = fig.add_axes((0.92 if panels > 1 else 0.95, 0.3, 0.012 if panels > 1 else 0.03, 0.4))
    for index, ax in enumerate(axes):
        part = grid.iloc[index * rows : (index + 1) * rows]
        sns.heatmap(
            part,
            ax=ax,
            vmin=0,
            vmax=100,
            cmap="viridis",
            annot=True,
            fmt=".0f",
            annot_kws={"fontsize": 6.5},
            cbar=index == 0,
            cbar_ax=cbar_ax if index == 0 else None,
            cbar_kws={"label": "Accuracy (%)"},
            yticklabels=True,
            linewidths=0.3,
            linecolor="white",
        )
        ax.set_xlabel("")
        ax.set_ylabel("Composition" if index == 0 else "")
        ax.tick_params(axis="y", labelsize=6.5, length=0)
        ax.tick_params(axis="x", labelsize=8.5, labelrotation=35, length=0)
        ax.xaxis.tick_top()
        for text in ax.get_xticklabels():
            text.set_horizontalalignment("left")
    fig.subplots_adjust(left=0.08, right=0.9, top=1 - 0.9 / (0.19 * rows + 1.8), bottom=0.02)
    return save(fig, path)


# ------------------------------------------------------------------------------------------------ invariance


def invariance_plot(
    data: pd.DataFrame, x: str, y: str, methods: Sequence[str], correlations: pd.DataFrame, path: Path
) -> Path:
    """Scatter + linear fit of `y` against `x` per method, one facet per length 2..6, with Pearson r, p.

    `data`: one row per (method, composition) with columns method, length, x and y; `correlations`: rows of
    `comprobust.report.correlation_table` for this pair (method, length, n, r, p, note).
    """
    colours = palette(methods)
    fig = Figure(figsize=(14, 9.6))
    axes = fig.subplots(2, 3).ravel()
    lines_per_block = len(methods)
    for ax, length in zip(axes, INVARIANCE_LENGTHS):
        facet = data[data["length"] == length]
        notes = []
        for method in methods:
            points = facet[facet["method"] == method]
            colour = colours[method]
            if not points.empty:
                ax.scatter(
                    points[x],
                    points[y],
                    s=20,
                    color=colour,
                    alpha=0.75,
                    edgecolor="white",
                    linewidth=0.4,
                    zorder=3,
                )
                _fit_line(ax, points[x].to_numpy(float), points[y].to_numpy(float), colour)
            row = correlations[(correlations["method"] == method) & (correlations["length"] == length)]
            notes.append((method, _format_r(row.iloc[0] if len(row) else None), colour))
        _limits(ax, data, x, "x")
        _limits(ax, data, y, "y")
        ax.grid(color="0.92")
        ax.set_axisbelow(True)
        ax.set_xlabel(AXIS_LABELS.get(x, x), fontsize=9)
        ax.set_ylabel(AXIS_LABELS.get(y, y), fontsize=9)
        ax.tick_params(labelsize=8)
        if facet.empty:
            ax.text(
                0.5,
                0.5,
                "no invariance scores for this length",
                transform=ax.transAxes,
                ha="center",
                va="center",
                color="0.4",
            )
        for line, (method, text, colour) in enumerate(reversed(notes)):
            ax.annotate(
                f"{method}: {text}",
                xy=(0, 1),
                xycoords="axes fraction",
                xytext=(2, 4 + 11 * line),
                textcoords="offset points",
                fontsize=7.8,
                color=colour,
                fontweight="bold",
            )
        ax.set_title(f"{length} corruptions", fontsize=11, pad=8 + 11 * lines_per_block)
    legend_ax = axes[-1]
    legend_ax.axis("off")
    handles: list[Artist] = [Patch(color=colours[m], label=m) for m in methods]
    handles += [
        Line2D([], [], color="0.3", label="least-squares fit"),
        Patch(color="0.3", alpha=0.2, label="95% confidence band of the fit"),
    ]
    legend_ax.legend(handles=handles, loc="center", frameon=False, title="Method", fontsize=10)
    legend_ax.text(
        0.5,
        0.02,
        "One point per composition (mean over seeds).\nPearson r and two-sided p per "
        "method and facet;\nn/a: fewer than 3 points or a constant variable.",
        transform=legend_ax.transAxes,
        ha="center",
        va="bottom",
        fontsize=8.5,
        color="0.3",
    )
    fig.subplots_adjust(hspace=0.3 + 0.065 * len(methods), wspace=0.28)  # room for the r, p lines
    return save(fig, path)


def _fit_line(ax, x: np.ndarray, y: np.ndarray, colour) -> None:
    """Least-squares line with a 95% confidence band of the mean (as seaborn's regplot draws it, but
    analytic instead of bootstrapped); drawn only when the fit is defined (3+ points, x not constant)."""
    from scipy import stats

    if len(x) < 3 or np.ptp(x) == 0:
        return
    slope, intercept = np.polyfit(x, y, 1)
    grid = np.linspace(x.min(), x.max(), 50)
    fit = intercept + slope * grid
    residual = y - (intercept + slope * x)
    dof = len(x) - 2
    if dof > 0:
        s = math.sqrt(float(residual @ residual) / dof)
        half = (
            stats.t.ppf(0.975, dof)
            * s
            * np.sqrt(1 / len(x) + (grid - x.mean()) ** 2 / float(((x - x.mean()) ** 2).sum()))
        )
        ax.fill_between(grid, fit - half, fit + half, color=colour, alpha=0.15, linewidth=0, zorder=1)
    ax.plot(grid, fit, color=colour, linewidth=1.6, zorder=2)


def _limits(ax, data: pd.DataFrame, column: str, axis: str) -> None:
    """Accuracy 0-100; invariance from 0 or 0.5 (whichever keeps every point) to 1, as the paper does."""
    if column == "accuracy":
        low, high = 0.0, 100.0
    else:
        values = data[column].dropna()
        low = 0.5 if len(values) and values.min() >= 0.5 else 0.0
        high = 1.0
    pad = (high - low) * 0.03
    (ax.set_xlim if axis == "x" else ax.set_ylim)(low - pad, high + pad)


def _format_r(row: Mapping | None) -> str:
    if row is None or int(row["n"]) == 0:
        return "no data"
    if not np.isfinite(row["r"]):
        return f"n/a ({row['note']})"
    return f"r = {row['r']:.2f}, p = {row['p']:.2g} (n = {int(row['n'])})"
