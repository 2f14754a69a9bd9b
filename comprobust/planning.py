"""Experiment -> the graph of runs (stage x seed x corruption, then evaluation x seed x shard), each with a stable
identity: a hash of its resolved config and of its inputs' identities. The identity names the W&B run, the output
folder and the artifacts, so a relaunch skips finished runs and resumes cut-off ones, never duplicating any.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from comprobust.config import ExperimentConfig, load_experiment
from comprobust.corruption_names import abbreviate, parse_composition
from comprobust.errors import UserError
from comprobust.runs import EvalRun, Run, TrainRun
from comprobust.validation import suggest


def dataset_identity(experiment: ExperimentConfig) -> dict[str, Any]:
    """What of the dataset config determines results: not where the files are, nor whether to download them."""
    return {"name": experiment.dataset.name, "split_sizes": experiment.dataset.split_sizes}


def config_hash(payload: Mapping[str, Any]) -> str:
    """10 hex digits of SHA-256 over canonical JSON."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def plan(
    experiment: ExperimentConfig,
    stages: list[str] | None = None,
    seeds: list[int] | None = None,
    evaluation: bool = True,
) -> list[Run]:
    """Every run of the experiment in dependency order (upstream before downstream)."""
    for name in stages or []:
        if name not in experiment.stages:
            raise UserError(f"{experiment.path}: no stage {name!r}{suggest(name, experiment.stages)}")
    for seed in seeds or []:
        if seed not in experiment.seeds:
            raise UserError(f"{experiment.path}: seed {seed} is not among seeds {list(experiment.seeds)}")
    order = _topological(experiment)
    wanted = set(stages) if stages else set(order)  # named stages only: their inputs must already exist
    runs: list[Run] = []
    for seed in seeds or experiment.seeds:
        by_stage: dict[str, list[TrainRun]] = {}
        for name in order:
            stage = experiment.stages[name]
            inputs = {role: tuple(r.run_id for r in by_stage[target]) for role, target in stage.refs.items()}
            base = {
                "method": stage.method,
                "params": dict(stage.params),
                "dataset": dataset_identity(experiment),
                "architecture": experiment.architecture,
                "seed": seed,
                "input_hashes": {
                    role: [r.config["hash"] for r in by_stage[target]] for role, target in stage.refs.items()
                },
            }
            by_stage[name] = [
                _train_run(name, stage.method, seed, corruption, base, inputs)
                for corruption in (stage.corruptions or (None,))
            ]
            if name in wanted:
                runs.extend(by_stage[name])
        if evaluation and not stages:
            runs.extend(_evaluation_runs(experiment, seed, by_stage))
    return runs


def _train_run(
    stage: str, method: str, seed: int, corruption: str | None, base: dict, inputs: dict
) -> TrainRun:
    config = {**base, "corruption": corruption}
    digest = config_hash(config)
    label = f"{stage}-{abbreviate([corruption]).lower()}" if corruption else stage
    return TrainRun(
        f"{label}-s{seed}-{digest}", stage, method, seed, corruption, {**config, "hash": digest}, inputs
    )


def _evaluation_runs(
    experiment: ExperimentConfig, seed: int, by_stage: Mapping[str, list[TrainRun]]
) -> list[EvalRun]:
    runs = []
    shards = experiment.evaluation.shards
    for system in experiment.evaluation.systems:
        inputs = {role: tuple(r.run_id for r in by_stage[stage]) for role, stage in system.roles.items()}
        for shard in range(shards):
            config = {
                "system": system.kind,
                "label": system.label,
                "seed": seed,
                "dataset": dataset_identity(experiment),
                "compositions": ["-".join(c) for c in experiment.compositions],
                "shard": shard,
                "shards": shards,
                "input_hashes": {
                    role: [r.config["hash"] for r in by_stage[stage]] for role, stage in system.roles.items()
                },
            }
            if system.module_order != "composition":  # the default stays out, so existing ids are unchanged
                config["module_order"] = system.module_order
            digest = config_hash(config)
            suffix = f"-shard{shard}of{shards}" if shards > 1 else ""
            slug = "".join(ch if ch.isalnum() else "-" for ch in system.label.lower())
            runs.append(
                EvalRun(
                    f"eval-{slug}-s{seed}{suffix}-{digest}",
                    system.label,
                    system.kind,
                    seed,
                    shard,
                    shards,
                    {**config, "hash": digest},
                    inputs,
                )
            )
    return runs


