"""The report as one self-contained HTML page: figures embedded as base64 PNG data URIs, inline CSS, no
scripts and no external resources, so the file can be mailed or opened offline."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comprobust.html_parts import esc, html_table, num

HOW_TO_READ = {
    "boxplot": "Each box holds one point per composition (its accuracy averaged over seeds) for one method; "
    "x is the number of corruptions composed (1 = Identity and the six elementals). Higher and "
    "flatter is more robust. Dashed lines: chance (100 / number of classes) and the ceiling (the "
    "best clean accuracy of any method).",
    "heatmap": "Rows are compositions (abbreviated, in the paper's order: by length, then name, each "
    "followed by its permutations), columns are methods; each cell is the accuracy (%) averaged "
    "over seeds. Dark rows are compositions every method finds hard; a bright column is a robust "
    "method.",
    "elem-comp": "One point per composition of 2-6 corruptions and method: the invariance among the "
    "representations of its elementals (and Identity) against the invariance of the "
    "composition's representation to them. Lines are least-squares fits with 95% bands; r and p "
    "are Pearson's, per method and facet. With 6 corruptions every composition has the same "
    "elementals, so its elemental invariance is one value per method and r is n/a.",
    "elem-acc": "Elemental invariance against accuracy on the composition. The paper's claim is that this "
    "correlation is weak: invariance between in-distribution elemental representations does not "
    "predict robustness to their compositions.",
    "comp-acc": "Composition invariance against accuracy on the composition: does a representation that maps "
    "the composition close to its elementals' representations classify it better?",
}
TITLES = {
    "boxplot": "Accuracy by number of corruptions",
    "heatmap": "Accuracy per composition and method",
    "elem-comp": "Elemental vs composition invariance",
    "elem-acc": "Elemental invariance vs accuracy",
    "comp-acc": "Composition invariance vs accuracy",
}
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
background:#f6f7f9;color:#1d2330;line-height:1.45}
main{max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff;
box-shadow:0 0 12px rgba(0,0,0,.06)}
h1{font-size:1.7em;margin:.2em 0 .1em}h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #e3e6ea;
padding-bottom:.25em}
.meta{color:#4b5563;font-size:.95em}.meta b{color:#1d2330}
table{border-collapse:collapse;margin:.6em 0 1em;font-size:.9em}
th,td{border:1px solid #e3e6ea;padding:4px 9px;text-align:right;white-space:nowrap}
th{background:#f1f3f6;font-weight:600}td.l,th.l{text-align:left}
tbody tr:nth-child(even){background:#fafbfc}
figure{margin:1.2em 0 1.8em}figure img{max-width:100%;height:auto;border:1px solid #eceff3}
figcaption{font-size:.9em;color:#374151;margin-top:.4em}figcaption b{color:#111827}
.box{border-radius:6px;padding:8px 14px;margin:1em 0;font-size:.92em}
.problems{background:#fff4f2;border:1px solid #f3c2b8}.notes{background:#f4f7fb;border:1px solid #d5deea}
.box ul{margin:.3em 0;padding-left:1.2em}.scroll{overflow-x:auto}.na{color:#9aa3af}
details summary{cursor:pointer;color:#2563eb}
"""


