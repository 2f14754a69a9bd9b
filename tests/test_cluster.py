"""comprobust.cluster without Slurm: config validation, sbatch parameters, executor choice, and the real
submitit.LocalExecutor (arrays, dependency waiting, failures, preemption and requeue)."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from toy_jobs import Epochs, explode, read_state, stamp

from comprobust import cluster
from comprobust.cluster import ClusterConfig, sbatch_parameters, slurm_is_up
from comprobust.cluster.submit import RequeueableCall, make_executor, submit_array
from comprobust.cluster.wait import JobFailed, job_states, wait_for_jobs
from comprobust.errors import UserError

# the job processes cannot import this test module: ship its functions by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(autouse=True)
def _importable(importable_repo):
    """Job processes import comprobust from this checkout (see conftest.importable_repo)."""


# ------------------------------------------------------------------------------------------------ validation


def test_defaults_and_valid_block():
    config = ClusterConfig.from_dict(
        {
            "executor": "local",
            "cpus_per_task": 2,
            "mem_gb": 1.5,
            "timeout_min": 30,
            "sbatch_options": {"account": "lab", "qos": "high"},
        },
        source="exp.yaml",
    )
    assert (config.executor, config.cpus_per_task, config.mem_gb, config.timeout_min) == ("local", 2, 1.5, 30)
    assert ClusterConfig.from_dict(None) == ClusterConfig()
    assert ClusterConfig.from_dict({}).executor == "auto"


@pytest.mark.parametrize(
    "data, expected",
    [
        (
            {"cpu_per_task": 4},
            "exp.yaml: unknown key cluster.cpu_per_task; did you mean cluster.cpus_per_task?",
        ),
        ({"partiton": "gpu"}, "did you mean cluster.partition?"),
        ({"zzz": 1}, "unknown key cluster.zzz; valid keys: executor, partition"),
        ({"cpus_per_task": "4"}, "exp.yaml: cluster.cpus_per_task must be an integer, got '4' (str)"),
        ({"gpus_per_task": True}, "cluster.gpus_per_task must be an integer, got True (bool)"),
        ({"mem_gb": "4G"}, "cluster.mem_gb must be an integer or a number"),
        ({"partition": 3}, "cluster.partition must be a string or null"),
        ({"sbatch_options": ["qos=high"]}, "cluster.sbatch_options must be a mapping"),
        ({"executor": "slrum"}, "cluster.executor='slrum' is not one of auto, local, slurm"),
        ({"cpus_per_task": 0}, "cluster.cpus_per_task=0 must be at least 1"),
        ({"mem_gb": 0}, "cluster.mem_gb=0 must be a positive number of GB"),
        (
            {"timeout_min": 1, "signal_delay_s": 90},
            "cluster.signal_delay_s=90 must be shorter than timeout_min",
        ),
        (
            {"sbatch_options": {"cpus-per-task": 4}},
            "option 'cpus-per-task' cannot be set here; use cluster.cpus_per_task",
        ),
        ({"sbatch_options": {"--time": "1:00:00"}}, "use cluster.timeout_min instead"),
        ({"sbatch_options": {"dependency": "afterok:1"}}, "it is set by comprobust itself"),
        (
            {"sbatch_options": {"qos": ["a"]}},
            "cluster.sbatch_options.qos must be a string, a number or true/false",
        ),
        ({"sbatch_options": {1: "x"}}, "cluster.sbatch_options: option names must be strings, got 1"),
    ],
)
def test_config_errors_name_file_and_key(data, expected):
    with pytest.raises(UserError) as error:
        ClusterConfig.from_dict(data, source="exp.yaml")
    message = str(error.value)
    assert expected in message
    assert message.startswith("exp.yaml: ") and "\n" not in message


def test_not_a_mapping():
    with pytest.raises(UserError, match="exp.yaml: cluster must be a mapping"):
        ClusterConfig.from_dict(["slurm"], source="exp.yaml")


def test_sbatch_parameters_for_dry_run():
    config = ClusterConfig.from_dict(
        {
            "partition": "gpu",
            "gpus_per_task": 1,
            "cpus_per_task": 4,
            "mem_gb": 1.5,
            "timeout_min": 120,
            "array_parallelism": 8,
            "sbatch_options": {"account": "lab", "exclusive": True, "requeue": False},
        }
    )
    params = sbatch_parameters(
        config, folder="/shared/logs", n_tasks=100, dependency="afterok:41", job_name="erm"
    )
    assert params["partition"] == "gpu" and params["time"] == "120" and params["cpus-per-task"] == "4"
    assert params["mem"] == "1536MB" and params["gpus-per-task"] == "1"
    assert (
        params["array"] == "0-99%8" and params["signal"] == "USR2@90" and params["dependency"] == "afterok:41"
    )
    assert params["account"] == "lab" and params["exclusive"] == "true" and params["job-name"] == "erm"
    assert params["kill-on-invalid-dep"] == "yes" and "requeue" not in params
    assert params["output"] == "/shared/logs/%A_%a_0_log.out"
    single = sbatch_parameters(ClusterConfig(), n_tasks=1)
    assert "array" not in single and "partition" not in single and single["mem"] == "4GB"


def test_slurm_time_parsing():
    parse = cluster.slurm._slurm_time_to_min
    assert parse("UNLIMITED") == float("inf") and parse("1-00:00:00") == 1440 and parse("2:30:00") == 150
    assert parse("30:00") == 30 and parse("45") == 45 and parse("1-12") == 36 * 60


# ------------------------------------------------------------------------------------------ executor choice


def _fake_scontrol(folder: Path, answer: str, rc: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "scontrol"
    script.write_text(f"#!/bin/sh\necho '{answer}'\nexit {rc}\n")
    script.chmod(0o755)
    return folder


def test_local_when_scontrol_is_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not slurm_is_up()
    assert isinstance(make_executor(ClusterConfig(), tmp_path / "logs"), submitit.LocalExecutor)
    with pytest.raises(UserError, match=r"exp.yaml: cluster.executor=slurm but no Slurm controller answers"):
        make_executor(ClusterConfig.from_dict({"executor": "slurm"}, source="exp.yaml"), tmp_path / "logs")


def test_local_when_controller_is_down(tmp_path, monkeypatch):
    bin_dir = _fake_scontrol(tmp_path / "bin", "Slurmctld(primary) at ctl is DOWN", 1)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert not slurm_is_up()
    assert isinstance(make_executor(ClusterConfig(), tmp_path / "logs"), submitit.LocalExecutor)
    # "up" is read from scontrol's answer, not from the binaries being installed
    _fake_scontrol(bin_dir, "Slurmctld(primary) at ctl is UP", 0)
    assert slurm_is_up()


@pytest.mark.skipif(shutil.which("scontrol") is None, reason="the Slurm client is not installed")
def test_real_scontrol_with_unreachable_controller(tmp_path, monkeypatch):
    conf = tmp_path / "slurm.conf"
    conf.write_text(
        "ClusterName=x\nSlurmctldHost=localhost\nSlurmctldPort=1\nAuthType=auth/munge\n"
        "NodeName=localhost CPUs=1\nPartitionName=p Nodes=localhost\n"
    )
    monkeypatch.setenv("SLURM_CONF", str(conf))
    assert not slurm_is_up()
    assert isinstance(make_executor(ClusterConfig(), tmp_path / "logs"), submitit.LocalExecutor)


def test_explicit_local_and_validate_resources_is_a_no_op(tmp_path):
    config = ClusterConfig.from_dict({"executor": "local", "cpus_per_task": 512, "timeout_min": 7})
    executor = make_executor(config, tmp_path / "logs")
    assert isinstance(executor, submitit.LocalExecutor)
    assert executor.parameters["timeout_min"] == 7
    cluster.validate_resources(config)  # the local machine runs whatever it is given


# -------------------------------------------------------------------------------------- real LocalExecutor


def square(x: int) -> int:
    return x * x


def local_executor(tmp_path: Path) -> submitit.Executor:
    config = ClusterConfig.from_dict({"executor": "local", "timeout_min": 2, "signal_delay_s": 30})
    return make_executor(config, tmp_path / "logs")


def test_local_array_results_and_progress(tmp_path):
    executor = local_executor(tmp_path)
    jobs = submit_array(executor, square, [(i,) for i in range(3)], name="sq")
    lines: list[str] = []
    assert wait_for_jobs(jobs, label="square", poll_s=0.2, progress=lines.append) == [0, 1, 4]
    assert lines[-1] == "square: 3/3 done, 0 running, 0 pending, 0 failed"
    assert job_states(jobs) == {"pending": 0, "running": 0, "done": 3, "failed": 0}
    assert submit_array(executor, square, []) == []


def test_local_dependency_waits_then_submits_and_parallelism_is_capped(tmp_path):
    config = ClusterConfig.from_dict(
        {"executor": "local", "timeout_min": 2, "signal_delay_s": 30, "array_parallelism": 1}
    )
    executor = make_executor(config, tmp_path / "logs")
    first = submit_array(executor, stamp, [(str(tmp_path), f"a{i}", 0.5) for i in range(2)])
    second = submit_array(executor, stamp, [(str(tmp_path), "b0", 0.0)], depends_on=first)
    # the local executor has no dependencies: submit_array itself waited for the first array
    assert all(job.done() for job in first)
    a0, a1 = wait_for_jobs(first, progress=None)
    assert a1["start"] >= a0["end"], "more tasks ran at once than array_parallelism allows"
    [b] = wait_for_jobs(second, progress=None)
    assert b["start"] >= a1["end"]


def test_local_failure_is_reported_with_stderr_and_blocks_dependents(tmp_path):
    executor = local_executor(tmp_path)
    bad = submit_array(executor, explode, [(7,)], name="bad")
    with pytest.raises(JobFailed) as error:
        wait_for_jobs(bad, label="stage erm", poll_s=0.2, progress=None)
    message = str(error.value)
    assert message.startswith(f"stage erm: job {bad[0].job_id} failed: ValueError: boom 7")
    assert "about to fail" in message and error.value.job is bad[0]
    assert job_states(bad)["failed"] == 1
    submitted = len(list((tmp_path / "logs").glob("*_submitted.pkl")))
    with pytest.raises(JobFailed, match="boom 7"):
        submit_array(executor, square, [(1,)], depends_on=bad)
    assert len(list((tmp_path / "logs").glob("*_submitted.pkl"))) == submitted, "the dependent was submitted"


def test_requeueable_checkpoint_resubmits_the_same_callable():
    run = Epochs("/nowhere.json", 3, 0.0)
    delayed = run.checkpoint()
    assert isinstance(delayed, submitit.helpers.DelayedSubmission) and delayed.function is run
    wrapped = RequeueableCall(square)
    assert wrapped(5) == 25 and wrapped.checkpoint(5).args == (5,)
    assert cloudpickle.loads(cloudpickle.dumps(wrapped))(3) == 9
    with pytest.raises(TypeError, match="'checkpoint' is the method submitit calls"):
        run.checkpoint = "/some/file.pt"


def test_local_preemption_requeues_and_resumes(tmp_path):
    checkpoint = tmp_path / "train.json"
    [job] = submit_array(local_executor(tmp_path), Epochs(str(checkpoint), 8, 0.25), [()])
    deadline = time.time() + 60
    while len(read_state(checkpoint)["done"]) < 3:
        assert time.time() < deadline and not job.done(), f"training did not progress: {job.stderr()}"
        time.sleep(0.05)
    os.kill(read_state(checkpoint)["pid"], signal.SIGUSR2)  # submitit's preemption signal
    [state] = wait_for_jobs([job], poll_s=0.2, progress=None)
    assert state["done"] == list(range(8)), "an epoch was lost or repeated"
    assert state["starts"] == 2
    assert "Epochs signalled; requeueing" in job.stderr()


def test_a_submitted_job_uses_its_tasks_cpus_and_an_inline_run_keeps_the_default(monkeypatch) -> None:
    import torch

    from comprobust.stages import limit_threads_in_jobs

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        monkeypatch.delenv("SUBMITIT_EXECUTOR", raising=False)
        limit_threads_in_jobs(ClusterConfig(cpus_per_task=1))
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")
        limit_threads_in_jobs(ClusterConfig(cpus_per_task=1))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
