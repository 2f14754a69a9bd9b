"""Experiment -> the graph of runs (stage x seed x corruption, then evaluation x seed x shard), each with a stable
identity: a hash of its resolved config and of its inputs' identities. The identity names the W&B run, the output
folder and the artifacts, so a relaunch skips finished runs and resumes cut-off ones, never duplicating any.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from comprobust.config import ExperimentConfig
from comprobust.corruptions import abbreviate
from comprobust.errors import UserError
from comprobust.validation import suggest


@dataclass(frozen=True)
class PlannedRun:
    """One unit of work: a training stage run or an evaluation shard."""

    run_id: str
    kind: str  # "train" | "evaluate"
    stage: str  # stage name, or the evaluated system's label
    method: str  # training method, or the system kind for evaluations
    seed: int
    corruption: str | None
    config: Mapping[str, Any]  # everything that determines the run's result
    inputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # role -> upstream run ids
    shard: int | None = None

    @property
    def upstream(self) -> tuple[str, ...]:
        return tuple(run_id for ids in self.inputs.values() for run_id in ids)

    @property
    def artifact(self) -> str:
        """The W&B artifact name of this run's output model (training runs)."""
        return f"model-{self.run_id}"


def dataset_identity(experiment: ExperimentConfig) -> dict[str, Any]:
    """What of the dataset config determines results: not where the files are, nor whether to download them."""
    return {"name": experiment.dataset.name, "split_sizes": experiment.dataset.split_sizes}


def config_hash(payload: Mapping[str, Any]) -> str:
    """10 hex digits of SHA-256 over canonical JSON."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:10]


def plan(experiment: ExperimentConfig, stages: list[str] | None = None, seeds: list[int] | None = None,
         evaluation: bool = True) -> list[PlannedRun]:
    """Every run of the experiment in dependency order (upstream before downstream)."""
    for stage in stages or []:
        if stage not in experiment.stages:
            raise UserError(f"{experiment.path}: no stage {stage!r}{suggest(stage, experiment.stages)}")
    for seed in seeds or []:
        if seed not in experiment.seeds:
            raise UserError(f"{experiment.path}: seed {seed} is not among seeds {list(experiment.seeds)}")
    order = _topological(experiment)
    wanted = set(stages) if stages else set(order)  # named stages only: their inputs must already exist
    runs: list[PlannedRun] = []
    for seed in seeds or experiment.seeds:
        by_stage: dict[str, list[PlannedRun]] = {}
        for name in order:
            stage = experiment.stages[name]
            inputs = {role: tuple(r.run_id for r in by_stage[target]) for role, target in stage.refs.items()}
            base = {
                "method": stage.method, "params": dict(stage.params), "dataset": dataset_identity(experiment),
                "architecture": experiment.architecture, "seed": seed,
                "input_hashes": {role: [r.config["hash"] for r in by_stage[target]] for role, target in stage.refs.items()},
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


def _train_run(stage: str, method: str, seed: int, corruption: str | None, base: dict, inputs: dict) -> PlannedRun:
    config = {**base, "corruption": corruption}
    digest = config_hash(config)
    label = f"{stage}-{abbreviate([corruption]).lower()}" if corruption else stage
    return PlannedRun(f"{label}-s{seed}-{digest}", "train", stage, method, seed, corruption,
                      {**config, "hash": digest}, inputs)


def _evaluation_runs(experiment: ExperimentConfig, seed: int, by_stage: Mapping[str, list[PlannedRun]]) -> list[PlannedRun]:
    runs = []
    shards = experiment.evaluation.shards
    for system in experiment.evaluation.systems:
        inputs = {role: tuple(r.run_id for r in by_stage[stage]) for role, stage in system.roles.items()}
        for shard in range(shards):
            config = {
                "system": system.kind, "label": system.label, "seed": seed, "dataset": dataset_identity(experiment),
                "compositions": ["-".join(c) for c in experiment.compositions], "shard": shard, "shards": shards,
                "input_hashes": {role: [r.config["hash"] for r in by_stage[stage]] for role, stage in system.roles.items()},
            }
            if system.module_order != "composition":  # the default stays out, so existing ids are unchanged
                config["module_order"] = system.module_order
            digest = config_hash(config)
            suffix = f"-shard{shard}of{shards}" if shards > 1 else ""
            slug = "".join(ch if ch.isalnum() else "-" for ch in system.label.lower())
            runs.append(PlannedRun(f"eval-{slug}-s{seed}{suffix}-{digest}", "evaluate", system.label, system.kind,
                                   seed, None, {**config, "hash": digest}, inputs, shard))
    return runs


def _topological(experiment: ExperimentConfig) -> list[str]:
    """Stage names, every stage after the stages it reads; a cycle is an error naming it."""
    done: list[str] = []
    active: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in active:
            cycle = " -> ".join(active[active.index(name):] + [name])
            raise UserError(f"{experiment.path}: stages depend on each other in a cycle: {cycle}")
        active.append(name)
        for upstream in experiment.stages[name].needs:
            visit(upstream)
        active.pop()
        done.append(name)

    for name in experiment.stages:
        visit(name)
    return done


def rerun_command(experiment: ExperimentConfig, run: PlannedRun) -> str:
    """The command that runs `run` again although it is marked done (for a damaged record or model file)."""
    smoke = " --smoke" if experiment.smoke else ""
    if run.kind == "evaluate":
        return f"python launch.py run {experiment.path}{smoke} --rerun {run.run_id}"
    corruption = f" --corruption {run.corruption}" if run.corruption else ""
    return (f"python launch.py run-stage {experiment.path} --stage {run.stage} --seed {run.seed}{corruption}{smoke} "
            "--force")


def select_corruption(runs: list[PlannedRun], corruption: str, where: str = "--corruption") -> list[PlannedRun]:
    """The runs of a per-corruption stage for one elemental, named in full or abbreviated (Contrast or CO)."""
    from comprobust.corruptions import parse_composition

    try:
        name = parse_composition([corruption])[0]
    except UserError as err:
        raise UserError(f"{where} {corruption}: {str(err).split(': ', 1)[-1]}") from None
    chosen = [run for run in runs if run.corruption == name]
    if not chosen:
        offered = sorted({run.corruption for run in runs if run.corruption})
        stage = runs[0].stage if runs else "?"
        raise UserError(f"{where} {corruption}: stage {stage!r} does not run per corruption {name!r}"
                        + (f"; it runs {', '.join(offered)}" if offered else "; drop --corruption"))
    return chosen