def _topological(experiment: ExperimentConfig) -> list[str]:
    """Stage names, every stage after the stages it reads; a cycle is an error naming it."""
    done: list[str] = []
    active: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in active:
            cycle = " -> ".join(active[active.index(name) :] + [name])
            raise UserError(f"{experiment.path}: stages depend on each other in a cycle: {cycle}")
        active.append(name)
        for upstream in experiment.stages[name].needs:
            visit(upstream)
        active.pop()
        done.append(name)

    for name in experiment.stages:
        visit(name)
    return done


def rerun_command(experiment: ExperimentConfig, run: Run) -> str:
    """The command that runs `run` again although it is marked done (for a damaged record or model file)."""
    smoke = " --smoke" if experiment.smoke else ""
    if isinstance(run, EvalRun):
        return f"python launch.py run {experiment.path}{smoke} --rerun {run.run_id}"
    corruption = f" --corruption {run.corruption}" if run.corruption else ""
    return (
        f"python launch.py run-stage {experiment.path} --stage {run.stage} --seed {run.seed}{corruption}{smoke} "
        "--force"
    )


def select_corruption(runs: Sequence[Run], corruption: str, where: str = "--corruption") -> list[Run]:
    """The runs of a per-corruption stage for one elemental, named in full or abbreviated (Contrast or CO)."""
    try:
        name = parse_composition([corruption])[0]
    except UserError as err:
        raise UserError(f"{where} {corruption}: {str(err).split(': ', 1)[-1]}") from None
    chosen: list[Run] = [run for run in runs if run.corruption == name]
    if not chosen:
        offered = sorted({run.corruption for run in runs if run.corruption})
        stage = runs[0].group if runs else "?"
        raise UserError(
            f"{where} {corruption}: stage {stage!r} does not run per corruption {name!r}"
            + (f"; it runs {', '.join(offered)}" if offered else "; drop --corruption")
        )
    return chosen


class Resolved(NamedTuple):
    """An experiment file resolved: its validated config (budget and overrides applied) and the runs chosen."""

    experiment: ExperimentConfig
    runs: list[Run]


def resolve(
    experiment_path: str | Path,
    *,
    smoke: bool = False,
    stages: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    corruption: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    evaluation: bool | None = None,
) -> Resolved:
    """Read an experiment YAML and plan its runs: the one place every command, job and sweep controller goes
    from a file to runs.

    `smoke` applies the smoke budget; `overrides` (stage parameters, from --set or a sweep agent) apply to the
    one stage in `stages`; `corruption` keeps the runs of one elemental (per-corruption stages). Evaluation runs
    are planned when no stage is named, unless `evaluation` says otherwise.
    """
    experiment = load_experiment(experiment_path, smoke_budget=smoke)
    if overrides:
        if not stages or len(stages) != 1:
            raise ValueError("stage parameter overrides need exactly one stage")
        experiment = experiment.with_stage_params(stages[0], overrides)
    runs = plan(
        experiment,
        stages=list(stages) if stages else None,
        seeds=list(seeds) if seeds else None,
        evaluation=not stages if evaluation is None else evaluation,
    )
    if corruption is not None:
        runs = select_corruption(runs, corruption)
    return Resolved(experiment, runs)


def resolve_stage(
    experiment_path: str | Path,
    stage: str,
    *,
    smoke: bool = False,
    seed: int | None = None,
    corruption: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Resolved:
    """What `launch.py run-stage` runs, and what a sweep trial's result is read from: the runs of one stage for
    one seed (the experiment's first unless `seed` is given), with `overrides` applied to that stage."""
    experiment, runs = resolve(
        experiment_path,
        smoke=smoke,
        stages=[stage],
        seeds=None if seed is None else [seed],
        corruption=corruption,
        overrides=overrides,
    )
    chosen = experiment.seeds[0] if seed is None else seed
    return Resolved(experiment, [run for run in runs if run.seed == chosen])
