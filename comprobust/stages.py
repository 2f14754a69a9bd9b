"""Run one planned run in this process: what a Slurm job, a local job or a sweep agent executes.

A training run loads its dataset, resolves its input artifacts (use_artifact online, the lineage record offline),
calls its method's `train`, logs the exported model as an artifact (aliases latest and best) and marks itself done.
An evaluation run does the same with `comprobust.evaluation`. A run whose `done.json` exists is skipped; a run cut
off mid-training resumes from its last checkpoint (same W&B run id).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from comprobust.atomic import atomic_write_text
from comprobust.cluster import ClusterConfig
from comprobust.config import ExperimentConfig
from comprobust.data.dataset import LoadedDataset, load_dataset
from comprobust.errors import UserError
from comprobust.locking import FileLock
from comprobust.methods import trainer
from comprobust.methods.common import Export, StageContext
from comprobust.planning import plan, rerun_command
from comprobust.run_state import LOCK_STALE_S, done_record
from comprobust.runs import DoneRecord, Run, RunPaths, TrainRun, model_input, run_id_of_model, wandb_config


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def limit_threads_in_jobs(cluster: ClusterConfig) -> None:
    """In a submitted job (local processes or Slurm), let torch use the task's `cpus_per_task` threads, not one per
    core of the machine: the local executor runs several tasks at once and a Slurm task owns only its CPUs, and
    oversubscribed cores ran steps 5-10x slower. A run in the launching process (inline) keeps torch's default."""
    if os.environ.get("SUBMITIT_EXECUTOR"):
        torch.set_num_threads(cluster.cpus_per_task)


@functools.lru_cache(maxsize=4)
def _dataset(name: str, root: str, split_sizes_json: str, download: bool) -> LoadedDataset:
    return load_dataset(name, root, json.loads(split_sizes_json) or None, download)


def dataset_for(experiment: ExperimentConfig) -> LoadedDataset:
    """The experiment's dataset, loaded once per process."""
    d = experiment.dataset
    return _dataset(d.name, d.root, json.dumps(d.split_sizes or {}, sort_keys=True), d.download)


def producer_stage(experiment: ExperimentConfig, run: Run, role: str) -> str:
    """The stage whose runs fill `role` of `run` (for error messages and lineage)."""
    if isinstance(run, TrainRun):
        return experiment.stages[run.stage].refs[role]
    return run.roles[role]


def execute(
    experiment: ExperimentConfig,
    run: Run,
    mode: str | None = None,
    wandb_id: str | None = None,
    extra_config: Mapping[str, Any] | None = None,
) -> DoneRecord:
    """Run `run` to completion (or skip it if done) and return its done record.

    `wandb_id` replaces the run's own W&B run id (a sweep trial's id) and `extra_config` joins its W&B config.

    Holds the run's lock while working, so two launches of the same experiment never train one run twice: the
    second waits for the first and then finds the run done. A failure leaves `failed.json` with the error.
    """
    existing = done_record(experiment, run)
    if existing is not None:
        print(f"{run.run_id}: already done, skipped")
        return existing
    limit_threads_in_jobs(experiment.cluster)
    paths = RunPaths.of(experiment.output_dir, run)
    folder = paths.folder
    lock = FileLock(paths.lock, timeout_s=float("inf"), stale_s=LOCK_STALE_S, poll_s=2.0)
    if not lock.try_acquire():
        print(f"{run.run_id}: running elsewhere ({lock.describe_owner()}); waiting for it")
        lock.acquire()
    try:
        existing = done_record(experiment, run)
        if existing is not None:
            return existing
        with _heartbeat(lock, LOCK_STALE_S / 4):
            try:
                record = _execute_unlocked(experiment, run, folder, mode, wandb_id, extra_config or {})
            except BaseException as err:
                atomic_write_text(
                    paths.failed,
                    json.dumps(
                        {
                            "run_id": run.run_id,
                            "error": f"{type(err).__name__}: {err}",
                            "traceback": traceback.format_exc(),
                            "time": time.time(),
                        },
                        indent=2,
                    ),
                )
                raise
        atomic_write_text(paths.done, record.to_json())
        paths.failed.unlink(missing_ok=True)
        return record
    finally:
        lock.release()