def data_uri(path: Path) -> str:
    """A PNG file as a data URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def headline_html(headline: pd.DataFrame) -> str:
    columns = list(headline.columns)
    rows = [[esc(method)] + [num(row[c]) for c in columns] for method, row in headline.iterrows()]
    return html_table(["method"] + [esc(c) for c in columns], rows)


def summary_html(summary: pd.DataFrame, methods: list[str]) -> str:
    lengths = sorted(set(summary["length"]))
    cells = {(r.method, r.length): r for r in summary.itertuples()}
    rows = []
    for method in methods:
        row = [esc(method)]
        for length in lengths:
            r = cells.get((method, length))
            if r is None:
                row.append('<span class="na">n/a</span>')
            else:
                std = num(r.std) if r.seeds > 1 else '<span class="na">n/a</span>'
                row.append(f"{num(r.mean)} ± {std}")
        rows.append(row)
    seeds = int(summary["seeds"].max()) if len(summary) else 0
    return (
        html_table(["method"] + [f"{n} corr." for n in lengths], rows)
        + f"<p class=meta>Mean ± sample standard deviation over seeds (up to {seeds}) of each seed's mean "
        "accuracy (%) over the compositions of that length; the std needs two or more seeds.</p>"
    )


def correlations_html(correlations: pd.DataFrame, methods: list[str]) -> str:
    rows = []
    for (plot, length), part in correlations.groupby(["plot", "length"], sort=False):
        row = [esc(TITLES.get(plot, plot)), str(length)]
        for method in methods:
            match = part[part["method"] == method]
            if match.empty or int(match.iloc[0]["n"]) == 0:
                row.append('<span class="na">no data</span>')
                continue
            r = match.iloc[0]
            if not np.isfinite(r["r"]):
                row.append(f'<span class="na">n/a ({esc(r["note"])})</span>')
            else:
                row.append(f"r = {r['r']:.3f}, p = {r['p']:.3g} (n = {int(r['n'])})")
        rows.append(row)
    return html_table(["figure", "corruptions"] + [esc(m) for m in methods], rows, left=2)


def runs_html(runs: pd.DataFrame) -> str:
    if runs.empty:
        return "<p>No evaluation runs.</p>"
    columns = ["run_id", "method", "system", "seed", "shard", "shards", "state"]
    rows = [
        [esc("" if v is None or pd.isna(v) else v) for v in row]
        for row in runs.reindex(columns=columns).itertuples(index=False)
    ]
    return html_table(columns, rows, left=3)


def render_html(ctx: Any) -> str:
    """The whole page for a `comprobust.report.ReportContext`."""
    runs = ctx.runs
    states = runs["state"].value_counts().to_dict() if not runs.empty else {}
    state_text = ", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "none"
    chance = f"{ctx.chance:.2f}%" if ctx.chance is not None else "unknown"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>comprobust report: {esc(ctx.title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>Compositional robustness: {esc(ctx.title)}</h1>",
        (
            f'<p class="meta"><b>Dataset</b> {esc(ctx.dataset)} (chance {chance}) &middot; <b>Seeds</b> '
            f"{esc(', '.join(str(s) for s in ctx.seeds))} &middot; "
            f"<b>Methods</b> {esc(', '.join(ctx.methods))}"
            f"<br><b>Evaluation runs</b> {len(runs)} ({esc(state_text)}) &middot; "
            f"<b>Source</b> {esc(ctx.source)} &middot; <b>Generated</b> {esc(ctx.generated)}</p>"
        ),
    ]
    if ctx.problems:
        items = "".join(f"<li>{esc(p)}</li>" for p in ctx.problems)
        parts.append(
            f'<div class="box problems"><b>Failed or missing runs (not in this report)</b>'
            f"<ul>{items}</ul></div>"
        )
    if ctx.notes:
        items = "".join(f"<li>{esc(n)}</li>" for n in ctx.notes)
        parts.append(f'<div class="box notes"><b>Notes</b><ul>{items}</ul></div>')
    if ctx.claims is not None:
        from comprobust.report_statistics import claims_html

        parts.append(claims_html(ctx.claims))
    parts += [
        "<h2>Mean accuracy (%) by number of corruptions</h2>",
        headline_html(ctx.headline),
        (
            '<p class="meta">Mean over seeds of each seed\'s mean accuracy over the compositions of that '
            "length; <i>all</i> averages every composition.</p>"
        ),
    ]
    parts.append(_figure(ctx, "boxplot"))
    parts.append(_figure(ctx, "heatmap"))
    parts += ["<h2>Mean ± std over seeds</h2>", summary_html(ctx.summary, ctx.methods)]
    parts.append("<h2>Invariance and compositional robustness</h2>")
    for key in ("elem-comp", "elem-acc", "comp-acc"):
        parts.append(_figure(ctx, key, level=3))
    parts += [
        "<h3>Pearson correlations</h3>",
        correlations_html(ctx.correlations, ctx.methods),
        (
            '<p class="meta">Computed with scipy.stats.pearsonr on one point per composition (scores and '
            "accuracy averaged over seeds); n/a when a facet has fewer than 3 points or a constant "
            "variable.</p>"
        ),
    ]
    if ctx.statistics is not None:
        from comprobust.report_statistics import statistics_html

        parts.append(statistics_html(ctx.statistics))
    parts += [
        "<h2>Runs</h2>",
        f"<details><summary>{len(runs)} evaluation runs</summary>{runs_html(runs)}</details>",
        "</main></body></html>",
    ]
    return "\n".join(parts)


def _figure(ctx: Any, key: str, level: int = 2) -> str:
    path = ctx.figures[key]
    return (
        f'<h{level}>{esc(TITLES[key])}</h{level}><figure><img src="{data_uri(path)}" '
        f'alt="{esc(TITLES[key])}" data-file="{esc(Path(path).name)}">'
        f"<figcaption><b>How to read:</b> {esc(HOW_TO_READ[key])}</figcaption></figure>"
    )
