"""Experiment -> the graph of runs (stage x seed x corruption, then evaluation x seed x shard), each with a stable
identity: a hash of its resolved config and of its inputs' identities. The identity names the W&B run, the output
folder and the artifacts, so a relaunch skips finished runs and resumes cut-off ones, never duplicating any.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from comprobust.config import ExperimentConfig, SystemConfig, load_experiment
from comprobust.corruption_names import abbreviate, parse_composition
from comprobust.errors import UserError
from comprobust.methods.specs import ARCHITECTURE_AXIS, SYSTEM_MODEL_ROLE
from comprobust.runs import EvalRun, Run, TrainRun
from comprobust.stage_config import StageConfig
from comprobust.validation import suggest


def dataset_identity(experiment: ExperimentConfig) -> dict[str, Any]:
    """What of the dataset config determines results: not where the files are, nor whether to download them."""
    return {"name": experiment.dataset.name, "split_sizes": experiment.dataset.split_sizes}


def canonical_json(value: Any) -> str:
    """The one JSON text of `value` that identities hash: sorted keys, no spaces, `str` for other types."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(payload: Mapping[str, Any], encoded: Mapping[str, str] | None = None) -> str:
    """10 hex digits of SHA-256 over `canonical_json(payload)`.

    `encoded` holds the canonical JSON of some of the payload's values, made once for many payloads (every
    evaluation run names the same 167 compositions, which were most of a 999-run plan's time); the text hashed is
    the same, key by key, as `canonical_json(payload)` gives (its keys are strings)."""
    encoded = encoded or {}
    canonical = ",".join(
        f"{json.dumps(key)}:{encoded[key] if key in encoded else canonical_json(payload[key])}"
        for key in sorted(payload)
    )
    return hashlib.sha256(f"{{{canonical}}}".encode()).hexdigest()[:10]


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
            by_stage[name] = _stage_runs(experiment, experiment.stages[name], seed, by_stage)
            if name in wanted:
                runs.extend(by_stage[name])
        if evaluation and not stages:
            runs.extend(_evaluation_runs(experiment, seed, by_stage))
    return runs


def _stage_runs(
    experiment: ExperimentConfig, stage: StageConfig, seed: int, by_stage: Mapping[str, list[TrainRun]]
) -> list[TrainRun]:
    """The runs of one stage for one seed: one per (run of each `each` input) x (value of each axis) x
    corruption. An input read whole (`all`) gives the runs of its stage on the same architecture."""
    axes = stage.axes(experiment.architecture)
    each = [role for role in stage.refs if role in stage.spec.each]
    runs: list[TrainRun] = []
    for chosen in itertools.product(*(by_stage[stage.refs[role]] for role in each)):
        upstream = dict(zip(each, chosen))
        for values in itertools.product(*axes.values()):
            own = dict(zip(axes, values))
            architecture = own.pop(ARCHITECTURE_AXIS)
            inputs = {
                role: [upstream[role]]
                if role in upstream
                else _read_whole(experiment, stage, role, architecture, by_stage)
                for role in stage.refs
            }
            base = {
                "method": stage.method,
                "params": {**stage.params, **own},
                "dataset": dataset_identity(experiment),
                "architecture": architecture,
                "seed": seed,
                "input_hashes": {role: [r.config["hash"] for r in ins] for role, ins in inputs.items()},
            }
            run_axes = {**own, **({ARCHITECTURE_AXIS: architecture} if stage.architectures else {})}
            for role, run in upstream.items():
                run_axes.update({f"{role}.{name}": value for name, value in run.axes.items()})
            label = "-".join([stage.name, *_slugs(stage, own, architecture, upstream, experiment)])
            runs.extend(
                _train_run(label, stage, seed, corruption, base, inputs, architecture, run_axes)
                for corruption in (stage.corruptions or (None,))
            )
    return runs


