"""Launch an experiment: planned runs -> job arrays (one per stage or evaluated system) with Slurm `afterok`
dependencies, or local processes, or inline in this process; plus the dry run and the status table.

Finished runs (their `done.json` exists) are skipped, so relaunching an experiment runs only what is missing and
resumes what was cut off.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

from comprobust.cluster import (
    ClusterConfig,
    JobFailed,
    RequeueableCall,
    make_executor,
    resolve_executor,
    sbatch_parameters,
    submit_array,
    validate_resources,
    wait_for_jobs,
)
from comprobust.config import ExperimentConfig
from comprobust.errors import UserError, WorkFailed
from comprobust.locking import FileLock
from comprobust.methods.common import EXPORT_FILE
from comprobust.planning import rerun_command
from comprobust.runs import DONE_FILE, FAILED_FILE, Run, RunPaths, TrainRun
from comprobust.stages import LOCK_STALE_S, done_record, execute


def cluster_config(experiment: ExperimentConfig, executor: str | None = None) -> ClusterConfig:
    """The experiment's `cluster:` block, validated, with an optional executor override."""
    raw = dict(experiment.cluster)
    if executor is not None:
        raw["executor"] = executor
    return ClusterConfig.from_dict(raw, source=str(experiment.path))


def waves(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs grouped by stage (or evaluated system), groups in dependency order: one job array each."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.kind, run.group), []).append(run)
    return list(groups.values())


def state_of(experiment: ExperimentConfig, run: Run) -> str:
    """"done", "damaged" (its done.json is unreadable), "running", "failed" or "missing"."""
    try:
        if done_record(experiment, run) is not None:
            return "done"
    except UserError:
        return "damaged"
    paths = RunPaths.of(experiment.output_dir, run)
    if FileLock(paths.lock, stale_s=LOCK_STALE_S).held_by_live_owner():
        return "running"
    if paths.failed.exists():
        return "failed"
    return "missing"


def launch(experiment: ExperimentConfig, runs: Sequence[Run], cluster: ClusterConfig,
           mode: str | None = None, detach: bool = False, out=None) -> list[Any]:
    """Submit every run that is not done, with dependencies; wait for them unless `detach`."""
    out = out or sys.stdout
    pending = [run for run in runs if done_record(experiment, run) is None]
    print(f"{experiment.name}: {len(runs)} runs planned, {len(runs) - len(pending)} already done, "
          f"{len(pending)} to run", file=out)
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
    return WorkFailed(f"run {run.run_id} failed: {cause.splitlines()[0] if cause else 'no message'}; {where}"
                      f"traceback in {RunPaths.of(experiment.output_dir, run).failed}; fix the cause and relaunch "
                      f"`python launch.py run {experiment.path}{smoke}` (finished runs are skipped)")


def _run_of(err: JobFailed, runs: Sequence[Run]) -> Run | None:
    """The planned run a failed job was executing (its arguments: the experiment, the run, the mode)."""
    with contextlib.suppress(Exception):
        run_id = err.job.submission().args[1].run_id  # type: ignore[union-attr]  # any failure: None
        return next(run for run in runs if run.run_id == run_id)
    return None


def _submit_and_wait(experiment: ExperimentConfig, pending: Sequence[Run], cluster: ClusterConfig, kind: str,
                     mode: str | None, detach: bool, out: Any) -> list[Any]:
    if kind == "slurm":
        validate_resources(cluster, n_tasks=max(len(group) for group in waves(pending)))
    executor = make_executor(cluster, experiment.output_dir / "jobs" / "%j")
    submitted: dict[str, Any] = {}
    all_jobs = []
    for group in waves(pending):
        upstream = {rid for run in group for rid in run.upstream}
        depends_on = [submitted[rid] for rid in upstream if rid in submitted]
        # each task receives its run as planned here: a job never re-reads the (possibly edited) YAML
        jobs = submit_array(executor, RequeueableCall(execute), [(experiment, run, mode) for run in group],
                            depends_on=depends_on, name=f"{experiment.name}-{group[0].group}")
        submitted.update({run.run_id: job for run, job in zip(group, jobs)})
        all_jobs += jobs
        print(f"submitted {group[0].group}: {len(jobs)} task(s) as job {str(jobs[0].job_id).split('_')[0]} "
              f"({kind})", file=out, flush=True)
    if detach:
        print(f"detached; follow with: python launch.py status {experiment.path}{' --smoke' if experiment.smoke else ''}",
              file=out)
        return all_jobs
    return wait_for_jobs(all_jobs, label=experiment.name, progress=lambda line: print(line, file=out, flush=True))


def describe_plan(experiment: ExperimentConfig, runs: Sequence[Run], cluster: ClusterConfig, out=None) -> None:
    """The dry run: every planned run with its state and config, and the sbatch parameters of each array."""
    out = out or sys.stdout
    for group in waves(runs):
        first = group[0]
        params = first.config.get("params") or {k: first.config[k] for k in ("system", "shards") if k in first.config}
        detail = first.method if isinstance(first, TrainRun) else first.system
        print(f"\n== {first.kind} {first.group} ({detail}): {len(group)} run(s)", file=out)
        print(f"   config: {json.dumps(params, sort_keys=True, default=str)}", file=out)
        if cluster.executor != "inline":
            options = sbatch_parameters(cluster, experiment.output_dir / "jobs", n_tasks=len(group),
                                        dependency="afterok:<upstream arrays>" if any(r.upstream for r in group)
                                        else None, job_name=f"{experiment.name}-{first.group}")
            print("   sbatch: " + " ".join(f"--{k}={v}" for k, v in options.items()), file=out)
        for run in group:
            inputs = ", ".join(run.upstream) or "-"
            print(f"   {state_of(experiment, run):8s} {run.run_id}  inputs: {inputs}", file=out)
    print(f"\n{len(runs)} runs; nothing submitted (dry run)", file=out)


def status_table(experiment: ExperimentConfig, runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One row per run: state, the main validation or test metric, seconds, and the error of a failed run."""
    rows = []
    for run in runs:
        state = state_of(experiment, run)
        row = {"run_id": run.run_id, "kind": run.kind, "stage": run.group, "seed": run.seed,
               "corruption": run.corruption or "", "state": state, "metric": "", "seconds": "", "error": ""}
        record = done_record(experiment, run) if state == "done" else None
        if record is not None:
            metrics = record.get("metrics", {})
            key = "acc/compositions" if run.kind == "evaluate" else "val_acc" if "val_acc" in metrics else "val_loss"
            row["metric"] = f"{key}={metrics[key]:.4g}" if key in metrics else ""
            row["seconds"] = record.get("seconds", "")
        elif state == "failed":
            try:
                row["error"] = str(json.loads(RunPaths.of(experiment.output_dir, run).failed.read_text())["error"])[:120]
            except (OSError, ValueError, KeyError, TypeError):
                row["error"] = f"{FAILED_FILE} is unreadable; relaunch the experiment to retry the run"
        elif state == "damaged":
            row["error"] = f"{DONE_FILE} is damaged; redo it with: {rerun_command(experiment, run)}"
        rows.append(row)
    return rows


def set_aside(experiment: ExperimentConfig, run: Run) -> Path | None:
    """Make a finished (or damaged) run run again: move its done.json, failed.json and model.pt into
    `<run folder>/replaced-<time>/` (nothing is deleted). Its checkpoints stay, so a finished training only
    re-exports its model. Refused while the run is running."""
    paths = RunPaths.of(experiment.output_dir, run)
    folder = paths.folder
    present = [path for path in (paths.done, paths.failed, folder / EXPORT_FILE) if path.exists()]
    if not present:
        return None
    lock = FileLock(paths.lock, stale_s=LOCK_STALE_S)
    if not lock.try_acquire():
        raise UserError(f"run {run.run_id} is running ({lock.describe_owner()}); wait for it to end, then retry")
    try:
        aside = folder / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}"
        aside.mkdir()
        for path in present:
            path.rename(aside / path.name)
    finally:
        lock.release()
    print(f"{run.run_id}: set aside {', '.join(p.name for p in present)} in {aside}; running it again")
    return aside


def output_paths(experiment: ExperimentConfig) -> dict[str, Path]:
    """Where a finished experiment's results live."""
    return {"runs": experiment.output_dir / "runs", "wandb": experiment.output_dir / "wandb",
            "report": experiment.output_dir / "report" / "index.html"}

