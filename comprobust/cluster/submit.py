"""Submission: submitit executors, one job array per stage with `afterok` dependencies, and `Requeueable`
jobs that Slurm may preempt (they resume from their own checkpoint)."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import submitit
from submitit.core.core import Job

from comprobust.cluster.config import ClusterConfig
from comprobust.cluster.slurm import dependency_parameters, resolve_executor, slurm_executor_parameters
from comprobust.cluster.wait import classify, failure, wait_for_jobs


def make_executor(config: ClusterConfig, folder: str | Path) -> submitit.Executor:
    """A `submitit.SlurmExecutor` (Slurm chosen or auto-detected) or a `submitit.LocalExecutor`, configured.

    `folder` receives submitit's pickles and logs unless `config.log_folder` is set; with Slurm it must be on a
    filesystem that the compute nodes share, and so must the Python environment.
    """
    kind = resolve_executor(config)
    log_folder = Path(config.log_folder or folder)
    if kind == "slurm":
        executor: submitit.Executor = submitit.SlurmExecutor(
            folder=log_folder, max_num_timeout=config.max_requeues
        )
        executor.update_parameters(**slurm_executor_parameters(config))
    else:
        # LocalExecutor: gpus_per_task GPUs are made visible (CUDA_VISIBLE_DEVICES; 0 hides them); at most
        # array_parallelism, capped at the number of CPUs, of one stage's tasks run at once (see submit_array)
        executor = submitit.LocalExecutor(folder=log_folder, max_num_timeout=config.max_requeues)
        executor.update_parameters(
            timeout_min=config.timeout_min,
            gpus_per_node=config.gpus_per_task,
            signal_delay_s=config.signal_delay_s,
            array_parallelism=max(1, min(config.array_parallelism, os.cpu_count() or 1)),
        )
    return executor


@contextlib.contextmanager
def _temporary_parameters(executor: submitit.Executor, **params: Any) -> Iterator[None]:
    saved = {k: executor.parameters[k] for k in params if k in executor.parameters}
    executor.parameters.update(params)
    try:
        yield
    finally:
        for k in params:
            executor.parameters.pop(k, None)
        executor.parameters.update(saved)


def submit_array(
    executor: submitit.Executor,
    fn: Callable[..., Any],
    args_list: Sequence[Sequence[Any]],
    depends_on: Sequence[Job] = (),
    name: str | None = None,
) -> list[Job]:
    """Submit `fn(*args)` for each args tuple as ONE job array; return its jobs in order.

    On Slurm this returns at once: the array starts only after every job of `depends_on` COMPLETED
    (`--dependency=afterok:...`) and is cancelled if one of them fails (`--kill-on-invalid-dep=yes`). The local
    executor has neither dependencies nor arrays, so it first waits for `depends_on` (raising `JobFailed` if one
    failed), then starts the tasks as subprocesses, at most `array_parallelism` at a time: it returns once the
    last one has started.
    """
    if not args_list:
        return []
    calls = [tuple(args) for args in args_list]
    if not isinstance(executor, submitit.SlurmExecutor):
        if depends_on:
            wait_for_jobs(depends_on, label=f"{name or 'array'}: waiting for its dependencies", progress=None)
        return _submit_local(
            executor, fn, calls, int(executor.parameters.get("array_parallelism") or len(calls))
        )
    extra: dict[str, Any] = {"job_name": name} if name else {}
    if depends_on:
        if any(not isinstance(job, submitit.SlurmJob) for job in depends_on):
            raise TypeError("a Slurm array can only depend on Slurm jobs")
        ids = list(dict.fromkeys(str(job.job_id).split("_")[0] for job in depends_on))
        extra.update(dependency_parameters(executor.parameters, "afterok:" + ":".join(ids)))
    with _temporary_parameters(executor, **extra):
        with executor.batch():
            jobs = [executor.submit(fn, *args) for args in calls]
    return jobs


def _submit_local(
    executor: submitit.Executor, fn: Callable[..., Any], calls: list[tuple[Any, ...]], limit: int
) -> list[Job]:
    jobs: list[Job] = []
    running: list[Job] = []
    for args in calls:
        while len(running) >= limit:
            time.sleep(0.2)
            for job in [job for job in running if job.done()]:
                running.remove(job)
                if classify(job) == "failed":
                    raise failure(job, "local array")  # do not start the rest of a failing stage
        job = executor.submit(fn, *args)
        jobs.append(job)
        running.append(job)
    return jobs


class Requeueable(submitit.helpers.Checkpointable):
    """Base for stage jobs that Slurm may preempt or stop at their time limit.

    When Slurm sends the signal (USR2, `signal_delay_s` before the limit, or on preemption), submitit calls
    `checkpoint`, which resubmits the same callable with the same arguments; the job is requeued and, when it runs
    again, `__call__` must resume from its own checkpoint file (written atomically every epoch). Subclasses
    implement `__call__` and may override `on_requeue` (e.g. to flush a log) — it must be quick.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "checkpoint":
            raise TypeError(
                f"{type(self).__name__}: 'checkpoint' is the method submitit calls on preemption; "
                "name the checkpoint path attribute differently"
            )
        super().__setattr__(name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__ (the job's work)")

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        self.on_requeue()
        print(
            f"comprobust: {type(self).__name__} signalled; requeueing, it resumes from its checkpoint",
            file=sys.stderr,
            flush=True,
        )
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def on_requeue(self) -> None:
        """Hook called just before the job is requeued (default: nothing)."""


class RequeueableCall(Requeueable):
    """`Requeueable` around any picklable callable: `RequeueableCall(run_stage)(*args)` calls `run_stage(*args)`."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)