def _read_whole(
    experiment: ExperimentConfig,
    stage: StageConfig,
    role: str,
    architecture: str,
    by_stage: Mapping[str, list[TrainRun]],
) -> list[TrainRun]:
    """The runs of the stage filling `role` that a run on `architecture` reads: all of them on that architecture,
    which must differ by corruption only (else the role could not tell which to read)."""
    target = stage.refs[role]
    runs = [run for run in by_stage[target] if run.architecture == architecture]
    where = f"{experiment.path}: stages.{stage.name}.{role}"
    if not runs:
        raise UserError(
            f"{where}: stage {target!r} has no run on architecture {architecture!r}; give {target!r} that "
            f"architecture or {stage.name!r} one of {sorted({r.architecture for r in by_stage[target]})}"
        )
    kinds = {
        tuple(sorted((k, str(v)) for k, v in run.axes.items() if k != ARCHITECTURE_AXIS)) for run in runs
    }
    if len(kinds) > 1:
        raise UserError(
            f"{where}: stage {target!r} runs once per value of its axes ({', '.join(sorted(runs[0].axes))}), "
            f"and {stage.name!r} reads all of its runs; give {target!r} one value of each"
        )
    return runs


def _slugs(
    stage: StageConfig,
    own: Mapping[str, Any],
    architecture: str,
    upstream: Mapping[str, TrainRun],
    experiment: ExperimentConfig,
) -> list[str]:
    """The parts of a run id naming what tells the run apart within its stage: its value of each axis the stage
    lists several of, and the distinguishing values of an input read one run at a time."""
    slugs = [_slug(value) for name, value in own.items() if stage.fans_out(name)]
    if stage.fans_out(ARCHITECTURE_AXIS):
        slugs.append(_slug(architecture))
    for role, run in upstream.items():
        producer = experiment.stages[run.stage]
        told = [_slug(v) for k, v in run.axes.items() if "." not in k and producer.fans_out(k)]
        if told:
            slugs.append(f"{role[0]}_{'_'.join(told)}")
    return slugs


def _slug(value: Any) -> str:
    return "".join(ch for ch in str(value).lower() if ch.isalnum() or ch == "-")


def _train_run(
    label: str,
    stage: StageConfig,
    seed: int,
    corruption: str | None,
    base: dict,
    inputs: Mapping[str, list[TrainRun]],
    architecture: str,
    axes: Mapping[str, Any],
) -> TrainRun:
    config = {**base, "corruption": corruption}
    digest = config_hash(config)
    if corruption:
        label = f"{label}-{abbreviate([corruption]).lower()}"
    return TrainRun(
        f"{label}-s{seed}-{digest}",
        stage.name,
        stage.method,
        seed,
        corruption,
        {**config, "hash": digest},
        {role: tuple(run.run_id for run in runs) for role, runs in inputs.items()},
        architecture,
        axes,
    )


def _evaluation_runs(
    experiment: ExperimentConfig, seed: int, by_stage: Mapping[str, list[TrainRun]]
) -> list[EvalRun]:
    """Each system once per run of its one-model role (`SYSTEM_MODEL_ROLE`), per shard; its other roles read
    their stage's runs on the same architecture."""
    runs = []
    shards = experiment.evaluation.shards
    compositions = _composition_names(experiment.compositions)
    for system in experiment.evaluation.systems:
        model_stage = system.roles[SYSTEM_MODEL_ROLE[system.kind]]
        models = by_stage[model_stage]
        for model in models:
            chosen = {
                role: [model]
                if stage == model_stage
                else [r for r in by_stage[stage] if r.architecture == model.architecture]
                for role, stage in system.roles.items()
            }
            label, slug = system.label, "".join(ch if ch.isalnum() else "-" for ch in system.label.lower())
            if len(models) > 1:  # e.g. ERM[architecture=vit-cpu], eval-erm-vit-cpu-s0-...
                label += "[" + ",".join(f"{k}={v}" for k, v in model.axes.items()) + "]"
                slug += "".join(f"-{_slug(v)}" for v in model.axes.values())
            runs.extend(
                _system_runs(experiment, system, label, slug, seed, chosen, model, shards, compositions)
            )
    return runs


