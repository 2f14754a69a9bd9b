"""The report of a cue-dataset experiment (distillation, teachers and from-scratch baselines): the per-condition
results of its runs (`RunStore.conditions()`) as the heatmaps and tables of `comprobust.report_distill`, a text
summary on stdout, and one self-contained HTML page."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError
from comprobust.html_parts import esc
from comprobust.report_html import CSS, data_uri
from comprobust.results.store import RunStore

HOW_TO_READ = (
    "Each training run scored itself on the test split under every condition (which cues the images carry: I the "
    "item, A the class box, B the digit half; a letter absent means that cue is removed). In the student "
    "heatmaps, rows are the teacher's training condition, columns the test condition; the first panel is KD "
    "(absolute), the others are Jacobian and Contrastive minus KD for the same teacher, seed and condition. "
    "Agreement is the share of test images on which student and teacher predict the same class; KL is "
    "KL(teacher || student) at temperature 1. Cells show the seed mean and, under it, the 95% t half-width."
)


def render_cue_report(
    store: RunStore,
    out_dir: Path,
    *,
    title: str,
    dataset: str,
    teacher_stages: Sequence[str] | None = None,
    hint: str = "",
) -> Path:
    """Write the cue-dataset report under `out_dir` (figures, CSVs, `index.html`); returns the page's path."""
    from comprobust.report_distill import write_distill_report

    frame = store.conditions()
    if frame.empty:
        raise UserError(
            f"no finished runs with a conditions table in {store.describe()}; {hint or 'nothing to report'}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frame_csv = out_dir / "conditions.csv"
    atomic_write_text(frame_csv, frame.to_csv(index=False))
    parts = write_distill_report(frame, out_dir, teacher_stages=teacher_stages)
    notes = list(dict.fromkeys(store.warnings))
    index = out_dir / "index.html"
    atomic_write_text(index, _html(title, dataset, store.describe(), frame, parts, notes))
    print(summary_text(frame, title))
    for note in notes:
        print(f"warning: {note}")
    print(f"report: {index}")
    return index


def summary_text(frame: pd.DataFrame, title: str) -> str:
    """Seed means per run variant and test condition: accuracy of every run, then the students' agreement."""
    lines = [f"Per-condition results: {title}"]
    accuracy = _pivot(frame, "accuracy")
    if accuracy is not None:
        lines += ["Accuracy (%), mean over seeds:", accuracy.to_string(float_format=lambda v: f"{v:.1f}")]
    students = frame[frame["method"] == "distill"]
    agreement = _pivot(students, "agreement") if "agreement" in students else None
    if agreement is not None:
        lines += [
            "Student-teacher agreement (%), mean over seeds:",
            agreement.to_string(float_format=lambda v: f"{v:.1f}"),
        ]
    return "\n".join(lines)


def _pivot(frame: pd.DataFrame, value: str) -> pd.DataFrame | None:
    if frame.empty or value not in frame:
        return None
    axes = [c for c in ("mechanisms", "teacher.mechanisms", "loss", "architecture") if c in frame]
    keyed = frame.assign(**{c: frame[c].fillna("").astype(str) for c in axes})
    conditions = list(dict.fromkeys(keyed["condition"]))
    table = keyed.pivot_table(
        index=["stage", *axes], columns="condition", values=value, aggfunc="mean", sort=False
    )
    return table.reindex(columns=conditions)


def _html(
    title: str,
    dataset: str,
    source: str,
    frame: pd.DataFrame,
    parts: Sequence[tuple[str, Path, Path]],
    notes: Sequence[str],
) -> str:
    seeds = ", ".join(str(s) for s in sorted(set(frame["seed"]), key=str))
    page = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>comprobust report: {esc(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>Cues and distillation: {esc(title)}</h1>",
        f'<p class="meta"><b>Dataset</b> {esc(dataset)} &middot; <b>Seeds</b> {esc(seeds)} &middot; '
        f"<b>Runs</b> {frame['run_id'].nunique()} &middot; <b>Source</b> {esc(source)} &middot; "
        f"<b>Generated</b> {esc(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}</p>",
        f"<p>{esc(HOW_TO_READ)}</p>",
    ]
    if notes:
        items = "".join(f"<li>{esc(n)}</li>" for n in notes)
        page.append(f'<div class="box notes"><b>Notes</b><ul>{items}</ul></div>')
    for heading, png, csv in parts:
        page.append(
            f'<h2>{esc(heading)}</h2><figure><img src="{data_uri(png)}" alt="{esc(heading)}">'
            f'<figcaption>Data: <a href="{esc(csv.name)}">{esc(csv.name)}</a></figcaption></figure>'
        )
    page.append('<p class="meta">Every row of every run: <a href="conditions.csv">conditions.csv</a></p>')
    page.append("</main></body></html>")
    return "\n".join(page)
