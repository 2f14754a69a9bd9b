"""W&B sweeps for comprobust stages: validation, the offline controller and agent, and the thin online path.

A sweep is a YAML file in W&B's own format (usable with plain `wandb sweep` too) whose `command` calls
`launch.py run-stage <experiment> --stage <stage> ${args}`. `load_sweep` checks it before anything runs: the
`sweeps` engine's JSON schema, a trial suggestion, the command, the metric, and every parameter (name and values)
against the stage's method. Errors are one `UserError` naming the file and the key.

Offline (no W&B credentials), the sweep lives in `<experiment output>/sweeps/<sweep_id>/`:

    sweep.yaml         the sweep config exactly as given (W&B format)
    sweep-meta.json    sweep id, source file, working directory, the run-stage target, output folder, project
    journal.jsonl      run records (comprobust.sweep_store: append-only journal, lock file, heartbeats/)
    wandb/sweep-<id>/config-<run_id>.yaml   each run's parameters as {name: {value: v}} (WANDB_SWEEP_PARAM_PATH)
    logs/<run_id>.log  the run's output
    submitit/          the agents' job files

`SweepController.next_run` (under the store's lock) first hands out runs whose agent crashed (a dead pid on this
host or a stale heartbeat), then asks the `sweeps` engine (`sweeps.next_run` on the records so far; grid returns
None when exhausted; `run_cap` is honoured; `random` and `numpy` are seeded from the sweep id and the number of
runs, so suggestions are reproducible). `run_agent` loops: take a run, write its parameter file, set
WANDB_SWEEP_ID / WANDB_RUN_ID / WANDB_SWEEP_PARAM_PATH / WANDB_PROJECT, run the command expanded exactly as
`wandb agent` does (wandb's own `create_sweep_command` / `create_sweep_command_args`), heartbeat while it runs,
apply hyperband (`sweeps.stop_runs`) when `early_terminate` is set, then record the result.

Where a run's result comes from: for a run-stage command, the `done.json` of the stage run(s) it planned (the
same plan run-stage makes from the same parameters; written atomically, and only on success) — the mean over
per-corruption runs, with each corruption's value as `<metric>/<corruption>`. Otherwise, and for the metric's
history (hyperband), the offline W&B run with id WANDB_RUN_ID (`comprobust.wandb_offline`). The local sweep
id reaches runs as COMPROBUST_SWEEP_ID, not WANDB_SWEEP_ID (see `comprobust.sweep_trial`); `launch.py publish`
syncs the runs and creates the sweep on the server with them as its prior runs.

Online (credentials configured), `online_sweep` calls `wandb.sweep` once per sweep file (a relaunch continues
the same sweep) and the agents run `wandb agent --count K <entity>/<project>/<sweep_id>`.
"""
from __future__ import annotations

import contextlib
import copy
import ctypes
import difflib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import yaml

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError
from comprobust.sweep_store import (CRASHED, FAILED, FINISHED, HOST, RUNNING, STOPPED, TERMINAL, RunRecord,
                                    SweepStore)
from comprobust.sweep_trial import OFFLINE_SWEEP_ID_ENV, summary_of
from comprobust.validation import check_keys, load_yaml_mapping, parse_overrides, suggest

SWEEP_FILE, META_FILE = "sweep.yaml", "sweep-meta.json"
ENV_VAR = "/usr/bin/env"
_COMMON_METRICS = ("best_epoch", "epoch")
_HISTORY_FLUSH_S = "5"  # wandb-core flushes a live run's log this often when hyperband needs its history


def _engine():
    """The `sweeps` package (W&B's sweep engine), imported quietly (pydantic warns on import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sweeps

        return sweeps


# ------------------------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class StageTarget:
    """What a sweep's command runs: `launch.py run-stage EXPERIMENT --stage STAGE [...] ${args}`."""

    experiment: str
    stage: str
    seed: int | None = None
    corruption: str | None = None
    smoke: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)  # --set k=v in the command


@dataclass
class SweepSpec:
    """A validated sweep file."""

    path: Path
    config: dict[str, Any]
    target: StageTarget | None
    experiment: Any = None  # ExperimentConfig of the target (None for commands other than run-stage)

    @property
    def metric(self) -> dict[str, Any] | None:
        return self.config.get("metric")


def load_sweep(path: str | os.PathLike, require_stage: bool = True) -> SweepSpec:
    """Read and validate a sweep YAML file; every problem is one UserError naming the file and the key."""

    path = Path(path)
    config = load_yaml_mapping(path)
    return validate_sweep(config, where=str(path), path=path, require_stage=require_stage)


