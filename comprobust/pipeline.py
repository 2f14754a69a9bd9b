"""Launch an experiment: planned runs -> job arrays (one per stage or evaluated system) with Slurm `afterok`
dependencies, or local processes, or inline in this process; plus the dry run and the status table.

Finished runs (their `done.json` exists) are skipped, so relaunching an experiment runs only what is missing and
resumes what was cut off.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from comprobust.cluster import ClusterConfig, resolve_executor, validate_resources
from comprobust.cluster.submit import RequeueableCall, make_executor, submit_array
from comprobust.cluster.wait import JobFailed, wait_for_jobs
from comprobust.config import ExperimentConfig
from comprobust.errors import UserError, WorkFailed
from comprobust.run_state import done_record, waves
from comprobust.runs import Run, RunPaths
from comprobust.stages import execute


def launch(
    experiment: ExperimentConfig,
    runs: Sequence[Run],
    cluster: ClusterConfig,
    mode: str | None = None,
    detach: bool = False,
    out=None,
) -> list[Any]:
    """Submit every run that is not done, with dependencies; wait for them unless `detach`."""
    out = out or sys.stdout
    pending = [run for run in runs if done_record(experiment, run) is None]
    print(
        f"{experiment.name}: {len(runs)} runs planned, {len(runs) - len(pending)} already done, "
        f"{len(pending)} to run",
        file=out,
    )
    if not pending:
        return []
    kind = "inline" if cluster.executor == "inline" else resolve_executor(cluster)
    if kind == "inline":
        for i, run in enumerate(pending, 1):
            print(f"[{i}/{len(pending)}] {run.run_id}", file=out, flush=True)
            try:
                execute(experiment, run, mode)
            except (UserError, KeyboardInterrupt):
                raise
            except Exception as err:  # noqa: BLE001  one line naming the run; the traceback is in failed.json
                raise _run_failed(experiment, run, f"{type(err).__name__}: {err}") from err
        return []
    try:
        return _submit_and_wait(experiment, pending, cluster, kind, mode, detach, out)
    except JobFailed as err:
        failed = _run_of(err, pending)
        if failed is None or err.job is None:
            raise
        raise _run_failed(experiment, failed, err.cause, log=err.job.paths.stderr) from err


def _run_failed(experiment: ExperimentConfig, run: Run, cause: str, log: Path | None = None) -> WorkFailed:
    """One line: which run failed, why, where its traceback is and how to retry."""
    where = f"its log: {log}; " if log is not None else ""
    smoke = " --smoke" if experiment.smoke else ""
    return WorkFailed(
        f"run {run.run_id} failed: {cause.splitlines()[0] if cause else 'no message'}; {where}"
        f"traceback in {RunPaths.of(experiment.output_dir, run).failed}; fix the cause and relaunch "
        f"`python launch.py run {experiment.path}{smoke}` (finished runs are skipped)"
    )


def _run_of(err: JobFailed, runs: Sequence[Run]) -> Run | None:
    """The planned run a failed job was executing (its arguments: the experiment, the run, the mode)."""
    with contextlib.suppress(Exception):
        run_id = err.job.submission().args[1].run_id  # type: ignore[union-attr]  # any failure: None
        return next(run for run in runs if run.run_id == run_id)
    return None


def _submit_and_wait(
    experiment: ExperimentConfig,
    pending: Sequence[Run],
    cluster: ClusterConfig,
    kind: str,
    mode: str | None,
    detach: bool,
    out: Any,
) -> list[Any]:
    if kind == "slurm":
        validate_resources(cluster, n_tasks=max(len(group) for group in waves(pending)))
    executor = make_executor(cluster, experiment.output_dir / "jobs" / "%j")
    submitted: dict[str, Any] = {}
    all_jobs = []
    for group in waves(pending):
        upstream = {rid for run in group for rid in run.upstream}
        depends_on = [submitted[rid] for rid in upstream if rid in submitted]
        # each task receives its run as planned here: a job never re-reads the (possibly edited) YAML
        jobs = submit_array(
            executor,
            RequeueableCall(execute),
            [(experiment, run, mode) for run in group],
            depends_on=depends_on,
            name=f"{experiment.name}-{group[0].group}",
        )
        submitted.update({run.run_id: job for run, job in zip(group, jobs)})
        all_jobs += jobs
        print(
            f"submitted {group[0].group}: {len(jobs)} task(s) as job {str(jobs[0].job_id).split('_')[0]} "
            f"({kind})",
            file=out,
            flush=True,
        )
    if detach:
        print(
            f"detached; follow with: python launch.py status {experiment.path}{' --smoke' if experiment.smoke else ''}",
            file=out,
        )
        return all_jobs
    return wait_for_jobs(
        all_jobs, label=experiment.name, progress=lambda line: print(line, file=out, flush=True)
    )


def output_paths(experiment: ExperimentConfig) -> dict[str, Path]:
    """Where a finished experiment's results live."""
    return {
        "runs": experiment.output_dir / "runs",
        "wandb": experiment.output_dir / "wandb",
        "report": experiment.output_dir / "report" / "index.html",
    }
