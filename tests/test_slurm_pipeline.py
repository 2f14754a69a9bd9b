"""A small experiment submitted through submitit to the real local Slurm (`make test-slurm`): job arrays with
afterok dependencies, the runs' W&B records, status, and a training stage preempted (USR2) mid-training that
requeues, resumes from its checkpoint and finishes with every epoch done exactly once."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from comprobust.cluster.wait import wait_for_jobs
from comprobust.config import load_experiment
from comprobust.pipeline import launch
from comprobust.planning import plan
from comprobust.run_state import status_table
from comprobust.runs import RunPaths
from comprobust.wandb_offline import find_runs, read_run

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def _live_slurm(live_slurm):
    """Every test here needs the cluster (see conftest.live_slurm)."""


def experiment_file(folder: Path, stages: dict, evaluation: dict | None = None) -> Path:
    body = {
        "name": "slurmtiny",
        "dataset": {
            "name": "mnist5k",
            "root": str(folder / "data"),
            "split_sizes": {"train": 16, "valid": 4, "test": 3},
        },
        "architecture": "small",
        "seeds": [1],
        "output_root": str(folder / "outputs"),
        "compositions": ["Identity", "Contrast", "Invert", "Contrast-Invert"],
        "wandb": {"mode": "offline"},
        "cluster": {
            "executor": "slurm",
            "mem_gb": 2,
            "timeout_min": 10,
            "signal_delay_s": 30,
            "cpus_per_task": 1,
        },
        "training": {"max_epochs": 2, "batch_size": 32},
        "stages": stages,
        "evaluation": evaluation or {},
    }
    path = folder / "slurmtiny.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def slurm_times(job) -> tuple[str, str]:
    """(Start, End) of a finished Slurm job, ISO timestamps (sortable)."""
    out = (
        subprocess.run(
            ["sacct", "-n", "-X", "-P", "-j", str(job.job_id), "-o", "Start,End"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()
    )
    start, end = out[0].split("|")
    return start, end


def test_experiment_runs_as_dependent_job_arrays(tmp_path: Path, capsys) -> None:
    path = experiment_file(
        tmp_path,
        {
            "backbone": {"method": "backbone", "lr": 0.05},
            "modules": {
                "method": "modules",
                "backbone": "backbone",
                "lr": 0.05,
                "max_epochs": 1,
                "search_epochs": 1,
                "corruptions": ["Contrast", "Invert"],
                "levels": [1],
            },
        },
        {"shards": 2, "systems": {"Backbone": {"classifier": "backbone"}}},
    )
    experiment = load_experiment(path)
    runs = plan(experiment)
    jobs = launch(experiment, runs, experiment.cluster, detach=True)
    wait_for_jobs(jobs, poll_s=0.5, sacct_every_s=2, timeout_s=400, progress=None)
    out = capsys.readouterr().out
    assert "submitted backbone: 1 task(s)" in out and "submitted modules: 2 task(s)" in out
    # afterok: the modules' tasks started only once the backbone's job had ended.
    by_run = dict(zip([r.run_id for r in runs], jobs))
    backbone_end = slurm_times(by_run[next(r.run_id for r in runs if r.group == "backbone")])[1]
    for run in (r for r in runs if r.group == "modules"):
        assert slurm_times(by_run[run.run_id])[0] >= backbone_end
    assert all(row["state"] == "done" for row in status_table(experiment, runs))
    logged = {read_run(folder).id: read_run(folder) for folder in find_runs(experiment.output_dir / "wandb")}
    assert {r.run_id for r in runs} <= set(logged)
    backbone = next(r for r in runs if r.group == "backbone")
    for run in (r for r in runs if r.group == "modules"):
        assert logged[run.run_id].config["inputs"] == [f"model-{backbone.run_id}:best"]
    # Relaunching submits nothing: every run is done.
    launch(experiment, runs, experiment.cluster)
    assert "0 to run" in capsys.readouterr().out


def test_training_stage_preempted_mid_run_resumes_and_loses_nothing(tmp_path: Path) -> None:
    path = experiment_file(tmp_path, {"contrastive": {"method": "contrastive", "lr": 0.05, "max_epochs": 6}})
    experiment = load_experiment(path)
    [run] = plan(experiment, stages=["contrastive"])
    [job] = launch(experiment, [run], experiment.cluster, detach=True)
    last = RunPaths.of(experiment.output_dir, run).folder / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if last.exists() and torch.load(last, weights_only=True)["epoch"] >= 1:
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"no epoch-1 checkpoint within 180 s: {job.stderr()}")
    subprocess.run(["scancel", "--signal=USR2", str(job.job_id)], check=True)
    job.result()  # waits through the requeue; raises if the job failed
    state = torch.load(last, weights_only=True)
    assert [record["epoch"] for record in state["history"]] == list(range(6))
    log = job.stderr() or ""
    assert "requeueing" in log and "resuming at epoch" in log, log[-3000:]
    assert status_table(experiment, [run])[0]["state"] == "done"