def validate_sweep(config: dict[str, Any], where: str = "<sweep>", path: Path | None = None,
                   require_stage: bool = True, workdir: Path | None = None) -> SweepSpec:
    """Validate a sweep config (schema, engine, command, metric, parameters against the stage's method)."""
    check_schema(config, where)
    target = parse_command(config, where, require_stage=require_stage)
    spec = SweepSpec(Path(path or where), config, target)
    if target is not None:
        from comprobust.config import load_experiment

        experiment_path = Path(workdir or ".") / target.experiment
        try:
            spec.experiment = load_experiment(experiment_path, smoke_budget=target.smoke)
        except UserError as err:
            raise UserError(f"{where}: command names experiment {target.experiment}: {err}") from None
        check_parameters(config, spec.experiment, target, where)
        _check_project(config, spec.experiment, where)
    return spec


def _check_project(config: dict[str, Any], experiment: Any, where: str) -> None:
    """The sweep's runs must land in the experiment's W&B project, where `launch.py report` reads them: under
    `wandb agent`, wandb takes the project from the sweep, not from `wandb.init`. A missing `project:` is
    filled in from the experiment; a different one is an error."""
    project = experiment.wandb["project"]
    given = config.setdefault("project", project)
    if given != project:
        raise UserError(f"{where}: project {given!r} differs from the experiment's wandb.project {project!r}; "
                        f"its runs would land where `launch.py report` does not look: set project: {project}")


def check_schema(config: dict[str, Any], where: str) -> None:
    """The `sweeps` engine's JSON schema and its own checks, then one trial suggestion."""
    from jsonschema.exceptions import best_match

    engine = _engine()
    from sweeps.config.schema import sweep_config_jsonschema as schema
    from sweeps.config.schema import validator

    check_keys(config, schema["properties"], where)
    parameters = config.get("parameters")
    for name, spec in (parameters.items() if isinstance(parameters, dict) else ()):
        _check_parameter_spec(spec, f"parameters.{name}", where)
    stopping = config.get("early_terminate")
    if isinstance(stopping, dict) and stopping.get("type") == "hyperband" and not (
            "min_iter" in stopping or {"max_iter", "s"} <= set(stopping)):
        raise UserError(f"{where}: early_terminate: hyperband needs min_iter (e.g. {{type: hyperband, min_iter: 2, "
                        "eta: 2}}), or max_iter and s")
    error = best_match(validator.iter_errors(config))
    if error is not None:
        at = ".".join(str(p) for p in error.absolute_path) or "top level"
        raise UserError(f"{where}: invalid W&B sweep config at {at}: {error.message}")
    violations = engine.schema_violations_from_proposed_config(config)
    if violations:
        raise UserError(f"{where}: invalid W&B sweep config: {'; '.join(violations)}")
    try:
        filled = engine.SweepConfig(config)
    except Exception as err:  # jsonschema.ValidationError or ValueError from the engine's own checks
        raise UserError(f"{where}: invalid W&B sweep config: {getattr(err, 'message', err)}") from None
    if config["method"] not in ("grid", "random", "bayes"):
        raise UserError(f"{where}: method {config['method']!r} needs a custom scheduler on a W&B server; use grid, "
                        "random or bayes")
    if (config["method"] == "bayes" or "early_terminate" in config) and "metric" not in config:
        raise UserError(f"{where}: {'bayes' if config['method'] == 'bayes' else 'early_terminate'} needs a metric: "
                        "add metric: {name: val_acc, goal: maximize}")
    try:
        with _seeded(0):
            engine.next_run(filled, [])
            if "early_terminate" in config:
                engine.stop_runs(filled, [])
    except (ValueError, KeyError, TypeError) as err:
        raise UserError(f"{where}: the W&B sweep engine rejects this config: {err}") from None


def _distribution_names() -> dict[str, dict[str, Any]]:
    """distribution name -> its schema definition, read from the engine's own schema."""
    from sweeps.config.schema import sweep_config_jsonschema

    out: dict[str, dict[str, Any]] = {}
    for definition in sweep_config_jsonschema["definitions"].values():
        for name in (definition.get("properties", {}).get("distribution") or {}).get("enum", []):
            out[name] = definition
    out.setdefault("uniform", sweep_config_jsonschema["definitions"].get("param_uniform", {}))
    return out


def _check_parameter_spec(spec: Any, at: str, where: str) -> None:
    """A precise message for the common mistakes in one parameter (the schema's own says only 'not valid')."""
    if not isinstance(spec, dict):
        raise UserError(f"{where}: {at} must be a mapping such as {{value: 0.1}}, {{values: [0.1, 1]}} or "
                        f"{{distribution: uniform, min: 0, max: 1}}, got {spec!r}")
    if "parameters" in spec:
        for name, sub in (spec["parameters"] or {}).items():
            _check_parameter_spec(sub, f"{at}.parameters.{name}", where)
        return
    names = _distribution_names()
    distribution = spec.get("distribution")
    if distribution is not None and distribution not in names:
        raise UserError(f"{where}: {at}.distribution: unknown distribution {distribution!r}"
                        f"{suggest(str(distribution), sorted(names))}")
    if distribution is not None:
        import jsonschema

        definition = names[distribution]
        errors = sorted(jsonschema.Draft7Validator(definition).iter_errors(spec), key=lambda e: list(e.path))
        if errors:
            key = ".".join(str(p) for p in errors[0].absolute_path)
            raise UserError(f"{where}: {at}{'.' + key if key else ''}: {errors[0].message} (distribution "
                            f"{distribution} takes {', '.join(sorted(definition.get('properties', {})))})")
    elif not {"value", "values"} & set(spec) and not {"min", "max"} <= set(spec):
        known = ["value", "values", "distribution", "min", "max", "parameters", "probabilities"]
        odd = [k for k in spec if k not in known]
        hint = ""
        if odd:
            close = difflib.get_close_matches(str(odd[0]), known, n=1)
            hint = f"; unknown key {odd[0]!r}" + (f", did you mean {close[0]!r}?" if close else "")
        raise UserError(f"{where}: {at}: give value, values, a distribution or parameters{hint}")