def _system_runs(
    experiment: ExperimentConfig,
    system: SystemConfig,
    label: str,
    slug: str,
    seed: int,
    inputs: Mapping[str, list[TrainRun]],
    model: TrainRun,
    shards: int,
    compositions: tuple[list[str], str],
) -> list[EvalRun]:
    names, names_json = compositions
    runs = []
    for shard in range(shards):
        config = {
            "system": system.kind,
            "label": label,
            "seed": seed,
            "dataset": dataset_identity(experiment),
            "compositions": list(names),
            "shard": shard,
            "shards": shards,
            "input_hashes": {role: [r.config["hash"] for r in runs] for role, runs in inputs.items()},
        }
        if system.module_order != "composition":  # the default stays out, so existing ids are unchanged
            config["module_order"] = system.module_order
        config.update(experiment.evaluation.identity())  # bf16 / channels_last: only when on, as module_order
        digest = config_hash(config, {"compositions": names_json})
        suffix = f"-shard{shard}of{shards}" if shards > 1 else ""
        runs.append(
            EvalRun(
                f"eval-{slug}-s{seed}{suffix}-{digest}",
                label,
                system.kind,
                seed,
                shard,
                shards,
                {**config, "hash": digest},
                {role: tuple(run.run_id for run in ins) for role, ins in inputs.items()},
                model.architecture,
                dict(model.axes),
                dict(system.roles),
            )
        )
    return runs


@functools.lru_cache(maxsize=8)
def _composition_names(compositions: tuple[tuple[str, ...], ...]) -> tuple[list[str], str]:
    """The compositions' names as an evaluation run's config lists them, and their canonical JSON."""
    names = ["-".join(c) for c in compositions]
    return names, canonical_json(names)


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
    return (
        f"python launch.py run-stage {experiment.path} --stage {run.stage} --seed {run.seed}{run.selection}"
        f"{smoke} --force"
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


def select_axes(runs: Sequence[Run], picks: Mapping[str, str], where: str = "--select") -> list[Run]:
    """The runs whose axis values match every `name=value` of `picks` (e.g. mechanisms=IAB,
    teacher.mechanisms=I, architecture=vit-cpu); an unknown axis or value is an error listing the valid ones."""
    chosen = list(runs)
    stage = runs[0].group if runs else "?"
    for name, value in picks.items():
        offered = sorted({str(run.axes[name]) for run in chosen if name in run.axes})
        if not offered:
            axes = sorted({axis for run in runs for axis in run.axes})
            raise UserError(
                f"{where} {name}={value}: stage {stage!r} has no axis {name!r}"
                + (f"; its axes: {', '.join(axes)}" if axes else "; it runs once per seed, drop --select")
            )
        chosen = [run for run in chosen if str(run.axes.get(name)) == value]
        if not chosen:
            raise UserError(f"{where} {name}={value}: stage {stage!r} runs {name} {', '.join(offered)}")
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
    select: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    evaluation: bool | None = None,
) -> Resolved:
    """Read an experiment YAML and plan its runs: the one place every command, job and sweep controller goes
    from a file to runs.

    `smoke` applies the smoke budget; `overrides` (stage parameters, from --set or a sweep agent) apply to the
    one stage in `stages`; `corruption` keeps the runs of one elemental (per-corruption stages), `select` those
    with the given axis values (`select_axes`). Evaluation runs
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
    if select:
        runs = select_axes(runs, select)
    return Resolved(experiment, runs)


def resolve_stage(
    experiment_path: str | Path,
    stage: str,
    *,
    smoke: bool = False,
    seed: int | None = None,
    corruption: str | None = None,
    select: Mapping[str, str] | None = None,
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
        select=select,
        overrides=overrides,
    )
    chosen = experiment.seeds[0] if seed is None else seed
    return Resolved(experiment, [run for run in runs if run.seed == chosen])
