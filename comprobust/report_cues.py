"""The report of a cue-dataset experiment (distillation, teachers and from-scratch baselines): the per-condition
results of its runs (`RunStore.conditions()`) as the tables of `comprobust.report_distill` and their heatmaps
(`comprobust.report_distill_figures`); when runs scored cue-conflict trials with the cues shape and texture
(texture-digits), the shape-bias part of `comprobust.report_shape_bias` (shape bias by architecture and training
regime with seed intervals and the 0.5 line, per shape class, the share of decisions for each cue, accuracy on
natural / shape / texture / conflict) from the runs' summaries (`shape_bias_frames`); a text summary on stdout, and
one self-contained HTML page."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError
from comprobust.html_parts import esc
from comprobust.report_html import CSS, data_uri
from comprobust.results.records import RunRecord, sort_time
from comprobust.results.store import RunStore

HOW_TO_READ = (
    "Each training run scored itself on the test split under every condition (which cues the images carry: I the "
    "item, A the class box, B the digit half; a letter absent means that cue is removed). In the student "
    "heatmaps, rows are the teacher's training condition, columns the test condition; the first panel is KD "
    "(absolute), the others are Jacobian and Contrastive minus KD for the same teacher, seed and condition. "
    "Agreement is the share of test images on which student and teacher predict the same class; KL is "
    "KL(teacher || student) at temperature 1. Cells show the seed mean and, under it, the 95% t half-width."
)
SHAPE_BIAS_HOW_TO_READ = (
    "Shape bias (Geirhos et al. 2019): on the cue-conflict test images (the digit's shape names one class, the "
    "texture another), the share of the decisions for either cue that went to the shape: shape / (shape + "
    "texture); 0.5 (dashed) is no preference, decisions for neither cue are left out of it and shown as 'other' in "
    "the shares. Series are the architecture and the training condition (natural: shape and texture both name the "
    "label; stylized: the texture is drawn at random, so only the shape does). Points are seed means with 95% "
    "t-intervals. Accuracy is on the test split, the label being the shape's class (so on conflict it is the share "
    "of shape decisions); chance is 10%."
)
SHAPE_BIAS_PARTS = (
    ("shape_bias", "Shape bias by architecture and training"),
    ("by_class", "Shape bias per shape class"),
    ("shares", "Which cue decided the conflict trials"),
    ("accuracy", "Accuracy on natural, shape, texture and conflict"),
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
    from comprobust.report_distill_figures import write_distill_report

    frame = store.conditions()
    shape_summary, shape_per_class = shape_bias_frames(store.records(), _labels(dataset))
    if frame.empty and shape_summary.empty:
        raise UserError(
            f"no finished runs with a conditions table in {store.describe()}; {hint or 'nothing to report'}"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    parts: list[tuple[str, Path, Path]] = []
    if not frame.empty:
        frame_csv = out_dir / "conditions.csv"
        atomic_write_text(frame_csv, frame.to_csv(index=False))
        parts.extend(write_distill_report(frame, out_dir, teacher_stages=teacher_stages))
    shape_parts: list[tuple[str, Path, Path]] = []
    if not shape_summary.empty:
        from comprobust.report_shape_bias import write_shape_bias_report

        written = write_shape_bias_report(shape_summary, shape_per_class, out_dir, chance=_chance(dataset))
        shape_parts = [
            (heading, written[f"{part}_png"], written[f"{part}_csv"])
            for part, heading in SHAPE_BIAS_PARTS
            if f"{part}_png" in written
        ]
    notes = list(dict.fromkeys(store.warnings))
    index = out_dir / "index.html"
    atomic_write_text(
        index, _html(title, dataset, store.describe(), frame, parts, notes, shape_summary, shape_parts)
    )
    if not frame.empty:
        print(summary_text(frame, title))
    if not shape_summary.empty:
        print(shape_bias_text(shape_summary))
    for note in notes:
        print(f"warning: {note}")
    print(f"report: {index}")
    return index


def _labels(dataset: str) -> Mapping[str, str]:
    from comprobust.data.cue_datasets import CUE_DATASETS

    return CUE_DATASETS[dataset].labels if dataset in CUE_DATASETS else {}


def _chance(dataset: str) -> float | None:
    from comprobust.data.registry import get_dataset_spec

    try:
        return 100.0 / get_dataset_spec(dataset).num_classes
    except UserError:
        return None


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def shape_bias_frames(
    records: Iterable[RunRecord], labels: Mapping[str, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The `summary` and `per_class` frames of `comprobust.report_shape_bias` from the finished training runs whose
    summary holds a cue-conflict result on the cues shape and texture (`bias/shape`, `frac/texture`): one row per
    run (architecture from its `architecture` axis or config, regime from its `mechanisms` named by `labels`, e.g.
    ST -> natural, its seed; the stage joins the regime when several stages scored), accuracy keys `acc/<name>`
    by the same names; per-class rows from `bias/shape/class<k>`. The latest run wins when a stage, seed,
    architecture and regime repeat."""
    labels = dict(labels or {})
    rows: dict[tuple[Any, ...], tuple[float, dict[str, Any], list[dict[str, Any]]]] = {}
    for record in records:
        summary, config = record.summary, record.config
        if record.state != "finished" or record.is_evaluation or "bias/shape" not in summary:
            continue
        if "frac/texture" not in summary:
            continue
        axes = dict(config.get("axes") or {})
        params = dict(config.get("params") or {})
        architecture = str(axes.get("architecture") or config.get("architecture") or "")
        mechanisms = axes.get("mechanisms", params.get("mechanisms", summary.get("mechanisms", "")))
        regime = labels.get(str(mechanisms), str(mechanisms))
        seed = config.get("seed")
        stage = str(config.get("stage", ""))
        row: dict[str, Any] = {
            "architecture": architecture,
            "regime": regime,
            "seed": seed,
            "stage": stage,
            "shape_bias": _number(summary["bias/shape"]),
            "trials": _number(summary.get("cue_conflict/trials")),
        }
        for share in ("shape", "texture", "other"):
            row[f"frac/{share}"] = _number(summary.get(f"frac/{share}"))
        for key, value in summary.items():
            if key.startswith("acc/") and key != "acc/mean":
                name = key[len("acc/") :]
                row[f"acc/{labels.get(name, name)}"] = _number(value)
        per_class = []
        for key, value in summary.items():
            if key.startswith("bias/shape/class"):
                klass = int(key[len("bias/shape/class") :])
                per_class.append(
                    {
                        "architecture": architecture,
                        "regime": regime,
                        "seed": seed,
                        "stage": stage,
                        "class": klass,
                        "shape_bias": _number(value),
                    }
                )
        identity = (stage, seed, architecture, regime)
        created = sort_time(record.created)
        if identity not in rows or rows[identity][0] <= created:
            rows[identity] = (created, row, sorted(per_class, key=lambda r: r["class"]))
    summary_rows = [row for _, row, _ in rows.values()]
    class_rows = [r for _, _, part in rows.values() for r in part]
    summary_frame, class_frame = pd.DataFrame(summary_rows), pd.DataFrame(class_rows)
    if len({r["stage"] for r in summary_rows}) > 1:
        for table in (summary_frame, class_frame):
            if not table.empty:
                table["regime"] = table["regime"] + " (" + table["stage"] + ")"
    return summary_frame, class_frame


