"""Waiting for submitted jobs: progress lines, and `JobFailed` with the failing job's error and stderr tail."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import submitit
from submitit.core.core import Job

from comprobust.errors import WorkFailed


class JobFailed(WorkFailed):
    """A submitted job failed, was cancelled or died; the message's first line names the job, the error and its
    log, the lines after it carry the tail of its stderr."""

    def __init__(self, message: str, job: Job | None = None, cause: str = "") -> None:
        super().__init__(message)
        self.job = job
        self.cause = cause  # the error alone (and the Slurm state), without job id and log


_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
# submitit treats these as unfinished; everything else without a result file is a failure
_UNFINISHED = {
    "READY",
    "PENDING",
    "RUNNING",
    "UNKNOWN",
    "REQUEUED",
    "COMPLETING",
    "PREEMPTED",
    "CONFIGURING",
    "SUSPENDED",
    "RESIZING",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "STAGE_OUT",
    "SIGNALING",
}


def _state(job: Job) -> str:
    words = str(job.state).split()
    return words[0].upper() if words else "UNKNOWN"


def classify(job: Job, force: bool = False) -> str:
    """ "pending", "running", "done" or "failed" (reads the result file, or the Slurm state via sacct)."""
    if job.paths.result_pickle.exists():
        return "failed" if job.exception() is not None else "done"
    if isinstance(job, submitit.LocalJob):
        return "running" if _state(job) == "RUNNING" else "failed"
    if force:
        job.watcher.update_if_long_enough(mode="force")
    state = _state(job)
    if state in _RUNNING:
        return "running"
    if state in _UNFINISHED:
        return "pending"
    if state == "COMPLETED":  # finished but its result is not visible yet: let submitit wait for it
        return "failed" if job.exception() is not None else "done"
    return "failed"  # FAILED, CANCELLED (e.g. its dependency failed), TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...


def job_states(jobs: Sequence[Job]) -> dict[str, int]:
    """Counts of the jobs that are pending, running, done (succeeded) and failed."""
    counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    for job in jobs:
        counts[classify(job)] += 1
    return counts


def _stderr_tail(job: Job, lines: int = 20) -> str:
    with contextlib.suppress(Exception):
        text = job.stderr() or job.stdout() or ""
        return "\n".join(text.rstrip().splitlines()[-lines:])
    return ""


def _final_slurm_state(job: Job, wait_s: float = 5.0) -> str:
    """The job's Slurm state once sacct has caught up with its end (at most `wait_s` seconds)."""
    deadline = time.monotonic() + wait_s
    while True:
        job.watcher.update_if_long_enough(mode="force")
        if _state(job) not in _UNFINISHED or time.monotonic() > deadline:
            return str(job.state)
        time.sleep(0.5)


def failure(job: Job, label: str) -> JobFailed:
    where = "" if isinstance(job, submitit.LocalJob) else f" (Slurm state {_final_slurm_state(job)})"
    if job.paths.result_pickle.exists():
        error = job.exception()
        lines = [line for line in str(error).splitlines() if line.strip() and not line.startswith("-----")]
        # the last line of the remote traceback is the exception itself
        trace = [line for line in lines if not line.startswith(("You can check", "or at paths", "  - "))]
        summary = trace[-1].strip() if trace else "failed"
    else:
        summary = "ended without a result (killed, cancelled, or its dependency failed)"
    message = f"{label}: job {job.job_id} failed{where}: {summary}; its log: {job.paths.stderr}"
    tail = _stderr_tail(job)
    if tail:
        message += f"\n----- last lines of {job.paths.stderr} -----\n{tail}"
    return JobFailed(message, job, cause=f"{summary}{where}")


def wait_for_jobs(
    jobs: Sequence[Job],
    label: str = "jobs",
    poll_s: float = 1.0,
    sacct_every_s: float = 10.0,
    timeout_s: float | None = None,
    progress: Callable[[str], None] | None = print,
) -> list[Any]:
    """Wait until every job finished; print a progress line when the counts change; return their results.

    Raises `JobFailed` (job id, Slurm state, error, stderr tail) as soon as one job fails, and TimeoutError after
    `timeout_s`. Slurm states are re-read with `sacct` at least every `sacct_every_s` seconds (submitit alone backs
    off to minutes), so a job killed without a result is noticed quickly.
    """
    jobs = list(jobs)
    start = last_force = time.monotonic()
    finished: dict[int, str] = {}
    last_line = ""
    while True:
        force = time.monotonic() - last_force >= sacct_every_s
        if force:
            last_force = time.monotonic()
        counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        for index, job in enumerate(jobs):
            kind = finished.get(index)
            if kind is None:
                kind = classify(job, force=force)
                force = False  # one sacct call refreshes every job of this process
            if kind == "failed":
                raise failure(job, label)
            if kind == "done":
                finished[index] = kind
            counts[kind] += 1
        line = (
            f"{label}: {counts['done']}/{len(jobs)} done, {counts['running']} running, "
            f"{counts['pending']} pending, {counts['failed']} failed"
        )
        if progress is not None and line != last_line:
            progress(line)
        last_line = line
        if counts["done"] == len(jobs):
            return [job.result() for job in jobs]
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{label}: not finished after {timeout_s:g} s ({line})")
        time.sleep(poll_s)