def parse_command(config: Mapping[str, Any], where: str, require_stage: bool = True) -> StageTarget | None:
    """Find `launch.py run-stage EXPERIMENT --stage NAME ... ${args}` in the sweep's command."""
    command = config.get("command")
    if command is None:
        if require_stage:
            raise UserError(f"{where}: command: missing; use command: [${{env}}, ${{interpreter}}, launch.py, "
                            "run-stage, experiments/<name>.yaml, --stage, <stage>, ${args}]")
        return None
    if not isinstance(command, list) or not all(isinstance(c, (str, int, float)) for c in command):
        raise UserError(f"{where}: command must be a list of strings, got {command!r}")
    words = [str(c) for c in command]
    if "${program}" in words and not config.get("program"):
        raise UserError(f"{where}: command uses ${{program}} but program is not set")
    words = [str(config.get("program")) if w == "${program}" else w for w in words]
    if "run-stage" not in words:
        if require_stage:
            raise UserError(f"{where}: command must call `launch.py run-stage <experiment> --stage <stage> ${{args}}`"
                            f", got {' '.join(words)}")
        return None
    at = words.index("run-stage")
    if at == 0 or not words[at - 1].endswith("launch.py"):
        raise UserError(f"{where}: command: run-stage must follow launch.py (got {' '.join(words[:at + 1])})")
    rest = words[at + 1:]
    if "${args}" not in rest:
        raise UserError(f"{where}: command must end with ${{args}} (the sweep parameters as --name=value), got "
                        f"{' '.join(words)}")
    if any(w.startswith("${") for w in rest if w != "${args}"):
        bad = next(w for w in rest if w.startswith("${") and w != "${args}")
        raise UserError(f"{where}: command: {bad} cannot be passed to run-stage; use ${{args}}")
    import argparse

    from comprobust.commands import stage as stage_command

    parser = argparse.ArgumentParser(prog="launch.py", add_help=False, exit_on_error=False)
    register = parser.add_subparsers(dest="command")
    stage_command.register(register)
    try:
        parsed, extra = parser.parse_known_args(["run-stage", *[w for w in rest if w != "${args}"]])
    except (argparse.ArgumentError, SystemExit) as err:
        raise UserError(f"{where}: command: run-stage arguments {' '.join(rest)} are invalid ({err})") from None
    overrides = parse_overrides([*parsed.overrides, *extra], where=f"{where}: command:")
    return StageTarget(parsed.experiment, parsed.stage, parsed.seed, parsed.corruption, bool(parsed.smoke),
                       overrides)


def check_parameters(config: Mapping[str, Any], experiment: Any, target: StageTarget, where: str) -> None:
    """Every sweep parameter is a parameter of the stage's method, with values the stage accepts."""
    from comprobust.methods.specs import METHODS

    if target.stage not in experiment.stages:
        raise UserError(f"{where}: command runs stage {target.stage!r}, which {target.experiment} does not define"
                        f"{suggest(target.stage, experiment.stages)}")
    stage = experiment.stages[target.stage]
    if target.seed is not None and target.seed not in experiment.seeds:
        raise UserError(f"{where}: command: --seed {target.seed} is not among {target.experiment}'s seeds "
                        f"{list(experiment.seeds)}")
    if target.corruption is not None:
        from comprobust.planning import plan, select_corruption

        select_corruption(plan(experiment, stages=[target.stage], seeds=[experiment.seeds[0]]), target.corruption,
                          where=f"{where}: command: --corruption")
    allowed = METHODS[stage.method].all_params
    parameters = config.get("parameters") or {}
    for name, spec in parameters.items():
        if name not in allowed:
            raise UserError(f"{where}: parameters.{name}: not a parameter of stage {target.stage!r} (method "
                            f"{stage.method}) in {target.experiment}{suggest(str(name), allowed)}")
        if isinstance(spec, dict) and "parameters" in spec:
            raise UserError(f"{where}: parameters.{name}: nested parameters are passed as one dict, but {name} "
                            "of run-stage takes a single value")
    for name, value in target.overrides.items():
        _check_value(experiment, target.stage, name, value, where, f"command: --{name}")
    for name, values in _candidate_values(config).items():
        for value in values:
            _check_value(experiment, target.stage, name, value, where, f"parameters.{name}")
    metric = config.get("metric")
    if metric:
        known = METHODS[stage.method].metrics + _COMMON_METRICS
        if metric["name"] not in known and not metric["name"].startswith(tuple(f"{k}/" for k in known)):
            raise UserError(f"{where}: metric.name {metric['name']!r} is not reported by stage {target.stage!r} "
                            f"({stage.method}){suggest(metric['name'], known)}")


