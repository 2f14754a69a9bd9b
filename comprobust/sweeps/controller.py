"""The offline sweep controller: hands out runs (crashed ones first, then the engine's suggestions) under the
store's lock, records their ends, applies hyperband, and reads a finished run's result."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from comprobust.errors import UserError
from comprobust.runs import DoneRecord, RunPaths
from comprobust.sweeps.command import StageTarget, expand_command
from comprobust.sweeps.engine import digest, plain, suggest_params, sweep_runs, sweeps_engine
from comprobust.sweeps.folder import META_FILE, SWEEP_FILE
from comprobust.sweeps.store import CRASHED, HOST, RUNNING, TERMINAL, RunRecord, SweepStore
from comprobust.sweeps.trial import OFFLINE_SWEEP_ID_ENV, summary_of
from comprobust.validation import parse_overrides

_HISTORY_FLUSH_S = "5"  # wandb-core flushes a live run's log this often when hyperband needs its history


@dataclass(frozen=True)
class IssuedRun:
    """A run handed to an agent: its id, parameters and attempt number (> 1 when reissued after a crash)."""

    run_id: str
    params: dict[str, Any]
    attempt: int
    index: int


@dataclass(frozen=True)
class Agent:
    """Who runs runs: a Slurm array task keeps its id across requeues, so it can take its own run back at once."""

    id: str
    host: str = HOST
    pid: int = field(default_factory=os.getpid)

    @classmethod
    def here(cls) -> Agent:
        job = os.environ.get("SLURM_ARRAY_JOB_ID")
        if job:
            return cls(f"slurm-{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}")
        if os.environ.get("SLURM_JOB_ID"):
            return cls(f"slurm-{os.environ['SLURM_JOB_ID']}")
        return cls(f"{HOST}-{os.getpid()}")


class SweepController:
    """The offline sweep controller over a sweep folder; every agent process has its own instance."""

    def __init__(
        self,
        folder: str | os.PathLike,
        stale_s: float = 120.0,
        max_attempts: int = 3,
        lock_timeout_s: float = 120.0,
        lock_stale_s: float = 60.0,
    ) -> None:
        self.folder = Path(folder)
        if not (self.folder / SWEEP_FILE).exists():
            raise UserError(
                f"{self.folder}: not a sweep folder (no {SWEEP_FILE}); create it with "
                "`launch.py sweep sweeps/<name>.yaml`"
            )
        self.config = yaml.safe_load((self.folder / SWEEP_FILE).read_text())
        meta_path = self.folder / META_FILE
        self.meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        self.sweep_id = self.meta.get("sweep_id") or self.folder.name
        self.engine_config = sweeps_engine().SweepConfig(self.config)
        self.stale_s, self.max_attempts = stale_s, max_attempts
        self.store = SweepStore(self.folder, lock_timeout_s=lock_timeout_s, lock_stale_s=lock_stale_s)
        target = self.meta.get("target")
        self.target = StageTarget(**target) if target else None
        self.workdir = Path(self.meta.get("workdir") or os.getcwd())

    # ------------------------------------------------------------------------------------ run records

    @property
    def metric(self) -> dict[str, Any] | None:
        return self.config.get("metric")

    def records(self) -> list[RunRecord]:
        """Every run so far, oldest first (reads the journal without the lock)."""
        self.store.refresh()
        return sorted(self.store.runs.values(), key=lambda r: r.index)

    def next_run(self, agent: Agent) -> IssuedRun | None:
        """The next run for `agent`: a crashed one first, else a new engine suggestion; None when there is none
        now (grid exhausted, run_cap reached; crashed runs of live agents may still come back)."""
        with self.store.transaction() as store:
            records = sorted(store.runs.values(), key=lambda r: r.index)
            for record in records:
                if record.state != RUNNING:
                    continue
                own_earlier = record.agent == agent.id and (record.host, record.pid) != (
                    agent.host,
                    agent.pid,
                )
                if not (own_earlier or store.is_stale(record, self.stale_s)):
                    continue
                if record.attempt >= self.max_attempts:
                    store.append(
                        {
                            "op": "end",
                            "run_id": record.run_id,
                            "attempt": record.attempt,
                            "state": CRASHED,
                            "error": f"its agent died {record.attempt} times (last: {record.agent})",
                        }
                    )
                    continue
                store.append(
                    {
                        "op": "reissue",
                        "run_id": record.run_id,
                        "attempt": record.attempt + 1,
                        "agent": agent.id,
                        "host": agent.host,
                        "pid": agent.pid,
                        "previous": record.agent,
                    }
                )
                return IssuedRun(record.run_id, dict(record.params), record.attempt, record.index)
            cap = self.config.get("run_cap")
            if cap is not None and len(records) >= cap:
                return None
            params = suggest_params(self.engine_config, records, self.sweep_id)
            if params is None:
                return None
            index = len(records)
            run_id = digest(f"{self.sweep_id}/run/{index}")
            while run_id in store.runs:
                run_id = digest(f"{self.sweep_id}/run/{index}/{run_id}")
            store.append(
                {
                    "op": "issue",
                    "run_id": run_id,
                    "index": index,
                    "params": params,
                    "agent": agent.id,
                    "host": agent.host,
                    "pid": agent.pid,
                }
            )
            return IssuedRun(run_id, params, 1, index)

    def finish(
        self,
        run: IssuedRun,
        state: str,
        summary: Mapping[str, Any] | None = None,
        history: Sequence[Mapping[str, Any]] = (),
        exit_code: int | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the end of a run; False when it had already ended (e.g. another attempt finished it)."""
        if state not in TERMINAL:
            raise ValueError(f"not a final state: {state!r}")
        with self.store.transaction() as store:
            record = store.runs.get(run.run_id)
            if record is None or record.state != RUNNING:
                return False
            store.append(
                {
                    "op": "end",
                    "run_id": run.run_id,
                    "attempt": run.attempt,
                    "state": state,
                    "summary": plain(dict(summary or {})),
                    "history": plain(list(history)),
                    "exit_code": exit_code,
                    "error": error,
                }
            )
            return True

    def owns(self, run: IssuedRun) -> bool:
        """Whether this attempt is still the one that should run `run` (no lock: a cheap journal read)."""
        self.store.refresh()
        record = self.store.runs.get(run.run_id)
        return record is not None and record.state == RUNNING and record.attempt == run.attempt

    def has_running(self) -> bool:
        return any(r.state == RUNNING for r in self.records())

    # ------------------------------------------------------------------------------------- hyperband

    def should_stop(self, run: IssuedRun, history: Sequence[Mapping[str, Any]]) -> bool:
        """Hyperband (`sweeps.stop_runs`) over every run's metric history, this run's being `history`."""
        if "early_terminate" not in self.config or not self.metric:
            return False
        records = self.records()
        histories: dict[str, list] = {run.run_id: list(history)}
        for record in records:
            if record.state == RUNNING and record.run_id != run.run_id:
                beat = self.store.read_heartbeat(record.run_id, record.attempt) or {}
                histories[record.run_id] = list(beat.get("history") or [])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stop = sweeps_engine().stop_runs(self.engine_config, sweep_runs(records, histories))
        return any(r.name == run.run_id for r in stop)

    # ------------------------------------------------------------------------------- running a run

    def param_file(self, run: IssuedRun) -> Path:
        return self.folder / "wandb" / f"sweep-{self.sweep_id}" / f"config-{run.run_id}.yaml"

    def command_for(self, run: IssuedRun) -> tuple[list[str], dict[str, str]]:
        """The expanded command and environment of `run`, as `wandb agent` builds them; writes the parameter
        file (see `_expand_command`)."""
        from wandb.sdk.lib import config_util

        args = {name: {"value": plain(value)} for name, value in run.params.items()}
        param_file = self.param_file(run)
        config_util.save_config_file_from_dict(str(param_file), args)
        argv = expand_command(self.config, args, json_file=param_file.with_suffix(".json"))
        env = dict(os.environ)
        # an offline sweep: its runs are offline whatever credentials exist, and its locally made id stays out of
        # the W&B run (see comprobust.sweeps.trial); a parent's online sweep variables must not leak in
        env.pop("WANDB_SWEEP_ID", None)
        env.update(
            {
                OFFLINE_SWEEP_ID_ENV: self.sweep_id,
                "WANDB_RUN_ID": run.run_id,
                "WANDB_SWEEP_PARAM_PATH": str(param_file),
                "WANDB_MODE": "offline",
            }
        )
        for key, meta_key in (("WANDB_PROJECT", "project"), ("WANDB_ENTITY", "entity")):
            value = self.config.get(meta_key) or self.meta.get(meta_key)
            if value and key not in env:
                env[key] = str(value)
        if "early_terminate" in self.config:
            env.setdefault("WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL", _HISTORY_FLUSH_S)
        return argv, env

    def history(self, run: IssuedRun) -> list[dict[str, Any]]:
        """The metric's history of `run` so far, from its offline W&B run folder(s) (one per attempt)."""
        metric = (self.metric or {}).get("name")
        if not metric:
            return []
        rows: dict[Any, dict[str, Any]] = {}
        for folder in self._wandb_folders(run):
            with contextlib.suppress(Exception):  # a live log is read up to its last complete record
                from comprobust.wandb_offline import read_run

                for i, row in enumerate(read_run(folder).history):
                    if metric in row:
                        rows[row.get("_step", i)] = {metric: row[metric]}
        return [rows[k] for k in sorted(rows, key=lambda s: (isinstance(s, str), s))]

    def _wandb_folders(self, run: IssuedRun) -> list[Path]:
        from comprobust.wandb_offline import find_runs

        roots = [
            Path(os.environ.get("WANDB_DIR") or self.workdir),
            self.workdir / "wandb",
            self.folder / "wandb",
        ]
        if self.meta.get("output_dir"):
            roots.append(Path(self.meta["output_dir"]) / "wandb")
        found: list[Path] = []
        for root in dict.fromkeys(roots):
            found += [f for f in find_runs(root) if f.name.endswith(f"-{run.run_id}") and f not in found]
        return found

    def result(self, run: IssuedRun) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """(summary metrics, metric history) of a run that has ended."""
        history = self.history(run)
        summary: dict[str, Any] = {}
        if self.target is not None:
            summary = self._stage_result(run)
        if not summary:
            for folder in reversed(self._wandb_folders(run)):
                with contextlib.suppress(Exception):
                    from comprobust.wandb_offline import read_run

                    summary = {k: v for k, v in read_run(folder).summary.items() if not k.startswith("_")}
                    break
        return summary, history

    def _stage_result(self, run: IssuedRun) -> dict[str, Any]:
        """Metrics from the done.json of the stage run(s) the command planned (the mean over corruptions)."""
        from comprobust.planning import resolve_stage

        target = self.target
        assert target is not None
        # the parameters exactly as run-stage parses them from the --name=value flags the agent passes
        flags = [f"--{k}={v}" for k, v in run.params.items()]
        overrides = {**target.overrides, **parse_overrides(flags, where="argument")}
        try:
            experiment, planned = resolve_stage(
                self.workdir / target.experiment,
                target.stage,
                smoke=target.smoke,
                seed=target.seed,
                corruption=target.corruption,
                select=target.select,
                overrides=overrides,
            )
        except UserError:
            return {}
        out_dir = Path(experiment.output_dir)
        if not out_dir.is_absolute():
            out_dir = self.workdir / out_dir
        metrics: list[tuple[str | None, dict[str, Any]]] = []
        for planned_run in planned:
            path = RunPaths.of(out_dir, planned_run).done
            try:
                record = DoneRecord.from_json(path.read_text(), planned_run)
            except (OSError, ValueError):
                return {}
            metrics.append((planned_run.variant, dict(record.metrics)))
        if not metrics:
            return {}
        return {"stage_runs": [p.run_id for p in planned], **summary_of(metrics)}
