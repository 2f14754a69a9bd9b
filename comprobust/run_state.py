"""What planned runs have left on disk: each one's state (done, damaged, running, failed, missing) from its
done record, lock and failure record; the status table and the dry run built from them; setting a finished run
aside to run it again. Light (no torch): `launch.py status` and `run --dry-run` need only this.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from comprobust.cluster import ClusterConfig, sbatch_parameters
from comprobust.config import ExperimentConfig
from comprobust.errors import UserError
from comprobust.locking import FileLock
from comprobust.planning import rerun_command
from comprobust.runs import DONE_FILE, FAILED_FILE, DoneRecord, Run, RunPaths, TrainRun

LOCK_STALE_S = 600.0  # a lock not refreshed for this long belongs to a killed job


def done_record(experiment: ExperimentConfig, run: Run) -> DoneRecord | None:
    """The finished run's record, or None if it has not finished."""
    path = RunPaths.of(experiment.output_dir, run).done
    if not path.exists():
        return None
    try:
        return DoneRecord.from_json(path.read_text(), run)
    except (OSError, ValueError) as err:
        raise UserError(
            f"{path} is damaged ({type(err).__name__}); redo the run with: {rerun_command(experiment, run)}"
        ) from None


def state_of(experiment: ExperimentConfig, run: Run) -> str:
    """ "done", "damaged" (its done.json is unreadable), "running", "failed" or "missing"."""
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


def states_of(experiment: ExperimentConfig, runs: Iterable[Run]) -> dict[str, str]:
    """`state_of` every run by id, listing the runs folder once: a run without a folder is "missing" without a
    file check (a 999-run dry run of a new experiment makes one directory listing, not 3,000 stats)."""
    try:
        present = {entry.name for entry in os.scandir(Path(experiment.output_dir) / "runs")}
    except FileNotFoundError:
        present = set()
    return {run.run_id: state_of(experiment, run) if run.run_id in present else "missing" for run in runs}


def waves(runs: Sequence[Run]) -> list[list[Run]]:
    """Runs grouped by stage (or evaluated system), groups in dependency order: one job array each."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.kind, run.group), []).append(run)
    return list(groups.values())


def describe_plan(
    experiment: ExperimentConfig, runs: Sequence[Run], cluster: ClusterConfig, out=None
) -> None:
    """The dry run: every planned run with its state and config, and the sbatch parameters of each array."""
    out = out or sys.stdout
    states = states_of(experiment, runs)
    for group in waves(runs):
        first = group[0]
        params = first.config.get("params") or {
            k: first.config[k] for k in ("system", "shards") if k in first.config
        }
        detail = first.method if isinstance(first, TrainRun) else first.system
        print(f"\n== {first.kind} {first.group} ({detail}): {len(group)} run(s)", file=out)
        print(f"   config: {json.dumps(params, sort_keys=True, default=str)}", file=out)
        if cluster.executor != "inline":
            options = sbatch_parameters(
                cluster,
                experiment.output_dir / "jobs",
                n_tasks=len(group),
                dependency="afterok:<upstream arrays>" if any(r.upstream for r in group) else None,
                job_name=f"{experiment.name}-{first.group}",
            )
            print("   sbatch: " + " ".join(f"--{k}={v}" for k, v in options.items()), file=out)
        for run in group:
            inputs = ", ".join(run.upstream) or "-"
            print(f"   {states[run.run_id]:8s} {run.run_id}  inputs: {inputs}", file=out)
    print(f"\n{len(runs)} runs; nothing submitted (dry run)", file=out)


def status_table(experiment: ExperimentConfig, runs: Iterable[Run]) -> list[dict[str, Any]]:
    """One row per run: state, the main validation or test metric, seconds, and the error of a failed run."""
    runs = list(runs)
    states = states_of(experiment, runs)
    rows = []
    for run in runs:
        state = states[run.run_id]
        row = {
            "run_id": run.run_id,
            "kind": run.kind,
            "stage": run.group,
            "seed": run.seed,
            "corruption": run.corruption or "",
            "state": state,
            "metric": "",
            "seconds": "",
            "error": "",
        }
        record = done_record(experiment, run) if state == "done" else None
        if record is not None:
            metrics = record.metrics
            key = (
                "acc/compositions"
                if run.kind == "evaluate"
                else "val_acc"
                if "val_acc" in metrics
                else "val_loss"
            )
            row["metric"] = f"{key}={metrics[key]:.4g}" if key in metrics else ""
            row["seconds"] = record.seconds
        elif state == "failed":
            try:
                row["error"] = str(
                    json.loads(RunPaths.of(experiment.output_dir, run).failed.read_text())["error"]
                )[:120]
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
    present = [path for path in (paths.done, paths.failed, paths.model) if path.exists()]
    if not present:
        return None
    lock = FileLock(paths.lock, stale_s=LOCK_STALE_S)
    if not lock.try_acquire():
        raise UserError(
            f"run {run.run_id} is running ({lock.describe_owner()}); wait for it to end, then retry"
        )
    try:
        aside = folder / f"replaced-{time.strftime('%Y%m%d-%H%M%S')}-{time.time_ns() % 10**9:09d}"
        aside.mkdir()
        for path in present:
            path.rename(aside / path.name)
    finally:
        lock.release()
    print(f"{run.run_id}: set aside {', '.join(p.name for p in present)} in {aside}; running it again")
    return aside