def shape_bias_text(summary: pd.DataFrame) -> str:
    """Seed means per architecture and regime: shape bias, the shares of decisions and the accuracies."""
    columns = [
        c
        for c in (
            "shape_bias",
            "frac/shape",
            "frac/texture",
            "frac/other",
            "acc/natural",
            "acc/shape",
            "acc/texture",
            "acc/stylized",
            "acc/conflict",
        )
        if c in summary
    ]
    table = summary.groupby(["architecture", "regime"], sort=False)[columns].mean()
    seeds = summary.groupby(["architecture", "regime"], sort=False)["seed"].nunique().rename("seeds")
    table = pd.concat([table, seeds], axis=1)
    return "\n".join(
        [
            "Shape bias on cue-conflict trials (mean over seeds; shares of decisions; accuracy in %):",
            table.to_string(float_format=lambda v: f"{v:.3f}" if abs(v) <= 1 else f"{v:.1f}"),
        ]
    )


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
    shape_summary: pd.DataFrame | None = None,
    shape_parts: Sequence[tuple[str, Path, Path]] = (),
) -> str:
    shape_summary = shape_summary if shape_summary is not None else pd.DataFrame()
    seed_values = set(frame["seed"]) if not frame.empty else set()
    run_ids = set(frame["run_id"]) if not frame.empty else set()
    if not shape_summary.empty:
        seed_values |= set(shape_summary["seed"])
    seeds = ", ".join(str(s) for s in sorted(seed_values, key=str))
    runs = len(run_ids) if run_ids else len(shape_summary)
    page = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>comprobust report: {esc(title)}</title><style>{CSS}</style></head><body><main>",
        f"<h1>Cue datasets: {esc(title)}</h1>",
        f'<p class="meta"><b>Dataset</b> {esc(dataset)} &middot; <b>Seeds</b> {esc(seeds)} &middot; '
        f"<b>Runs</b> {runs} &middot; <b>Source</b> {esc(source)} &middot; "
        f"<b>Generated</b> {esc(time.strftime('%Y-%m-%d %H:%M:%S %Z'))}</p>",
    ]
    if parts:
        page.append(f"<p>{esc(HOW_TO_READ)}</p>")
    if notes:
        items = "".join(f"<li>{esc(n)}</li>" for n in notes)
        page.append(f'<div class="box notes"><b>Notes</b><ul>{items}</ul></div>')
    for heading, png, csv in parts:
        page.append(
            f'<h2>{esc(heading)}</h2><figure><img src="{data_uri(png)}" alt="{esc(heading)}">'
            f'<figcaption>Data: <a href="{esc(csv.name)}">{esc(csv.name)}</a></figcaption></figure>'
        )
    if shape_parts:
        page.append(f"<h2>Shape bias</h2><p>{esc(SHAPE_BIAS_HOW_TO_READ)}</p>")
        for heading, png, csv in shape_parts:
            page.append(
                f'<h3>{esc(heading)}</h3><figure><img src="{data_uri(png)}" alt="{esc(heading)}">'
                f'<figcaption>Data: <a href="{esc(csv.name)}">{esc(csv.name)}</a></figcaption></figure>'
            )
    if not frame.empty:
        page.append('<p class="meta">Every row of every run: <a href="conditions.csv">conditions.csv</a></p>')
    page.append("</main></body></html>")
    return "\n".join(page)
