"""The distillation demo end to end, offline, through the real stages, W&B logs and report: at the smoke budget
(every run finishes, every student reads exactly its teacher, the report draws the heatmaps), and the science the
design promises of its teachers at the full budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from comprobust.planning import resolve
from comprobust.runs import TrainRun

pytestmark = pytest.mark.slow
DEMO = Path(__file__).resolve().parents[1] / "experiments" / "distill-demo.yaml"


def demo_in(folder: Path, **changes: object) -> Path:
    body = yaml.safe_load(DEMO.read_text())
    body.update(output_root=str(folder / "outputs"), wandb={"project": "t", "mode": "offline"}, **changes)
    body["dataset"]["root"] = str(folder / "data")
    path = folder / "distill-demo.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def run_all(path: Path, smoke: bool, stages: list[str] | None = None):
    from comprobust.pipeline import launch

    experiment, runs = resolve(path, smoke=smoke, stages=stages)
    launch(experiment, runs, experiment.cluster.with_executor("inline"))
    return experiment, runs


def test_the_demo_at_the_smoke_budget_finishes_every_run_and_reports(tmp_path: Path) -> None:
    from comprobust.report import build_report
    from comprobust.results import open_store
    from comprobust.wandb_offline import find_runs, read_run

    experiment, runs = run_all(demo_in(tmp_path), smoke=True)
    assert len(runs) == 9
    store = open_store(experiment, source="offline")
    frame = store.conditions()
    assert len(frame) == 9 * 7 and len(frame[frame["method"] == "distill"]) == 6 * 7
    students = [r for r in runs if isinstance(r, TrainRun) and r.stage == "student"]
    logs = {f.name.split("-", 2)[-1]: f for f in find_runs(experiment.output_dir / "wandb")}
    for student in students:
        [teacher] = student.inputs["teacher"]
        logged = read_run(next(f for name, f in logs.items() if name.endswith(student.run_id)))
        assert logged.config["inputs"] == [f"model-{teacher}:best"]
        assert f"teacher.mechanisms={student.axes['teacher.mechanisms']}" in logged.tags
    index = build_report(experiment, store, log_to_wandb=False)
    names = {p.name for p in index.parent.iterdir()}
    assert {"distill-agree.png", "distill-acc.png", "distill-kl.png", "conditions.csv", "index.html"} <= names
    assert "Jacobian" in index.read_text() or "jacobian" in index.read_text()


def test_teachers_learn_the_cues_they_see_and_not_the_ones_they_do_not(tmp_path: Path) -> None:
    """Teacher I never sees the box or the digit: at chance-ish without the image; teacher IA reads the box."""
    experiment, _ = run_all(demo_in(tmp_path), smoke=False, stages=["teacher"])
    from comprobust.results import open_store

    frame = open_store(experiment, source="offline").conditions()
    acc = frame.set_index(["mechanisms", "condition"])["accuracy"]
    assert acc[("I", "I")] >= 60
    assert max(acc[("I", "A")], acc[("I", "B")], acc[("I", "AB")]) <= 25
    assert acc[("IA", "A")] >= 80


def test_a_student_distilled_on_clean_images_is_scored_on_the_compositions(tmp_path: Path) -> None:
    """The EMNIST setting (experiments/distill-emnist.yaml) on mnist5k at the smoke budget: an ERM teacher, students
    of each loss on Identity images, each evaluated as a classifier on the compositions."""
    from comprobust.results import open_store

    body = yaml.safe_load((DEMO.parent / "distill-emnist.yaml").read_text())
    body.update(
        output_root=str(tmp_path / "outputs"),
        wandb={"project": "t", "mode": "offline"},
        dataset={"name": "mnist5k", "root": str(tmp_path / "data")},
        architecture="small",
        seeds=[0],
        cluster={"executor": "inline"},
    )
    body["evaluation"]["shards"] = 1
    path = tmp_path / "distill-emnist.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    experiment, runs = run_all(path, smoke=True)
    students = [r for r in runs if isinstance(r, TrainRun) and r.stage == "student"]
    assert sorted(r.axes["loss"] for r in students) == ["contrastive", "jacobian", "kd"]
    assert all("mechanisms" not in r.config["params"] for r in students)
    results = open_store(experiment, source="offline").results()
    assert set(results["method"]) == {
        "Teacher",
        "Scratch",
        "Student[loss=kd]",
        "Student[loss=jacobian]",
        "Student[loss=contrastive]",
    }
    assert results.groupby("method")["composition"].nunique().eq(len(experiment.compositions)).all()