@contextlib.contextmanager
def _heartbeat(lock: FileLock, every_s: float) -> Iterator[None]:
    """Refresh `lock` from a background thread while the body runs."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(OSError):
                lock.refresh()

    thread = threading.Thread(target=beat, daemon=True, name="lock-heartbeat")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _load_input(experiment: ExperimentConfig, run: Run, tracker: Any, role: str, ref: str) -> Export:
    """One input model; when a finished upstream run's model is damaged, the error names the command redoing it."""
    try:
        return Export.load(
            tracker.use_input(
                ref, required_by=run.group, produced_by_stage=producer_stage(experiment, run, role)
            )
        )
    except UserError as err:
        upstream_id = run_id_of_model(ref)
        upstream = next(
            (r for r in plan(experiment, seeds=[run.seed], evaluation=False) if r.run_id == upstream_id), None
        )
        if upstream is None or not RunPaths.of(experiment.output_dir, upstream).done.exists():
            raise
        raise UserError(
            f"{err}; run {upstream_id} is marked done, so redo it with: {rerun_command(experiment, upstream)}"
        ) from None


def _execute_unlocked(
    experiment: ExperimentConfig,
    run: Run,
    folder: Path,
    mode: str | None,
    wandb_id: str | None,
    extra_config: Mapping[str, Any],
) -> DoneRecord:
    from comprobust.tracking import start_run

    data = dataset_for(experiment)
    config = wandb_config(run, experiment.name, extra_config)
    inputs = {role: [model_input(rid) for rid in ids] for role, ids in run.inputs.items()}
    started = time.perf_counter()
    with start_run(
        out_dir=experiment.output_dir,
        project=experiment.wandb.project,
        group=experiment.name,
        job_type=run.job_type,
        name=run.run_id,
        run_id=wandb_id or run.run_id,
        config=config,
        tags=[data.name, *run.tags],
        mode=experiment.wandb.mode,
        mode_override=mode,
        inputs=[ref for refs in inputs.values() for ref in refs],
    ) as tracker:
        resolved = {
            role: [_load_input(experiment, run, tracker, role, ref) for ref in refs]
            for role, refs in inputs.items()
        }
        ctx = StageContext(
            run_id=run.run_id,
            stage=run.group,
            seed=run.seed,
            corruption=run.corruption,
            params=run.config.get("params", {}),
            identity={"run_id": run.run_id, "config_hash": run.config["hash"]},
            data=data,
            arch=run.architecture or experiment.architecture,
            device=device(),
            out_dir=folder,
            inputs=resolved,
            log_epoch=lambda metrics, epoch: tracker.log(metrics, step=epoch),
            log_extra=lambda key, columns, rows: tracker.log_table(key, columns, rows),
            loader_workers=experiment.stages[run.stage].loader_workers if isinstance(run, TrainRun) else 0,
        )
        if isinstance(run, TrainRun):
            export = trainer(run.method)(ctx)
            metrics = {k: v for k, v in export.meta.items() if isinstance(v, (int, float))}
            tracker.summary_update(metrics)
            tracker.log_checkpoint(
                export.path,
                run.artifact,
                metadata={**export.meta, "run_id": run.run_id},
                aliases=("latest",),
                is_best=True,
            )
            outputs: dict[str, Any] = {"export": str(export.path)}
        else:
            from comprobust.evaluation import evaluate_run

            metrics, outputs = evaluate_run(ctx, run, experiment, tracker)
    return DoneRecord.of(run, round(time.perf_counter() - started, 2), metrics, outputs)
