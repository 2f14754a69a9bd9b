"""Validation of a sweep file before anything runs: the `sweeps` engine's JSON schema, one trial suggestion, the
command, the metric, and every parameter (name and values) against the stage's method. Every problem is one
`UserError` naming the file and the key."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comprobust.errors import UserError
from comprobust.stage_config import EXECUTION_PARAMS
from comprobust.sweeps.command import StageTarget, parse_command
from comprobust.sweeps.engine import plain, seeded, sweeps_engine
from comprobust.validation import check_keys, load_yaml_mapping, parse_overrides, suggest

_COMMON_METRICS = ("best_epoch", "epoch")


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


def validate_sweep(
    config: dict[str, Any],
    where: str = "<sweep>",
    path: Path | None = None,
    require_stage: bool = True,
    workdir: Path | None = None,
) -> SweepSpec:
    """Validate a sweep config (schema, engine, command, metric, parameters against the stage's method)."""
    check_schema(config, where)
    target = parse_command(config, where, require_stage=require_stage)
    spec = SweepSpec(Path(path or where), config, target)
    if target is not None:
        from comprobust.planning import resolve

        experiment_path = Path(workdir or ".") / target.experiment
        try:
            spec.experiment = resolve(experiment_path, smoke=target.smoke).experiment
        except UserError as err:
            raise UserError(f"{where}: command names experiment {target.experiment}: {err}") from None
        check_parameters(config, spec.experiment, target, where)
        _check_project(config, spec.experiment, where)
    return spec


def _check_project(config: dict[str, Any], experiment: Any, where: str) -> None:
    """The sweep's runs must land in the experiment's W&B project, where `launch.py report` reads them: under
    `wandb agent`, wandb takes the project from the sweep, not from `wandb.init`. A missing `project:` is
    filled in from the experiment; a different one is an error."""
    project = experiment.wandb.project
    given = config.setdefault("project", project)
    if given != project:
        raise UserError(
            f"{where}: project {given!r} differs from the experiment's wandb.project {project!r}; "
            f"its runs would land where `launch.py report` does not look: set project: {project}"
        )


def check_schema(config: dict[str, Any], where: str) -> None:
    """The `sweeps` engine's JSON schema and its own checks, then one trial suggestion."""
    from jsonschema.exceptions import best_match

    engine = sweeps_engine()
    from sweeps.config.schema import sweep_config_jsonschema as schema
    from sweeps.config.schema import validator

    check_keys(config, schema["properties"], where)
    parameters = config.get("parameters")
    for name, spec in parameters.items() if isinstance(parameters, dict) else ():
        _check_parameter_spec(spec, f"parameters.{name}", where)
    stopping = config.get("early_terminate")
    if (
        isinstance(stopping, dict)
        and stopping.get("type") == "hyperband"
        and not ("min_iter" in stopping or {"max_iter", "s"} <= set(stopping))
    ):
        raise UserError(
            f"{where}: early_terminate: hyperband needs min_iter (e.g. {{type: hyperband, min_iter: 2, "
            "eta: 2}}), or max_iter and s"
        )
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
        raise UserError(
            f"{where}: method {config['method']!r} needs a custom scheduler on a W&B server; use grid, "
            "random or bayes"
        )
    if (config["method"] == "bayes" or "early_terminate" in config) and "metric" not in config:
        raise UserError(
            f"{where}: {'bayes' if config['method'] == 'bayes' else 'early_terminate'} needs a metric: "
            "add metric: {name: val_acc, goal: maximize}"
        )
    try:
        with seeded(0):
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
        raise UserError(
            f"{where}: {at} must be a mapping such as {{value: 0.1}}, {{values: [0.1, 1]}} or "
            f"{{distribution: uniform, min: 0, max: 1}}, got {spec!r}"
        )
    if "parameters" in spec:
        for name, sub in (spec["parameters"] or {}).items():
            _check_parameter_spec(sub, f"{at}.parameters.{name}", where)
        return
    names = _distribution_names()
    distribution = spec.get("distribution")
    if distribution is not None and distribution not in names:
        raise UserError(
            f"{where}: {at}.distribution: unknown distribution {distribution!r}"
            f"{suggest(str(distribution), sorted(names))}"
        )
    if distribution is not None:
        import jsonschema

        definition = names[distribution]
        errors = sorted(jsonschema.Draft7Validator(definition).iter_errors(spec), key=lambda e: list(e.path))
        if errors:
            key = ".".join(str(p) for p in errors[0].absolute_path)
            raise UserError(
                f"{where}: {at}{'.' + key if key else ''}: {errors[0].message} (distribution "
                f"{distribution} takes {', '.join(sorted(definition.get('properties', {})))})"
            )
    elif not {"value", "values"} & set(spec) and not {"min", "max"} <= set(spec):
        known = ["value", "values", "distribution", "min", "max", "parameters", "probabilities"]
        odd = [k for k in spec if k not in known]
        hint = ""
        if odd:
            close = difflib.get_close_matches(str(odd[0]), known, n=1)
            hint = f"; unknown key {odd[0]!r}" + (f", did you mean {close[0]!r}?" if close else "")
        raise UserError(f"{where}: {at}: give value, values, a distribution or parameters{hint}")


def check_parameters(config: Mapping[str, Any], experiment: Any, target: StageTarget, where: str) -> None:
    """Every sweep parameter is a parameter of the stage's method, with values the stage accepts."""
    from comprobust.methods.specs import METHODS

    if target.stage not in experiment.stages:
        raise UserError(
            f"{where}: command runs stage {target.stage!r}, which {target.experiment} does not define"
            f"{suggest(target.stage, experiment.stages)}"
        )
    stage = experiment.stages[target.stage]
    if target.seed is not None and target.seed not in experiment.seeds:
        raise UserError(
            f"{where}: command: --seed {target.seed} is not among {target.experiment}'s seeds "
            f"{list(experiment.seeds)}"
        )
    if target.corruption is not None or target.select:
        from comprobust.planning import plan, select_axes, select_corruption

        runs = plan(experiment, stages=[target.stage], seeds=[experiment.seeds[0]])
        if target.corruption is not None:
            runs = select_corruption(runs, target.corruption, where=f"{where}: command: --corruption")
        select_axes(runs, target.select, where=f"{where}: command: --select")
    allowed = METHODS[stage.method].all_params
    parameters = config.get("parameters") or {}
    for name, spec in parameters.items():
        if name not in allowed:
            raise UserError(
                f"{where}: parameters.{name}: not a parameter of stage {target.stage!r} (method "
                f"{stage.method}) in {target.experiment}{suggest(str(name), allowed)}"
            )
        if name in EXECUTION_PARAMS:
            raise UserError(
                f"{where}: parameters.{name}: {name} changes how a run is executed, not its result or its id "
                "(the same batches either way), so its values would be one run; set it in the experiment file "
                f"or the command (--{name}=1) instead"
            )
        if isinstance(spec, dict) and "parameters" in spec:
            raise UserError(
                f"{where}: parameters.{name}: nested parameters are passed as one dict, but {name} "
                "of run-stage takes a single value"
            )
    for name, value in target.overrides.items():
        _check_value(experiment, target.stage, name, value, where, f"command: --{name}")
    for name, values in _candidate_values(config).items():
        for value in values:
            _check_value(experiment, target.stage, name, value, where, f"parameters.{name}")
    metric = config.get("metric")
    if metric:
        known = METHODS[stage.method].metrics + _COMMON_METRICS
        if metric["name"] not in known and not metric["name"].startswith(tuple(f"{k}/" for k in known)):
            raise UserError(
                f"{where}: metric.name {metric['name']!r} is not reported by stage {target.stage!r} "
                f"({stage.method}){suggest(metric['name'], known)}"
            )


def _check_value(experiment: Any, stage: str, name: str, value: Any, where: str, at: str) -> None:
    value = plain(value)
    try:
        experiment.with_stage_params(stage, {name: value})
    except UserError as err:
        raise UserError(f"{where}: {at}: value {value!r} is refused: {str(err).split(': ', 1)[-1]}") from None
    flag = f"--{name}={value}"  # what the agent passes (wandb's create_sweep_command_args)
    parsed = parse_overrides([flag], where="argument")[name]
    if parsed != value and not (
        isinstance(value, (int, float))
        and isinstance(parsed, (int, float))
        and not isinstance(parsed, bool)
        and float(parsed) == float(value)
    ):
        raise UserError(
            f"{where}: {at}: value {value!r} reaches run-stage as {flag}, which it reads as "
            f"{parsed!r}; pick a value that survives that round trip"
        )


def _candidate_values(config: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Values each parameter may take: its value/values, and a few engine draws for distributions."""
    out: dict[str, list[Any]] = {}
    drawn: list[dict[str, Any]] = []
    sampled = {
        k: v
        for k, v in (config.get("parameters") or {}).items()
        if isinstance(v, dict) and "value" not in v and "values" not in v
    }
    if sampled:
        engine = sweeps_engine()
        with seeded(0):
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
