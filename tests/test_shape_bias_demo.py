"""The shape-bias demo end to end, offline, through the real stage, W&B logs and report: at the smoke budget (every
run scores its cue-conflict trials, the report draws the shape-bias part), and the science the design promises at
the demo's budget (stylized training drives both networks' shape bias to at least 0.85)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from comprobust.data import texture_digits as td
from comprobust.planning import resolve

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[1] / "experiments" / "shape-bias-demo.yaml"


def demo_in(folder: Path, **changes: object) -> Path:
    body = yaml.safe_load(DEMO.read_text())
    body.update(output_root=str(folder / "outputs"), wandb={"project": "t", "mode": "offline"}, **changes)
    path = folder / "shape-bias-demo.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def run_all(path: Path, smoke: bool):
    from comprobust.pipeline import launch

    experiment, runs = resolve(path, smoke=smoke)
    launch(experiment, runs, experiment.cluster.with_executor("inline"))
    return experiment, runs


def test_the_demo_at_the_smoke_budget_scores_shape_bias_and_reports(tmp_path: Path) -> None:
    from comprobust.report import build_report
    from comprobust.report_cues import shape_bias_frames
    from comprobust.results import open_store

    experiment, runs = run_all(demo_in(tmp_path), smoke=True)
    assert len(runs) == 4 and {(r.axes["mechanisms"], r.architecture) for r in runs} == {
        ("ST", "small"),
        ("ST", "vit-cpu"),
        ("100 R", "small"),
        ("100 R", "vit-cpu"),
    }
    store = open_store(experiment, source="offline")
    summary, per_class = shape_bias_frames(store.records(), td.LABELS)
    assert sorted(zip(summary["architecture"], summary["regime"])) == [
        ("small", "natural"),
        ("small", "stylized"),
        ("vit-cpu", "natural"),
        ("vit-cpu", "stylized"),
    ]
    assert (summary["trials"] == 10).all()  # the smoke test split: 1 conflict image per class
    shares = summary[["frac/shape", "frac/texture", "frac/other"]].sum(axis=1)
    assert ((shares - 1).abs() < 1e-9).all()
    assert {"acc/natural", "acc/shape", "acc/texture", "acc/conflict"} <= set(summary.columns)
    index = build_report(experiment, store, log_to_wandb=False)
    names = {p.name for p in index.parent.iterdir()}
    assert {
        "shape-bias.png",
        "shape-bias.csv",
        "shape-bias-by-class.png",
        "cue-accuracy.csv",
        "index.html",
    } <= names
    assert "Shape bias" in index.read_text()


def test_stylized_training_drives_both_networks_shape_bias_to_at_least_085(tmp_path: Path) -> None:
    """The design's 'by design' result (the texture carries no label under stylized training), at the demo's own
    budget; natural training is reported, not asserted (the README states what it gave)."""
    from comprobust.report_cues import shape_bias_frames
    from comprobust.results import open_store

    experiment, _ = run_all(demo_in(tmp_path), smoke=False)
    summary, _ = shape_bias_frames(open_store(experiment, source="offline").records(), td.LABELS)
    bias = summary.set_index(["architecture", "regime"])["shape_bias"]
    print(summary.to_string())
    assert bias[("small", "stylized")] >= 0.85
    assert bias[("vit-cpu", "stylized")] >= 0.85