def _check_value(experiment: Any, stage: str, name: str, value: Any, where: str, at: str) -> None:
    value = _plain(value)
    try:
        experiment.with_stage_params(stage, {name: value})
    except UserError as err:
        raise UserError(f"{where}: {at}: value {value!r} is refused: {str(err).split(': ', 1)[-1]}") from None
    flag = f"--{name}={value}"  # what the agent passes (wandb's create_sweep_command_args)
    parsed = parse_overrides([flag], where="argument")[name]
    if parsed != value and not (isinstance(value, (int, float)) and isinstance(parsed, (int, float))
                                and not isinstance(parsed, bool) and float(parsed) == float(value)):
        raise UserError(f"{where}: {at}: value {value!r} reaches run-stage as {flag}, which it reads as "
                        f"{parsed!r}; pick a value that survives that round trip")


def _candidate_values(config: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Values each parameter may take: its value/values, and a few engine draws for distributions."""
    out: dict[str, list[Any]] = {}
    drawn: list[dict[str, Any]] = []
    sampled = {k: v for k, v in (config.get("parameters") or {}).items()
               if isinstance(v, dict) and "value" not in v and "values" not in v}
    if sampled:
        engine = _engine()
        with _seeded(0):
            runs = engine.next_runs({"method": "random", "parameters": sampled}, [], n=8)
        drawn = [{k: v["value"] for k, v in run.config.items()} for run in runs if run is not None]
    for name, spec in (config.get("parameters") or {}).items():
        if not isinstance(spec, dict):
            continue
        if "value" in spec:
            out[name] = [spec["value"]]
        elif "values" in spec:
            out[name] = list(spec["values"])
        else:
            out[name] = [d[name] for d in drawn if name in d]
    return out


# --------------------------------------------------------------------------------------- engine helpers


def _plain(value: Any) -> Any:
    """numpy scalars/arrays -> Python values, recursively (yaml and json cannot write numpy types)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if type(value).__module__ == "numpy":
        return value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value.tolist()
    return value


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed `random` and `numpy` (the engine draws from both) and restore their states afterwards."""
    import numpy as np

    saved_py, saved_np = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(saved_py)
        np.random.set_state(saved_np)


def _digest(text: str, length: int = 8) -> str:
    """`length` lowercase base-36 characters of SHA-256 (the shape of W&B run and sweep ids)."""
    number = int.from_bytes(hashlib.sha256(text.encode()).digest()[:12], "big")
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(length):
        number, rest = divmod(number, 36)
        out += chars[rest]
    return out


def sweep_id_for(config: Mapping[str, Any], identity: Mapping[str, Any] | None = None) -> str:
    """The stable id of a sweep: a hash of its config (and of what it runs: the experiment's stage)."""
    payload = json.dumps({"config": config, "identity": identity or {}}, sort_keys=True, default=str)
    return _digest(payload)


def _engine_state(record: RunRecord) -> tuple[str, bool]:
    if record.state == STOPPED:
        return "killed", True
    return record.state, False


def _sweep_runs(records: Sequence[RunRecord], histories: Mapping[str, list] | None = None) -> list[Any]:
    engine = _engine()
    runs = []
    for record in records:
        state, stopped = _engine_state(record)
        history = (histories or {}).get(record.run_id, record.history)
        runs.append(engine.SweepRun(name=record.run_id, state=state, stopped=stopped,
                                    config={k: {"value": v} for k, v in record.params.items()},
                                    summary_metrics=dict(record.summary), history=list(history or [])))
    return runs


def suggest_params(engine_config: Any, records: Sequence[RunRecord], sweep_id: str) -> dict[str, Any] | None:
    """The engine's next parameters given the runs so far (None: grid exhausted), reproducibly seeded."""
    engine = _engine()
    seed = int(hashlib.sha256(f"{sweep_id}:{len(records)}".encode()).hexdigest()[:8], 16)
    with _seeded(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # random search ignores the runs so far: skip building them (O(runs) per suggestion)
        run = engine.next_run(engine_config, [] if engine_config["method"] == "random" else _sweep_runs(records))
    if run is None:
        return None
    return {name: _plain(spec["value"]) for name, spec in run.config.items()}


# --------------------------------------------------------------------------------------------- creation


def create_sweep(config: Mapping[str, Any], folder: str | os.PathLike, sweep_id: str,
                 meta: Mapping[str, Any] | None = None) -> Path:
    """Create (or reopen) the offline sweep folder: `sweep.yaml` + `sweep-meta.json`. Reopening a sweep with a
    different config under the same folder is an error; the same config continues the sweep."""
    folder = Path(folder)
    config = _plain(dict(config))
    existing = folder / SWEEP_FILE
    if existing.exists():
        if yaml.safe_load(existing.read_text()) != config:
            raise UserError(f"{folder}: holds sweep {sweep_id} with a different config; give another --sweep-id "
                            "or move the folder away")
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    full_meta = {"sweep_id": sweep_id, "created": time.time(), "workdir": os.getcwd(), **dict(meta or {})}
    atomic_write_text(folder / META_FILE, json.dumps(full_meta, indent=2, default=str))
    atomic_write_text(existing, yaml.safe_dump(config, sort_keys=False))
    return folder


def sweep_folder(spec: SweepSpec, sweep_id: str) -> Path:
    """`<experiment output>/sweeps/<sweep_id>` (absolute)."""
    return (Path(spec.experiment.output_dir) / "sweeps" / sweep_id).resolve()


def identity_of(spec: SweepSpec) -> dict[str, Any]:
    """What besides the sweep config decides its runs: the experiment file and its stage's resolved config."""
    if spec.target is None:
        return {}
    from comprobust.planning import plan

    runs = plan(spec.experiment, stages=[spec.target.stage])
    return {"experiment": spec.target.experiment, "stage": spec.target.stage,
            "stage_config": runs[0].config["hash"] if runs else None}


def prepare_offline(spec: SweepSpec, sweep_id: str | None = None, create: bool = True) -> tuple[str, Path]:
    """The sweep id and folder of a validated spec, creating the folder unless `create` is False."""
    sweep_id = sweep_id or sweep_id_for(spec.config, identity_of(spec))
    folder = sweep_folder(spec, sweep_id)
    if create:
        wandb_cfg = spec.experiment.wandb if spec.experiment is not None else {}
        create_sweep(spec.config, folder, sweep_id, {
            "source": str(spec.path), "target": asdict(spec.target) if spec.target else None,
            "output_dir": str(Path(spec.experiment.output_dir).resolve()) if spec.experiment is not None else None,
            "project": spec.config.get("project") or wandb_cfg.get("project"),
            "entity": spec.config.get("entity") or wandb_cfg.get("entity"),
        })
    return sweep_id, folder


def upstream_missing(spec: SweepSpec) -> list[str]:
    """Runs of upstream stages (e.g. the backbone of a modules sweep) that have not finished yet."""
    if spec.target is None:
        return []
    from comprobust.planning import plan

    experiment = spec.experiment
    seed = spec.target.seed if spec.target.seed is not None else experiment.seeds[0]
    needs = set(experiment.stages[spec.target.stage].needs)
    if not needs:
        return []
    runs = plan(experiment, seeds=[seed], evaluation=False)
    return [r.run_id for r in runs if r.stage in needs
            and not (Path(experiment.output_dir) / "runs" / r.run_id / "done.json").exists()]


# ------------------------------------------------------------------------------------------- controller


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
    def here(cls) -> "Agent":
        job = os.environ.get("SLURM_ARRAY_JOB_ID")
        if job:
            return cls(f"slurm-{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '0')}")
        if os.environ.get("SLURM_JOB_ID"):
            return cls(f"slurm-{os.environ['SLURM_JOB_ID']}")
        return cls(f"{HOST}-{os.getpid()}")


class SweepController:
    """The offline sweep controller over a sweep folder; every agent process has its own instance."""

    def __init__(self, folder: str | os.PathLike, stale_s: float = 120.0, max_attempts: int = 3,
                 lock_timeout_s: float = 120.0, lock_stale_s: float = 60.0) -> None:
        self.folder = Path(folder)
        if not (self.folder / SWEEP_FILE).exists():
            raise UserError(f"{self.folder}: not a sweep folder (no {SWEEP_FILE}); create it with "
                            "`launch.py sweep sweeps/<name>.yaml`")
        self.config = yaml.safe_load((self.folder / SWEEP_FILE).read_text())
        meta_path = self.folder / META_FILE
        self.meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        self.sweep_id = self.meta.get("sweep_id") or self.folder.name
        self.engine_config = _engine().SweepConfig(self.config)
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
                own_earlier = record.agent == agent.id and (record.host, record.pid) != (agent.host, agent.pid)
                if not (own_earlier or store.is_stale(record, self.stale_s)):
                    continue
                if record.attempt >= self.max_attempts:
                    store.append({"op": "end", "run_id": record.run_id, "attempt": record.attempt, "state": CRASHED,
                                  "error": f"its agent died {record.attempt} times (last: {record.agent})"})
                    continue
                store.append({"op": "reissue", "run_id": record.run_id, "attempt": record.attempt + 1,
                              "agent": agent.id, "host": agent.host, "pid": agent.pid, "previous": record.agent})
                return IssuedRun(record.run_id, dict(record.params), record.attempt, record.index)
            cap = self.config.get("run_cap")
            if cap is not None and len(records) >= cap:
                return None
            params = suggest_params(self.engine_config, records, self.sweep_id)
            if params is None:
                return None
            index = len(records)
            run_id = _digest(f"{self.sweep_id}/run/{index}")
            while run_id in store.runs:
                run_id = _digest(f"{self.sweep_id}/run/{index}/{run_id}")
            store.append({"op": "issue", "run_id": run_id, "index": index, "params": params, "agent": agent.id,
                          "host": agent.host, "pid": agent.pid})
            return IssuedRun(run_id, params, 1, index)

    def finish(self, run: IssuedRun, state: str, summary: Mapping[str, Any] | None = None,
               history: Sequence[Mapping[str, Any]] = (), exit_code: int | None = None,
               error: str | None = None) -> bool:
        """Record the end of a run; False when it had already ended (e.g. another attempt finished it)."""
        if state not in TERMINAL:
            raise ValueError(f"not a final state: {state!r}")
        with self.store.transaction() as store:
            record = store.runs.get(run.run_id)
            if record is None or record.state != RUNNING:
                return False
            store.append({"op": "end", "run_id": run.run_id, "attempt": run.attempt, "state": state,
                          "summary": _plain(dict(summary or {})), "history": _plain(list(history)),
                          "exit_code": exit_code, "error": error})
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
            stop = _engine().stop_runs(self.engine_config, _sweep_runs(records, histories))
        return any(r.name == run.run_id for r in stop)

    # ------------------------------------------------------------------------------- running a run

    def param_file(self, run: IssuedRun) -> Path:
        return self.folder / "wandb" / f"sweep-{self.sweep_id}" / f"config-{run.run_id}.yaml"

    def command_for(self, run: IssuedRun) -> tuple[list[str], dict[str, str]]:
        """The expanded command and environment of `run`, as `wandb agent` builds them; writes the parameter
        file (see `_expand_command`)."""
        from wandb.sdk.lib import config_util

        args = {name: {"value": _plain(value)} for name, value in run.params.items()}
        param_file = self.param_file(run)
        config_util.save_config_file_from_dict(str(param_file), args)
        argv = _expand_command(self.config, args, json_file=param_file.with_suffix(".json"))
        env = dict(os.environ)
        # an offline sweep: its runs are offline whatever credentials exist, and its locally made id stays out of
        # the W&B run (see comprobust.sweep_trial); a parent's online sweep variables must not leak in
        env.pop("WANDB_SWEEP_ID", None)
        env.update({OFFLINE_SWEEP_ID_ENV: self.sweep_id, "WANDB_RUN_ID": run.run_id,
                    "WANDB_SWEEP_PARAM_PATH": str(param_file), "WANDB_MODE": "offline"})
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

        roots = [Path(os.environ.get("WANDB_DIR") or self.workdir), self.workdir / "wandb", self.folder / "wandb"]
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
        from comprobust.config import load_experiment
        from comprobust.planning import plan, select_corruption

        target = self.target
        assert target is not None
        # the parameters exactly as run-stage parses them from the --name=value flags the agent passes
        flags = [f"--{k}={v}" for k, v in run.params.items()]
        overrides = {**target.overrides, **parse_overrides(flags, where="argument")}
        try:
            experiment = load_experiment(self.workdir / target.experiment, smoke_budget=target.smoke)
            experiment = experiment.with_stage_params(target.stage, overrides)
        except UserError:
            return {}
        seed = target.seed if target.seed is not None else experiment.seeds[0]
        planned = plan(experiment, stages=[target.stage], seeds=[seed])
        if target.corruption is not None:
            planned = select_corruption(planned, target.corruption)
        out_dir = Path(experiment.output_dir)
        if not out_dir.is_absolute():
            out_dir = self.workdir / out_dir
        metrics: list[tuple[str | None, dict[str, Any]]] = []
        for planned_run in planned:
            path = out_dir / "runs" / planned_run.run_id / "done.json"
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                return {}
            metrics.append((planned_run.corruption, dict(record.get("metrics") or {})))
        if not metrics:
            return {}
        return {"stage_runs": [p.run_id for p in planned], **summary_of(metrics)}


# ------------------------------------------------------------------------------------------------ agent


@dataclass
class AgentReport:
    agent: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        states = [r["state"] for r in self.runs]
        counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
        return f"agent {self.agent}: {len(states)} runs ({counts})"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_agent(folder: str | os.PathLike, count: int | None = None, *, agent: Agent | None = None,
              heartbeat_s: float = 10.0, stale_s: float = 120.0, poll_s: float = 5.0, linger: bool = True,
              max_consecutive_failures: int = 5, grace_s: float = 30.0, lock_timeout_s: float = 120.0,
              quiet: bool = False) -> AgentReport:
    """Run sweep runs until `count` runs are done here, the sweep has no more, or runs keep failing.

    With `linger`, an agent that gets no new run waits while other agents' runs are still running, so that a run
    whose agent dies is taken over (after `stale_s` without heartbeat, at once for a dead pid on this host).
    """
    controller = SweepController(folder, stale_s=stale_s, lock_timeout_s=lock_timeout_s)
    agent = agent or Agent.here()
    report = AgentReport(agent.id)
    failures = 0
    say = (lambda text: None) if quiet else (lambda text: print(f"[{agent.id}] {text}", flush=True))
    while count is None or len(report.runs) < count:
        run = controller.next_run(agent)
        if run is None:
            if linger and controller.has_running():
                time.sleep(poll_s)
                continue
            say("no more runs in this sweep")
            break
        say(f"run {run.run_id} (attempt {run.attempt}): " + " ".join(f"{k}={v}" for k, v in run.params.items()))
        outcome = _execute(controller, run, agent, heartbeat_s, grace_s)
        if outcome is None:
            say(f"run {run.run_id}: taken over elsewhere; dropped here")
            continue
        report.runs.append(outcome)
        metric = (controller.metric or {}).get("name")
        value = outcome["summary"].get(metric) if metric else None
        say(f"run {run.run_id}: {outcome['state']}" + (f"  {metric} {value:.4g}" if isinstance(value, float) else ""))
        failures = failures + 1 if outcome["state"] == FAILED else 0
        if failures >= max_consecutive_failures:
            say(f"stopping: {failures} runs in a row failed (see {controller.folder / 'logs'})")
            break
    return report


def _execute(controller: SweepController, run: IssuedRun, agent: Agent, heartbeat_s: float,
             grace_s: float) -> dict[str, Any] | None:
    store = controller.store
    argv, env = controller.command_for(run)
    log_path = controller.folder / "logs" / f"{run.run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    store.write_heartbeat(run.run_id, run.attempt, agent.id)
    with open(log_path, "ab") as log:
        log.write(f"--- attempt {run.attempt} by {agent.id} at {time.ctime()}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, cwd=controller.workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        stopped = lost = False
        try:
            while True:
                try:
                    code = proc.wait(timeout=heartbeat_s)
                    break
                except subprocess.TimeoutExpired:
                    pass
                history = controller.history(run) if "early_terminate" in controller.config else []
                store.write_heartbeat(run.run_id, run.attempt, agent.id, history=history)
                if not controller.owns(run):
                    lost = True
                elif history and controller.should_stop(run, history):
                    stopped = True
                if lost or stopped:
                    code = _terminate(proc, grace_s)
                    break
        except BaseException:
            _terminate(proc, grace_s=5.0)  # the agent itself is going: its run is reissued later
            raise
    if lost:
        return None
    summary, history = controller.result(run)
    state = STOPPED if stopped else FINISHED if code == 0 else FAILED
    error = None if state != FAILED else f"exit code {code}; see {log_path}: " + _tail(log_path)
    if stopped and history and controller.metric:
        summary.setdefault(controller.metric["name"], history[-1][controller.metric["name"]])
    recorded = controller.finish(run, state, summary, history, exit_code=code, error=error)
    store.heartbeat_path(run.run_id, run.attempt).unlink(missing_ok=True)
    if not recorded:
        return None
    return {"run_id": run.run_id, "state": state, "params": run.params, "summary": summary, "exit_code": code}


def _terminate(proc: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM the run's process group, SIGKILL it after `grace_s`."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def agent_job(folder: str, count: int | None = None) -> str:
    """What each array task of `launch.py sweep` runs (picklable for submitit)."""
    return str(run_agent(folder, count))


# ---------------------------------------------------------------------------------------------- status


def summarize(folder: str | os.PathLike) -> dict[str, Any]:
    """Counts per state, the table rows and the best run of an offline sweep."""
    controller = SweepController(folder)
    controller.store.verify()  # a damaged journal is reported, not read up to the damage
    records = controller.records()
    metric = controller.metric or {}
    name, goal = metric.get("name"), metric.get("goal", "minimize")
    scored = [r for r in records if r.state == FINISHED and isinstance(r.summary.get(name), (int, float))]
    best = None
    if scored:
        best = (max if goal == "maximize" else min)(scored, key=lambda r: r.summary[name])
    counts = {state: sum(r.state == state for r in records) for state in (RUNNING, FINISHED, FAILED, STOPPED, CRASHED)}
    return {"sweep_id": controller.sweep_id, "folder": str(controller.folder), "method": controller.config["method"],
            "metric": metric, "records": records, "counts": counts, "best": best}


def status_table(folder: str | os.PathLike) -> str:
    """A text table of the sweep's runs (parameters, state, metric) and its best run."""
    info = summarize(folder)
    records: list[RunRecord] = info["records"]
    name = (info["metric"] or {}).get("name")
    params = list(dict.fromkeys(k for r in records for k in r.params))
    header = ["run", "state", "try", *params, name or "metric"]
    rows = [[r.run_id, r.state, str(r.attempt), *(_fmt(r.params.get(p)) for p in params),
             _fmt(r.summary.get(name)) if name else "-"] for r in records]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = [f"sweep {info['sweep_id']} ({info['method']}) in {info['folder']}: "
             + ", ".join(f"{n} {s}" for s, n in info["counts"].items() if n) if records else
             f"sweep {info['sweep_id']} ({info['method']}) in {info['folder']}: no runs yet"]
    if records:
        lines += ["  ".join(c.ljust(w) for c, w in zip(header, widths))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    best = info["best"]
    if best is not None:
        lines.append(f"best: {best.run_id} {name}={_fmt(best.summary[name])} ("
                     + ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()) + ")")
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# ---------------------------------------------------------------------------------------------- online


@dataclass(frozen=True)
class OnlineSweep:
    """A sweep on the W&B server: `path` (entity/project/id) is what `wandb agent` takes."""

    path: str
    url: str
    created: bool


def online_sweep(spec: SweepSpec, folder: Path, sweep_path: str | None = None, new: bool = False,
                 prior_runs: Sequence[str] = ()) -> OnlineSweep:
    """The W&B sweep of `spec`: the one given, else the one an earlier launch of the same sweep created (kept in
    `<folder>/<local id>.json`, so a relaunch continues it instead of starting over), else a new one (`new`
    always makes a new one). `prior_runs` join a new sweep as finished trials (publishing an offline sweep)."""
    import wandb
    from wandb.sdk.wandb_sweep import _get_sweep_url

    from comprobust.wandb_connection import base_url

    record_file = folder / f"{sweep_id_for(spec.config, identity_of(spec))}.json"
    entity = spec.config.get("entity") or (spec.experiment.wandb.get("entity") if spec.experiment else None)
    project = spec.config["project"]
    created = False
    if sweep_path is None and record_file.exists() and not new:
        sweep_path = json.loads(record_file.read_text())["path"]
    if sweep_path is None:
        sweep_id = wandb.sweep(dict(spec.config), project=project, entity=entity, prior_runs=list(prior_runs) or None)
        entity = entity or wandb.Api().default_entity
        sweep_path, created = f"{entity}/{project}/{sweep_id}", True
    parts = sweep_path.split("/")
    if len(parts) == 1:
        parts = [entity or wandb.Api().default_entity, project, parts[0]]
    sweep_path = "/".join(parts)
    url = _get_sweep_url(base_url=base_url(), entity=parts[0], project=parts[1], sweep_id=parts[2]) or sweep_path
    atomic_write_text(record_file, json.dumps({"path": sweep_path, "url": url, "source": str(spec.path)}, indent=1))
    return OnlineSweep(sweep_path, url, created)


def wandb_agent_command(sweep_path: str, count: int | None = None) -> list[str]:
    """`wandb agent [--count K] <entity/project/sweep_id>`, run with this Python's wandb."""
    return [sys.executable, "-m", "wandb", "agent", *(["--count", str(count)] if count else []), sweep_path]


def wandb_agent_job(sweep_path: str, count: int | None, workdir: str) -> int:
    """What each array task runs online: a real `wandb agent`, with this Python first on PATH (the agent
    runs `python` for ${interpreter})."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(wandb_agent_command(sweep_path, count), cwd=workdir, env=env, check=True).returncode


def preview(spec: SweepSpec, sweep_id: str, n: int, records: Sequence[RunRecord] = ()) -> list[dict[str, Any]]:
    """The next `n` suggestions an offline controller would make after `records` (treated as running)."""
    engine_config = _engine().SweepConfig(spec.config)
    records = list(records)
    out = []
    for _ in range(n):
        if spec.config.get("run_cap") is not None and len(records) >= spec.config["run_cap"]:
            break
        params = suggest_params(engine_config, records, sweep_id)
        if params is None:
            break
        out.append(params)
        records.append(RunRecord(run_id=f"preview-{len(records)}", index=len(records), params=params))
    return out


def expand_preview(spec: SweepSpec, params: Mapping[str, Any]) -> list[str]:
    """The command an agent would run for `params` (without writing anything)."""
    return _expand_command(spec.config, {k: {"value": v} for k, v in params.items()})


def _expand_command(config: Mapping[str, Any], args: Mapping[str, Any], json_file: Path | None = None) -> list[str]:
    """The sweep's command with its ${...} macros expanded by wandb's own functions, as `wandb agent` does.

    ${interpreter} is this Python (a real agent uses `python` from PATH). With `json_file`, a command that uses
    ${args_json_file} gets the parameters written there.
    """
    from wandb.sdk.launch.sweeps.utils import DEFAULT_SWEEP_COMMAND, create_sweep_command, create_sweep_command_args

    command = create_sweep_command(copy.deepcopy(config.get("command") or DEFAULT_SWEEP_COMMAND))
    macros = create_sweep_command_args({"args": dict(args)})
    macros.update(env=[ENV_VAR], interpreter=[sys.executable], program=[str(config.get("program"))])
    if json_file is not None and "${args_json_file}" in command:
        atomic_write_text(json_file, macros["args_json"][0])
        macros["args_json_file"] = [str(json_file)]
    argv: list[str] = []
    for word in map(str, command):
        argv += (macros.get(word[2:-1]) or []) if word.startswith("${") and word.endswith("}") else [word]
    return argv
