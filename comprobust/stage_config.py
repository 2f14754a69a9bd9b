"""The `stages:` block of an experiment: each stage's method, its parameters (typed, in range, one of their
choices), the stages it reads, and its run axes, each mistake one error naming file and key.

A stage runs once per seed, and once per value of each of its axes (their Cartesian product): the parameters its
method lists in `MethodSpec.axes` when given as a YAML list (`mechanisms: [I, IAB]`, `loss: [kd, jacobian]`), its
`architecture` when it names several, and its `corruptions` for a per-corruption method. A run holds one value of
each, so a one-value list and the plain value plan the same run.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from comprobust.architectures import ARCHITECTURES
from comprobust.corruption_names import ELEMENTALS, corruption_name
from comprobust.distill.names import DIVERGENCES, HEAD_MODES, LOSS_NAMES, PAIR_MODES
from comprobust.errors import UserError
from comprobust.methods.specs import (
    ARCHITECTURE_AXIS,
    COMMON_PARAMS,
    CORRUPTION,
    CUE,
    CUE_PARAMS,
    METHODS,
    PARAM_TYPES,
    MethodSpec,
)
from comprobust.validation import check_keys, check_range, expect, expect_switch, suggest

if TYPE_CHECKING:
    from comprobust.data.cues import CueModel

PARAM_RANGES: Mapping[str, tuple[float, float, bool, bool]] = {
    # name: (low, high, low excluded, high excluded): beyond these a value is a typo, not an experiment
    "lr": (0.0, 10.0, True, False),
    "max_epochs": (1, 100_000, False, False),
    "batch_size": (1, 65_536, False, False),
    "momentum": (0.0, 1.0, False, True),
    "weight_decay": (0.0, 1.0, False, True),
    "patience": (1, 100_000, False, False),
    "weight": (0.0, 1_000.0, False, False),
    "temperature": (0.0, 100.0, True, False),
    "search_epochs": (1, 100_000, False, False),
    "search_val_batches": (1, 1_000_000, False, False),
    "warmup_epochs": (0, 100_000, False, False),
    "min_improvement": (0.0, 0.5, False, False),
    "alpha": (0.0, 1_000.0, False, False),
    "top_k": (1, 100_000, False, False),
    "contrast_temperature": (0.0, 100.0, True, False),
    "contrast_eps": (0.0, 1_000_000.0, True, False),
    "crd_dim": (1, 65_536, False, False),
}
OPTIMIZERS = ("sgd", "adamw")  # the choices of `optimizer` (comprobust.optim.OPTIMIZERS, which imports torch)
CHOICES: Mapping[str, tuple[str, ...]] = {
    "optimizer": OPTIMIZERS,
    "loss": LOSS_NAMES,
    "kd_divergence": DIVERGENCES,
    "crd_pairs": PAIR_MODES,
    "crd_heads": HEAD_MODES,
}
UNLISTED_DEFAULTS = ("optimizer", "warmup_epochs", "bf16", "channels_last", "min_improvement")
"""Stage parameters added after experiments had run: at their default (`COMMON_PARAMS`) they stay out of a stage's
resolved params, and so out of its runs' identities (planning hashes the params), which stay what they were. The
training loop resolves them (`StageContext.train_config`). Set to anything else, they are listed and hashed."""
EXECUTION_PARAMS = ("loader_workers",)
"""Stage parameters that change how a run is executed, not what it computes: checked like the others, then never kept
in a stage's params (set or not), so never in its runs' identities; `StageConfig` holds them as fields, which the
stage context reads. `loader_workers: 1` prepares the training batches in one background thread
(`comprobust.data.prefetch`): the batches, and so the weights, are bit-identical to those of 0."""
LOADER_WORKERS = (0, 1)
MAX_LEVEL = 100


@dataclass(frozen=True)
class StageConfig:
    """One training stage: its method, fully resolved parameters (a listed axis parameter holds a tuple of its
    values), the stages it reads, its corruptions (per-corruption methods) and its architectures (when it names
    its own; else the experiment's)."""

    name: str
    method: str
    params: Mapping[str, Any]
    refs: Mapping[str, str] = field(default_factory=dict)
    corruptions: tuple[str, ...] = ()  # non-empty for per-corruption methods
    architectures: tuple[str, ...] = ()
    loader_workers: int = 0  # an EXECUTION_PARAMS: never in `params`

    @property
    def spec(self) -> MethodSpec:
        return METHODS[self.method]

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(self.refs.values())

    def axes(self, default_architecture: str) -> dict[str, tuple[Any, ...]]:
        """Each run axis of the stage with its values, in a fixed order: the method's axis parameters, then the
        architecture (its values listed only when the stage names its own). Corruptions are not among them."""
        axes = {name: _values(self.params[name]) for name in self.spec.axes if name in self.params}
        axes[ARCHITECTURE_AXIS] = self.architectures or (default_architecture,)
        return axes

    def fans_out(self, axis: str) -> bool:
        """Whether the stage runs once per value of `axis` (it lists several)."""
        if axis == ARCHITECTURE_AXIS:
            return len(self.architectures) > 1
        return axis in self.params and len(_values(self.params[axis])) > 1


def _values(value: Any) -> tuple[Any, ...]:
    return value if isinstance(value, tuple) else (value,)


def check_param(key: str, value: Any, where: str, cues: CueModel | None = None) -> Any:
    """A stage parameter of the right type, finite, within `PARAM_RANGES`, one of its `CHOICES`; `levels`
    distinct ints; `mechanisms` and `conditions` in the canonical names of the dataset's cue model."""
    if PARAM_TYPES.get(key) == (bool,):
        expect_switch(value, key, where)
    if key == "loader_workers" and (type(value) is not int or value not in LOADER_WORKERS):
        raise UserError(
            f"{where}: expected 0 or 1, got {value!r}; write loader_workers: 1 to prepare the training batches in "
            "one background thread (the same batches), or 0 (the default) to prepare them between steps"
        )
    value = expect(value, PARAM_TYPES.get(key, (object,)), where)
    if value is None and not (cues is not None and key == "mechanisms"):
        return value
    if key in PARAM_RANGES:
        low, high, low_open, high_open = PARAM_RANGES[key]
        check_range(value, where, low, high, low_open, high_open)
    if key in CHOICES and value not in CHOICES[key]:
        close = difflib.get_close_matches(value, CHOICES[key], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UserError(f"{where}: {value!r} is not one of {', '.join(CHOICES[key])}{hint}")
    if key == "levels":
        if not value:
            raise UserError(f"{where}: give at least one level, or null to search every level")
        for i, level in enumerate(value):
            check_range(expect(level, int, f"{where}[{i}]"), f"{where}[{i}]", 0, MAX_LEVEL)
        if len(set(value)) != len(value):
            raise UserError(f"{where}: levels repeat ({value}); list each once")
    if cues is not None and key == "mechanisms":
        every_cue = "".join(m.letter for m in cues.mechanisms)  # the default: the dataset's natural condition
        return _with_where(lambda v: cues.parse(every_cue if v is None else v).name, value, where)
    if cues is not None and key == "conditions":
        return [c.name for c in _with_where(cues.conditions, value, where)]
    return value


def check_stage_param(spec: MethodSpec, key: str, value: Any, where: str, cues: CueModel | None) -> Any:
    """`check_param`, and for one of the method's axes also a list of values: a tuple of distinct checked values
    (one run each), or the value alone when the list has one."""
    if key not in spec.axes or not isinstance(value, list):
        return check_param(key, value, where, cues)
    if not value:
        raise UserError(f"{where}: the list is empty; give at least one value")
    values = tuple(check_param(key, v, f"{where}[{i}]", cues) for i, v in enumerate(value))
    repeated = sorted({str(v) for v in values if values.count(v) > 1})
    if repeated:
        raise UserError(f"{where}: {', '.join(repeated)} listed twice; list each value once")
    return values if len(values) > 1 else values[0]


def unlist_defaults(params: dict[str, Any], where: str) -> dict[str, Any]:
    """`params` without the `UNLISTED_DEFAULTS` that are at their default, once the warmup is checked against the
    schedule's length (max_epochs)."""
    warmup = params.get("warmup_epochs", 0)
    if warmup >= params["max_epochs"]:
        raise UserError(
            f"{where}: warmup_epochs {warmup} leaves no epoch for the cosine; it must be below max_epochs "
            f"({params['max_epochs']})"
        )
    return {k: v for k, v in params.items() if not (k in UNLISTED_DEFAULTS and v == COMMON_PARAMS[k])}


def with_params(stage: StageConfig, overrides: Mapping[str, Any], cues: CueModel | None) -> StageConfig:
    """`stage` with some parameters replaced (from --set, or a sweep agent), validated like the file's own."""
    params = dict(stage.params)
    for key, value in overrides.items():
        at = f"override {key}={value!r} for stage {stage.name!r}"
        if key not in stage.spec.all_params or (cues is None and key in CUE_PARAMS):
            raise UserError(
                f"{at}: {stage.method} has no parameter {key!r}{suggest(key, stage.spec.all_params)}"
            )
        params[key] = check_stage_param(stage.spec, key, value, at, cues)
    params, workers = _execution(params, stage.loader_workers)
    return replace(
        stage, params=unlist_defaults(params, f"overrides for stage {stage.name!r}"), loader_workers=workers
    )


def _execution(params: dict[str, Any], loader_workers: int) -> tuple[dict[str, Any], int]:
    """`params` without the `EXECUTION_PARAMS`, and the stage's `loader_workers` (`loader_workers` when unset)."""
    workers = params.pop("loader_workers", loader_workers)
    return params, workers


def load_stages(
    raw: Any, training: Mapping[str, Any], where: str, dataset: str, cues: CueModel | None
) -> dict[str, StageConfig]:
    """The `stages:` block (with the `training:` defaults) of the file `where`, for `dataset` (whose cue model
    `cues` is None for a corruption dataset)."""
    expect(raw, dict, f"{where}: stages")
    if not raw:
        raise UserError(f"{where}: stages is empty; define at least one stage")
    for key, value in training.items():
        check_param(key, value, f"{where}: training.{key}")
    stages = {
        name: _load_stage(name, body, training, f"{where}: stages.{name}", dataset, cues)
        for name, body in raw.items()
    }
    for stage in stages.values():
        for role, target in stage.refs.items():
            at = f"{where}: stages.{stage.name}.{role}"
            if target not in stages:
                raise UserError(
                    f"{at}: names stage {target!r}, which is not defined{suggest(str(target), stages)}"
                )
            wanted = stage.spec.accepts(role)
            if stages[target].method not in wanted:
                raise UserError(
                    f"{at}: stage {target!r} has method {stages[target].method!r}; {role} needs a "
                    f"{' or '.join(repr(w) for w in wanted)} stage"
                )
    return stages


def _load_stage(
    name: str, body: Any, training: Mapping[str, Any], at: str, dataset: str, cues: CueModel | None
) -> StageConfig:
    expect(body, dict, at)
    if "method" not in body:
        raise UserError(f"{at}: missing required key 'method' (one of {', '.join(METHODS)})")
    spec = METHODS.require(body["method"], f"{at}.method")
    if CUE not in spec.datasets and cues is not None:
        raise UserError(
            f"{at}.method: {spec.name} trains on corruptions, and dataset {dataset!r} is a cue dataset "
            "(conditions, not corruptions); use supervised or distill"
        )
    if CORRUPTION not in spec.datasets and cues is None:
        raise UserError(
            f"{at}.method: {spec.name} trains on the conditions of a cue dataset, and dataset {dataset!r} has "
            "none; use a cue dataset (e.g. dominoes) or a corruption method (erm, contrastive, ...)"
        )
    allowed = ["method", ARCHITECTURE_AXIS, *spec.all_params, *spec.refs]
    check_keys(
        body, allowed + (["corruptions"] if spec.per_corruption else []), at, required=tuple(spec.refs)
    )
    if cues is None:  # a corruption dataset: a method for both kinds leaves its cue parameters out
        for key in CUE_PARAMS:
            if key in body:
                raise UserError(f"{at}.{key}: dataset {dataset!r} has no cues (conditions); drop {key}")
    params = {**spec.all_params, **{k: v for k, v in training.items() if k in spec.all_params}}
    if cues is None:
        params = {k: v for k, v in params.items() if k not in CUE_PARAMS}
    params.update({k: v for k, v in body.items() if k in spec.all_params})
    if params["lr"] is None:
        raise UserError(f"{at}: missing 'lr' (set it in the stage or under training)")
    params = {k: check_stage_param(spec, k, v, f"{at}.{k}", cues) for k, v in params.items()}
    params, workers = _execution(params, COMMON_PARAMS["loader_workers"])
    corruptions: tuple[str, ...] = ()
    if spec.per_corruption:
        listed = expect(body.get("corruptions", list(ELEMENTALS)), list, f"{at}.corruptions")
        corruptions = tuple(_with_where(corruption_name, c, f"{at}.corruptions") for c in listed)
    return StageConfig(
        name,
        spec.name,
        unlist_defaults(params, at),
        {r: body[r] for r in spec.refs},
        corruptions,
        _load_architectures(body.get(ARCHITECTURE_AXIS), f"{at}.{ARCHITECTURE_AXIS}"),
        workers,
    )


def _load_architectures(raw: Any, where: str) -> tuple[str, ...]:
    """A stage's own architectures: none (the experiment's), one, or a list (one run each)."""
    if raw is None:
        return ()
    listed = raw if isinstance(raw, list) else [raw]
    if not listed:
        raise UserError(f"{where}: the list is empty; name at least one architecture or drop the key")
    for i, arch in enumerate(listed):
        at = f"{where}[{i}]" if isinstance(raw, list) else where
        expect(arch, str, at)
        if arch not in ARCHITECTURES:
            raise UserError(f"{at}: unknown architecture {arch!r}{suggest(arch, ARCHITECTURES)}")
    if len(set(listed)) != len(listed):
        raise UserError(f"{where}: architectures repeat ({listed}); list each once")
    return tuple(listed)


def _with_where(fn, value: Any, where: str) -> Any:
    try:
        return fn(value)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
