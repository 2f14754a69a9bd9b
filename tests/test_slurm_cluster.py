"""comprobust.cluster against a real Slurm (run by `make test-slurm` after `bash scripts/local_slurm.sh start`):
arrays, afterok dependencies, failures, resource validation, and preemption/time limits with requeue and resume."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from toy_jobs import Epochs, explode, read_state, stamp

from comprobust.cluster import ClusterConfig, validate_resources
from comprobust.cluster.submit import make_executor, submit_array
from comprobust.cluster.wait import JobFailed, job_states, wait_for_jobs
from comprobust.errors import UserError

pytestmark = pytest.mark.slurm
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def _live_slurm(live_slurm):
    """Every test here needs the cluster (see conftest.live_slurm)."""


@pytest.fixture(autouse=True)
def _importable(importable_repo):
    """Job processes import comprobust from this checkout (see conftest.importable_repo)."""


def slurm_config(**overrides) -> ClusterConfig:
    block = {"executor": "slurm", "mem_gb": 1, "timeout_min": 5, "signal_delay_s": 30, **overrides}
    return ClusterConfig.from_dict(block, source="test.yaml")


def wait(jobs, **kwargs):
    return wait_for_jobs(jobs, poll_s=0.5, sacct_every_s=2, timeout_s=240, progress=None, **kwargs)


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def jobs_submitted() -> int:
    """The controller's count of jobs submitted since its statistics were last reset (`sdiag`; `sbatch
    --test-only` does not count). Unlike `sacct`, which hears of a job from slurmdbd a moment later, it never
    lags behind a submission, so a job the previous test submitted cannot appear to come from this one."""
    match = re.search(r"^\s*Jobs submitted:\s*(\d+)", sh("sdiag"), re.MULTILINE)
    assert match, "sdiag printed no 'Jobs submitted' line"
    return int(match.group(1))


# ----------------------------------------------------------------------------------------------- job bodies


def whoami(x: int) -> tuple[int, str, str]:
    return x, os.environ["SLURM_ARRAY_JOB_ID"], os.environ["SLURM_ARRAY_TASK_ID"]


def epochs_done(path: Path) -> int:
    return len(read_state(path)["done"])


def wait_for_epochs(path: Path, n: int, job) -> None:
    deadline = time.time() + 120
    while epochs_done(path) < n:
        assert time.time() < deadline and not job.done(), f"training did not progress: {job.stderr()}"
        time.sleep(0.1)


# ---------------------------------------------------------------------------------------------------- tests


def test_auto_picks_slurm(tmp_path):
    assert isinstance(make_executor(ClusterConfig(), tmp_path), submitit.SlurmExecutor)


def test_one_array_for_a_stage(tmp_path):
    executor = make_executor(slurm_config(array_parallelism=2), tmp_path / "logs")
    jobs = submit_array(executor, whoami, [(i,) for i in range(5)], name="whoami")
    results = wait(jobs)
    array_id = jobs[0].job_id.split("_")[0]
    assert [r[0] for r in results] == list(range(5))
    assert {r[1] for r in results} == {array_id}, "the tasks were not one Slurm array"
    assert [r[2] for r in results] == [str(i) for i in range(5)]
    script = (tmp_path / "logs" / f"{array_id}_submission.sh").read_text()
    assert "#SBATCH --array=0-4%2" in script and "#SBATCH --job-name=whoami" in script
    assert job_states(jobs) == {"pending": 0, "running": 0, "done": 5, "failed": 0}


def test_afterok_dependency_orders_stages(tmp_path):
    executor = make_executor(slurm_config(), tmp_path / "logs")
    first = submit_array(executor, stamp, [(str(tmp_path), f"a{i}", 3.0) for i in range(2)], name="first")
    second = submit_array(executor, stamp, [(str(tmp_path), "b0", 0.0)], depends_on=first, name="second")
    submitted_at = time.time()
    assert sh("squeue", "-h", "-j", second[0].job_id, "-o", "%r") == "Dependency"
    assert "dependency" not in executor.parameters, "the dependency leaked into later submissions"
    first_results = wait(first)
    [b] = wait(second)
    a_end = max(r["end"] for r in first_results)
    assert submitted_at < a_end, "submit_array blocked instead of leaving the ordering to Slurm"
    assert b["start"] >= a_end, "the dependent stage started before the first one ended"


def test_failing_job_gives_a_clear_error_and_cancels_dependents(tmp_path):
    executor = make_executor(slurm_config(), tmp_path / "logs")
    bad = submit_array(executor, explode, [(7,)], name="bad")
    dependent = submit_array(executor, stamp, [(str(tmp_path), "never", 0.0)], depends_on=bad)
    with pytest.raises(JobFailed) as error:
        wait(bad, label="stage erm")
    message = str(error.value)
    assert message.startswith(
        f"stage erm: job {bad[0].job_id} failed (Slurm state FAILED): ValueError: boom 7"
    )
    assert f"last lines of {bad[0].paths.stderr}" in message
    assert "toy_jobs.py" in message and 'raise ValueError(f"boom {x}")' in message, (
        "the traceback lost its source"
    )
    with pytest.raises(JobFailed, match=r"Slurm state CANCELLED.*ended without a result"):
        wait(dependent, label="stage modules")
    assert not (tmp_path / "never.json").exists()


def test_validate_resources_refuses_before_submitting(tmp_path):
    submitted_before = jobs_submitted()
    validate_resources(slurm_config(cpus_per_task=2, timeout_min=60), n_tasks=1000)
    cases = [
        (
            {"cpus_per_task": 64},
            "test.yaml: cluster.cpus_per_task=64 exceeds the 8 CPUs of the largest node of partition debug",
        ),
        (
            {"partition": "gpu"},
            "test.yaml: cluster.partition='gpu' is not a partition of this cluster (available: debug)",
        ),
        (
            {"timeout_min": 2000},
            "test.yaml: cluster.timeout_min=2000 exceeds the MaxTime 1-00:00:00 (1440 min)",
        ),
        ({"mem_gb": 100000}, "test.yaml: cluster.mem_gb=100000 exceeds the"),
        ({"gpus_per_task": 1}, "test.yaml: cluster.gpus_per_task=1 exceeds the 0 GPUs"),
        (
            {"sbatch_options": {"constraint": "a100"}},
            "test.yaml: the Slurm cluster refuses these cluster settings",
        ),
    ]
    cases.append(
        ({}, "test.yaml: a stage of 5000 tasks does not fit in one array on this cluster (MaxArraySize=1001)")
    )
    for overrides, expected in cases:
        with pytest.raises(UserError) as error:
            validate_resources(slurm_config(**overrides), n_tasks=5000 if not overrides else 1)
        assert str(error.value).startswith(expected), str(error.value)
        assert "\n" not in str(error.value)
    # 0: sdiag's statistics were reset (at midnight UTC) in between and nothing was submitted since
    assert jobs_submitted() in (submitted_before, 0), "validation submitted a job"


def test_preemption_signal_requeues_and_resumes_without_losing_an_epoch(tmp_path):
    """USR2 to the job's step (what Slurm sends on preemption with --signal) makes submitit call checkpoint() and
    `scontrol requeue` the task; the requeued task resumes from its state file."""
    files = [tmp_path / f"train{i}.json" for i in range(2)]
    executor = make_executor(slurm_config(), tmp_path / "logs")
    jobs = submit_array(executor, Epochs(str(files[0]), 12, 0.5), [()], name="train")
    jobs += submit_array(executor, Epochs(str(files[1]), 4, 0.5), [()], name="train")
    wait_for_epochs(files[0], 3, jobs[0])
    sh(
        "scancel", "--signal=USR2", jobs[0].job_id
    )  # not --batch: that would signal the shell and kill the job
    states = wait(jobs)
    assert states[0]["done"] == list(range(12)), "an epoch was lost or repeated"
    assert states[0]["starts"] == 2 and states[1]["starts"] == 1
    assert "Restarts=1" in sh("scontrol", "show", "job", jobs[0].job_id)
    log = jobs[0].stderr()
    assert "Caught signal SIGUSR2" in log and "Epochs signalled; requeueing" in log, log


def test_external_requeue_resumes_from_the_checkpoint(tmp_path):
    """`scontrol requeue` (an admin, or preemption in REQUEUE mode) kills the job without submitit's checkpoint
    call; the job resumes from the last epoch its state file recorded."""
    state_file = tmp_path / "train.json"
    [job] = submit_array(
        make_executor(slurm_config(), tmp_path / "logs"), Epochs(str(state_file), 20, 0.5), [()]
    )
    wait_for_epochs(state_file, 3, job)
    sh("scontrol", "requeue", job.job_id)  # SIGTERM (ignored by submitit), SIGKILL after KillWait (5 s)
    [state] = wait([job])
    assert state["done"] == list(range(20)) and state["starts"] == 2
    assert "DUE TO JOB REQUEUE" in job.stderr()


@pytest.mark.slow
def test_time_limit_requeues_and_finishes(tmp_path):
    """A 40-epoch run in 1-minute jobs: Slurm signals 45 s before the limit (on its 30-s tick, so 0-30 s into each
    run), submitit checkpoints and requeues, and the run resumes until it is complete."""
    state_file = tmp_path / "train.json"
    config = slurm_config(timeout_min=1, signal_delay_s=45, max_requeues=10)
    [job] = submit_array(make_executor(config, tmp_path / "logs"), Epochs(str(state_file), 40, 1.0), [()])
    [state] = wait([job])
    assert state["done"] == list(range(40)) and state["starts"] >= 2
    assert "this job is timed-out" in job.stderr()
