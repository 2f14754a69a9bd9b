"""The report's statistics (`comprobust.statistics.Statistics`) as text for the terminal and as HTML sections."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from comprobust.diagnostics import RESOLVED_SE
from comprobust.html_parts import esc, html_table, num
from comprobust.statistics import ALPHA, CONFIDENCE, ONE_SEED, Statistics, format_interval

NA = '<span class="na">n/a</span>'
PAIR_TITLES = {
    ("elemental_invariance", "composition_invariance"): "Elemental vs composition invariance",
    ("elemental_invariance", "accuracy"): "Elemental invariance vs accuracy",
    ("composition_invariance", "accuracy"): "Composition invariance vs accuracy",
}


def interval_table(lengths: pd.DataFrame) -> pd.DataFrame:
    """Methods x lengths of 'mean [low, high]' strings."""
    cells = lengths.assign(text=[format_interval(r.mean, r.ci_low, r.ci_high) for r in lengths.itertuples()])
    table = cells.pivot(index="method", columns="length", values="text")
    return table.reindex(list(dict.fromkeys(lengths["method"])))


def format_intervals(stats: Statistics) -> str:
    """The per-length intervals as plain text, for the terminal."""
    table = interval_table(stats.lengths)
    table.columns = [str(c) for c in table.columns]
    return (
        f"Mean accuracy (%) [{CONFIDENCE:.0%} t-interval over seeds] by number of corruptions:\n"
        + table.to_string(na_rep="n/a")
    )


def statistics_html(stats: Statistics) -> str:
    """The statistics section of the report page."""
    parts = [
        "<h2>Statistics over seeds and sets of corruptions</h2>",
        '<p class="meta">Every table here is also a CSV next to this page (statistics-*.csv). Intervals '
        f"are {CONFIDENCE:.0%} Student-t intervals over seeds; with one seed they read {esc(ONE_SEED)}.</p>",
        "<h3>Mean accuracy (%) with its interval</h3>",
        _interval_html(stats.lengths),
        "<h3>Seed-paired differences (pp)</h3>",
        _differences_html(stats.differences),
        "<h3>Sets of corruptions as units</h3>",
        _sets_html(stats.sets),
        "<h3>Invariance tests, sets as units</h3>",
        _invariance_html(stats.invariance),
        "<h3>Diagnostics</h3>",
        _training_html(stats.training),
        _commuting_html(stats.commuting),
    ]
    return "\n".join(parts)


def _interval_html(lengths: pd.DataFrame) -> str:
    if lengths.empty:
        return "<p>No results.</p>"
    table = interval_table(lengths)
    rows = [
        [esc(method)] + [esc(v) if isinstance(v, str) else NA for v in row]
        for method, row in table.iterrows()
    ]
    return html_table(["method"] + [f"{c} corr." for c in table.columns], rows)


def _pairs_table(frame: pd.DataFrame, column: str, cell) -> str:
    """Rows 'method − baseline', columns the values of `column`, cells `cell(row)`."""
    if frame.empty:
        return "<p>Only one method: nothing to compare.</p>"
    labels = list(dict.fromkeys(frame[column]))
    rows = []
    for (method, baseline), part in frame.groupby(["method", "baseline"], sort=False):
        by_label = {getattr(r, column): r for r in part.itertuples()}
        rows.append(
            [esc(f"{method} − {baseline}")]
            + [cell(by_label[label]) if label in by_label else NA for label in labels]
        )
    return html_table(["comparison"] + [esc(f"{label} corr.") for label in labels], rows)


def _differences_html(differences: pd.DataFrame) -> str:
    def cell(r) -> str:
        return esc(
            f"{format_interval(r.mean, r.ci_low, r.ci_high, signed=True)}; won {r.seeds_won}/{r.seeds}"
        )

    return (
        _pairs_table(differences, "length", cell)
        + '<p class="meta">Per seed, the method\'s mean accuracy over the compositions of that length minus the '
        "baseline's; the interval is over seeds, and <i>won</i> counts the seeds where the method is ahead.</p>"
    )


def _sets_html(sets: pd.DataFrame) -> str:
    def cell(r) -> str:
        p = f"p = {r.p:.3g}" if np.isfinite(r.p) else f"p n/a ({r.note})"
        return esc(f"{r.mean_diff:+.1f}; won {r.share_won:.0%} of {r.sets} sets; {p}")

    return (
        _pairs_table(sets, "lengths", cell)
        + '<p class="meta">Each unordered set of corruptions is one unit: its orderings and seeds are averaged. '
        "Mean difference (pp), share of sets on which the method beats the baseline, and the two-sided "
        "Wilcoxon signed-rank test over sets (scipy; zero differences dropped). 2-6 pools every set of two or "
        "more corruptions.</p>"
    )


def _invariance_html(tests: pd.DataFrame) -> str:
    methods = list(dict.fromkeys(tests["method"]))
    rows = []
    for (x, y, length), part in tests.groupby(["x", "y", "length"], sort=False):
        by_method = {r.method: r for r in part.itertuples()}
        rows.append(
            [esc(PAIR_TITLES.get((x, y), f"{x} vs {y}")), str(length)]
            + [_test_cell(by_method[m]) if m in by_method else NA for m in methods]
        )
    tested = int(tests["p"].notna().sum())
    significant = int((tests["significant"] == True).sum())  # noqa: E712  (NaN means untested)
    return (
        html_table(["test", "corruptions"] + [esc(m) for m in methods], rows, left=2)
        + f'<p class="meta">{tested} tests, {significant} significant at {ALPHA} after Holm\'s correction over '
        "all of them. One point per unordered set (elemental invariance depends only on the set), scores and "
        "accuracy averaged over orderings and seeds. r: Pearson; partial r: controlling for the mean accuracy "
        f"of the set's member elementals, with a bootstrap {CONFIDENCE:.0%} interval (sets resampled); "
        "p_Holm adjusts the partial r's p (t, n − 3 df). Lengths with fewer than 4 sets are n/a.</p>"
    )


def _test_cell(r) -> str:
    if not np.isfinite(r.partial_r):
        return f'<span class="na">n/a ({esc(r.note)})</span>'
    star = " *" if r.significant == True else ""  # noqa: E712
    return esc(
        f"r = {r.r:.2f}; partial {r.partial_r:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}], "
        f"p_Holm = {r.p_holm:.3g}{star} ({r.sets} sets)"
    )


def _training_html(training: pd.DataFrame) -> str:
    if training.empty:
        return "<p>No training runs found for these results (best epochs cannot be checked).</p>"
    stalled = training[training["converged"] == False]  # noqa: E712
    columns = [
        "run_id",
        "stage",
        "corruption",
        "seed",
        "best_epoch",
        "last_epoch",
        "converged",
        "level",
        "runner_up",
        "level_margin",
        "margin_se",
    ]
    rows = [
        [
            esc(r.run_id),
            esc(r.stage),
            esc(r.corruption or ""),
            esc(r.seed),
            num(r.best_epoch, 0),
            num(r.last_epoch, 0),
            "yes" if r.converged else ("not converged" if r.converged is False else NA),
            num(r.level, 0),
            num(r.runner_up, 0),
            num(r.level_margin),
            num(r.margin_se),
        ]
        for r in training.reindex(columns=columns).itertuples()
    ]
    return (
        f"<p><b>{len(stalled)} of {len(training)} training runs did not converge</b>: their best "
        "validation epoch is their last, so more epochs might still help.</p>"
        + _levels_html(training)
        + f"<details><summary>{len(training)} training runs</summary>{html_table(columns, rows, left=4)}</details>"
    )


def levels_table(training: pd.DataFrame) -> pd.DataFrame:
    """Corruptions x seeds (x architectures, when modules of several were trained) of 'level (margin ± SE)'
    strings for the module runs, '?' marking a margin within `RESOLVED_SE` standard errors of zero."""
    modules = training[training["level"].notna()]
    if modules.empty:
        return pd.DataFrame()

    def text(r) -> str:
        if not np.isfinite(r.level_margin):
            return f"{r.level:.0f}"
        unresolved = "?" if r.level_resolved is False else ""
        return (
            f"{r.level:.0f}{unresolved} (+{r.level_margin:.1f} ± {r.margin_se:.1f} over {r.runner_up:.0f})"
            if np.isfinite(r.margin_se)
            else f"{r.level:.0f} (+{r.level_margin:.1f})"
        )

    cells = modules.assign(text=[text(r) for r in modules.itertuples()])
    columns = ["seed", "architecture"] if cells["architecture"].nunique() > 1 else "seed"
    return cells.pivot_table(index="corruption", columns=columns, values="text", aggfunc="first")


def format_levels(training: pd.DataFrame) -> str:
    """The module levels found, as plain text for the terminal ('' without module runs)."""
    table = levels_table(training)
    if table.empty:
        return ""
    return (
        f"Module level per corruption and seed (search margin over the runner-up level ± its standard "
        f"error, pp; ? = within {RESOLVED_SE:.0f} SE):\n" + table.to_string(na_rep="n/a")
    )


def _seed_header(column: Any) -> str:
    """`seed 0`, or `seed 0, small` when the levels table has a column per (seed, architecture)."""
    return "seed " + ", ".join(esc(part) for part in (column if isinstance(column, tuple) else (column,)))


def _levels_html(training: pd.DataFrame) -> str:
    table = levels_table(training)
    if table.empty:
        return ""
    rows = [
        [esc(corruption)] + [esc(v) if isinstance(v, str) else NA for v in row]
        for corruption, row in table.iterrows()
    ]
    unresolved = int((training["level_resolved"] == False).sum())  # noqa: E712
    return (
        "<p>Module level chosen per corruption and seed, with its search margin over the runner-up level "
        "(validation accuracy, pp) ± the standard error of that paired difference over validation images; "
        f"<b>{unresolved}</b> level choices (marked ?) are within {RESOLVED_SE:.0f} standard errors, i.e. "
        "decided by noise as much as by the data.</p>"
        + html_table(["corruption"] + [_seed_header(column) for column in table.columns], rows)
    )


def _commuting_html(commuting: pd.DataFrame) -> str:
    if commuting.empty:
        return "<p>No exactly commuting pair was evaluated in both orders.</p>"
    summary = commuting.groupby(["method", "pair"], sort=False)["abs_diff"].agg(["mean", "max"]).reset_index()
    pairs = list(dict.fromkeys(summary["pair"]))
    rows = []
    for method, part in summary.groupby("method", sort=False):
        by_pair = {r.pair: r for r in part.itertuples()}
        rows.append(
            [esc(method)]
            + [f"{num(by_pair[p].mean)} (max {num(by_pair[p].max)})" if p in by_pair else NA for p in pairs]
        )
    return (
        html_table(["method"] + [esc(p) for p in pairs], rows)
        + '<p class="meta">|A(AB) − A(BA)| in pp, mean over seeds (max), on pairs whose two orders give identical '
        "images: a monolithic network scores them identically, so anything but 0 measures order sensitivity "
        "(e.g. modules applied in composition order).</p>"
    )


def claims_html(verdicts: list) -> str:
    """The "paper's claims" section: one verdict per claim (`comprobust.claims.Verdict`) with its numbers."""
    colours = {"supported": "#166534", "refuted": "#991b1b", "inconclusive": "#92400e"}
    items = "".join(
        f'<li><b>{esc(v.claim)} <span style="color:{colours.get(v.verdict, "#000")}">'
        f"{esc(v.verdict)}</span></b>: {esc(v.statement)}<ul>"
        + "".join(f"<li>{esc(line)}</li>" for line in v.evidence)
        + "</ul></li>"
        for v in verdicts
    )
    return (
        "<h2>The paper's claims</h2><p class=\"meta\">Criteria fixed in the experiment's <code>claims:</code> "
        "block before the run (see comprobust/claims.py); also in claims.csv.</p>"
        f"<ul>{items}</ul>"
    )
