"""Experiment YAML -> validated, frozen `ExperimentConfig`. Every mistake is one error naming file and key.

Schema (see experiments/demo.yaml for a commented example)::

    name, description, dataset {name, root, split_sizes, download}, architecture, seeds, output_root,
    compositions, wandb {project, entity, mode}, cluster {...}, training {common stage parameters},
    stages {NAME: {method, <parameters>, <references to other stages>, corruptions}},
    evaluation {batch_size, shards, systems {LABEL: {<role>: STAGE, ...}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from comprobust.architectures import ARCHITECTURES
from comprobust.claims_config import ClaimCriteria, load_claims
from comprobust.cluster.config import ClusterConfig
from comprobust.compositions import resolve_compositions
from comprobust.corruption_names import ELEMENTALS, corruption_name
from comprobust.errors import UserError
from comprobust.methods.specs import COMMON_PARAMS, METHODS, PARAM_TYPES, SYSTEM_ROLES
from comprobust.validation import (
    check_keys,
    check_output_folder,
    check_range,
    expect,
    load_yaml_mapping,
    suggest,
)

TOP_KEYS = (
    "name",
    "description",
    "dataset",
    "architecture",
    "seeds",
    "output_root",
    "compositions",
    "wandb",
    "cluster",
    "training",
    "stages",
    "evaluation",
    "claims",
)
WANDB_MODES = ("auto", "online", "offline", "disabled")
MODULE_ORDERS = ("composition", "reverse")  # order of a modular system's modules that share a level
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
}
OPTIMIZERS = ("sgd", "adamw")  # the choices of `optimizer` (comprobust.optim.OPTIMIZERS, which imports torch)
UNLISTED_DEFAULTS = ("optimizer", "warmup_epochs")
"""Stage parameters added after experiments had run: at their default (`COMMON_PARAMS`) they stay out of a stage's
resolved params, and so out of its runs' identities (planning hashes the params), which stay what they were. The
training loop resolves them (`StageContext.train_config`). Set to anything else, they are listed and hashed."""
MAX_LEVEL = 100
MAX_SEED = 2**32 - 1  # numpy's legacy seeding, used by some libraries, takes 32 bits


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    root: str = "data"
    split_sizes: Mapping[str, Any] | None = None
    download: bool = False


@dataclass(frozen=True)
class StageConfig:
    """One training stage: its method, fully resolved parameters, the stages it reads and its corruptions."""

    name: str
    method: str
    params: Mapping[str, Any]
    refs: Mapping[str, str] = field(default_factory=dict)
    corruptions: tuple[str, ...] = ()  # non-empty for per-corruption methods

    @property
    def needs(self) -> tuple[str, ...]:
        return tuple(self.refs.values())


@dataclass(frozen=True)
class SystemConfig:
    """A model under test, assembled from stages (e.g. Modular = backbone + modules)."""

    label: str
    kind: str
    roles: Mapping[str, str]
    module_order: str = (
        "composition"  # modular systems: same-level modules in composition order, or "reverse"
    )


@dataclass(frozen=True)
class WandbConfig:
    """Where the runs go: the W&B project (and entity), and the mode ("auto": online with credentials)."""

    project: str = "comprobust"
    entity: str | None = None
    mode: str = "auto"


@dataclass(frozen=True)
class EvaluationConfig:
    systems: tuple[SystemConfig, ...] = ()
    batch_size: int = 512
    shards: int = 1


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    path: Path
    dataset: DatasetConfig
    architecture: str  # the dataset's default network when the YAML names none
    seeds: tuple[int, ...]
    output_dir: Path
    compositions: tuple[tuple[str, ...], ...]
    wandb: WandbConfig
    cluster: ClusterConfig
    stages: Mapping[str, StageConfig]
    evaluation: EvaluationConfig
    description: str = ""
    smoke: bool = False  # at the --smoke budget (see `smoke`)
    claims: ClaimCriteria | None = None  # the paper's claims and their criteria (`comprobust.claims_config`)

    def with_stage_params(self, stage: str, overrides: Mapping[str, Any]) -> ExperimentConfig:
        """A copy with some of one stage's parameters replaced (validated like the file's own values)."""
        if stage not in self.stages:
            raise UserError(f"{self.path}: no stage {stage!r}{suggest(stage, self.stages)}")
        current = self.stages[stage]
        spec = METHODS[current.method]
        params = dict(current.params)
        for key, value in overrides.items():
            where = f"override {key}={value!r} for stage {stage!r}"
            if key not in spec.all_params:
                raise UserError(
                    f"{where}: {current.method} has no parameter {key!r}{suggest(key, spec.all_params)}"
                )
            params[key] = _check_param(key, value, where)
        params = _unlist_defaults(params, f"overrides for stage {stage!r}")
        return replace(self, stages={**self.stages, stage: replace(current, params=params)})


SMOKE_PARAMS = {
    "max_epochs": 1,
    "search_epochs": 1,
    "search_val_batches": 1,
    "levels": [0, 1],
    "warmup_epochs": 0,  # one epoch leaves no room for a warmup (only stages that set one list it)
}
SMOKE_SPLITS = {"train": 4, "valid": 1, "test": 1}
SMOKE_BATCH = 8
SMOKE_MAX_LR = 0.01  # a few steps on a handful of images at lr 0.1 can blow up BatchNorm statistics


def smoke(experiment: ExperimentConfig) -> ExperimentConfig:
    """The same experiment at a budget that runs on a CPU in about a minute: one epoch per stage, batches of at most
    8, learning rates capped at 0.01, 4/1/1 images per class, module search over levels 0 and 1, Identity + the
    elementals + every 16th longer composition; outputs under `<name>-smoke`."""
    stages = {
        name: replace(
            stage,
            params={
                **stage.params,
                **{k: v for k, v in SMOKE_PARAMS.items() if k in stage.params},
                "batch_size": min(stage.params["batch_size"], SMOKE_BATCH),
                "lr": min(stage.params["lr"], SMOKE_MAX_LR),
            },
        )
        for name, stage in experiment.stages.items()
    }
    longer = [c for c in experiment.compositions if len(c) > 1][::16]
    return replace(
        experiment,
        name=f"{experiment.name}-smoke",
        smoke=True,
        output_dir=experiment.output_dir.with_name(f"{experiment.name}-smoke"),
        dataset=replace(experiment.dataset, split_sizes=SMOKE_SPLITS),
        stages=stages,
        compositions=tuple(c for c in experiment.compositions if len(c) == 1) + tuple(longer),
        evaluation=replace(experiment.evaluation, batch_size=min(experiment.evaluation.batch_size, 256)),
    )


def load_experiment(path: str | Path, smoke_budget: bool = False) -> ExperimentConfig:
    """Read and validate an experiment YAML file (at the smoke budget if asked, see `smoke`)."""
    experiment = _load(Path(path))
    return smoke(experiment) if smoke_budget else experiment


def _load(path: Path) -> ExperimentConfig:
    raw = load_yaml_mapping(path)
    where = str(path)
    check_keys(raw, TOP_KEYS, where, required=("name", "dataset", "stages"))
    name = expect(raw["name"], str, f"{where}: name")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"{where}: name {name!r} may only contain letters, digits, '-' and '_'")
    training = raw.get("training") or {}
    check_keys(training, COMMON_PARAMS, f"{where}: training")
    stages = _load_stages(raw["stages"], training, where)
    output_root = Path(expect(raw.get("output_root", "outputs"), str, f"{where}: output_root"))
    check_output_folder(output_root / name, f"{where}: output_root", write=False)
    dataset = _load_dataset(raw["dataset"], f"{where}: dataset")
    from comprobust.data.registry import get_dataset_spec

    evaluation = _load_evaluation(raw.get("evaluation") or {}, stages, f"{where}: evaluation")
    return ExperimentConfig(
        name=name,
        path=path,
        description=expect(raw.get("description", ""), str, f"{where}: description"),
        dataset=dataset,
        # resolved here, so a run's identity names the network it really trains (not None for "the default")
        architecture=_load_architecture(raw.get("architecture"), f"{where}: architecture")
        or get_dataset_spec(dataset.name).architecture,
        seeds=_load_seeds(raw.get("seeds", [0]), f"{where}: seeds"),
        output_dir=output_root / name,
        compositions=tuple(
            _with_where(resolve_compositions, raw.get("compositions", "paper"), f"{where}: compositions")
        ),
        wandb=_load_wandb(raw.get("wandb") or {}, f"{where}: wandb"),
        cluster=ClusterConfig.from_dict(raw.get("cluster"), source=where),
        stages=stages,
        evaluation=evaluation,
        claims=load_claims(raw.get("claims"), f"{where}: claims", [s.label for s in evaluation.systems]),
    )


def _with_where(fn, value: Any, where: str) -> Any:
    try:
        return fn(value)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None


def _load_dataset(raw: Any, where: str) -> DatasetConfig:
    if isinstance(raw, str):
        raw = {"name": raw}
    from comprobust.data.registry import get_dataset_spec
    from comprobust.data.splits import resolve_split_sizes

    expect(raw, dict, where)
    check_keys(raw, ("name", "root", "split_sizes", "download"), where, required=("name",))
    config = DatasetConfig(
        name=expect(raw["name"], str, f"{where}.name"),
        root=expect(raw.get("root", "data"), str, f"{where}.root"),
        split_sizes=expect(raw.get("split_sizes"), (dict, type(None)), f"{where}.split_sizes"),
        download=expect(raw.get("download", False), bool, f"{where}.download"),
    )
    spec = _with_where(get_dataset_spec, config.name, f"{where}.name")
    try:
        resolve_split_sizes(spec, config.split_sizes)
    except UserError as err:  # its messages start with "split_sizes: "
        raise UserError(f"{where}.{err}") from None
    return config


def _load_architecture(raw: Any, where: str) -> str | None:

    arch = expect(raw, (str, type(None)), where)
    if arch is not None and arch not in ARCHITECTURES:
        raise UserError(f"{where}: unknown architecture {arch!r}{suggest(arch, ARCHITECTURES)}")
    return arch


def _load_seeds(raw: Any, where: str) -> tuple[int, ...]:
    seeds = [raw] if isinstance(raw, int) and not isinstance(raw, bool) else expect(raw, list, where)
    if not seeds:
        raise UserError(f"{where}: give at least one seed")
    seeds = [
        check_range(expect(seed, int, f"{where}[{i}]"), f"{where}[{i}]", 0, MAX_SEED)
        for i, seed in enumerate(seeds)
    ]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"{where}: seeds repeat ({seeds}); list each once")
    return tuple(seeds)


def _load_wandb(raw: Any, where: str) -> WandbConfig:
    expect(raw, dict, where)
    check_keys(raw, ("project", "entity", "mode"), where)
    mode = expect(raw.get("mode", "auto"), str, f"{where}.mode")
    if mode not in WANDB_MODES:
        raise UserError(f"{where}.mode: {mode!r} is not one of {', '.join(WANDB_MODES)}")
    return WandbConfig(
        project=expect(raw.get("project", "comprobust"), str, f"{where}.project"),
        entity=expect(raw.get("entity"), (str, type(None)), f"{where}.entity"),
        mode=mode,
    )


def _check_param(key: str, value: Any, where: str) -> Any:
    """A stage parameter of the right type, finite and within `PARAM_RANGES` (levels: distinct ints)."""
    value = expect(value, PARAM_TYPES.get(key, (object,)), where)
    if value is None:
        return value
    if key in PARAM_RANGES:
        low, high, low_open, high_open = PARAM_RANGES[key]
        check_range(value, where, low, high, low_open, high_open)
    if key == "optimizer" and value not in OPTIMIZERS:
        raise UserError(f"{where}: {value!r} is not one of {', '.join(OPTIMIZERS)}")
    if key == "levels":
        if not value:
            raise UserError(f"{where}: give at least one level, or null to search every level")
        for i, level in enumerate(value):
            check_range(expect(level, int, f"{where}[{i}]"), f"{where}[{i}]", 0, MAX_LEVEL)
        if len(set(value)) != len(value):
            raise UserError(f"{where}: levels repeat ({value}); list each once")
    return value


def _unlist_defaults(params: dict[str, Any], where: str) -> dict[str, Any]:
    """`params` without the `UNLISTED_DEFAULTS` that are at their default, once the warmup is checked against the
    schedule's length (max_epochs)."""
    warmup = params.get("warmup_epochs", 0)
    if warmup >= params["max_epochs"]:
        raise UserError(
            f"{where}: warmup_epochs {warmup} leaves no epoch for the cosine; it must be below max_epochs "
            f"({params['max_epochs']})"
        )
    return {k: v for k, v in params.items() if not (k in UNLISTED_DEFAULTS and v == COMMON_PARAMS[k])}


def _load_stages(raw: Any, training: Mapping[str, Any], where: str) -> dict[str, StageConfig]:
    expect(raw, dict, f"{where}: stages")
    if not raw:
        raise UserError(f"{where}: stages is empty; define at least one stage")
    for key, value in training.items():
        _check_param(key, value, f"{where}: training.{key}")
    stages: dict[str, StageConfig] = {}
    for name, body in raw.items():
        at = f"{where}: stages.{name}"
        expect(body, dict, at)
        if "method" not in body:
            raise UserError(f"{at}: missing required key 'method' (one of {', '.join(METHODS)})")
        method = body["method"]
        spec = METHODS.require(method, f"{at}.method")
        allowed = ["method", *spec.all_params, *spec.refs] + (["corruptions"] if spec.per_corruption else [])
        check_keys(body, allowed, at, required=tuple(spec.refs))
        params = {**spec.all_params, **training}
        params.update({k: v for k, v in body.items() if k in spec.all_params})
        if params["lr"] is None:
            raise UserError(f"{at}: missing 'lr' (set it in the stage or under training)")
        params = {k: _check_param(k, v, f"{at}.{k}") for k, v in params.items()}
        params = _unlist_defaults(params, at)
        corruptions: tuple[str, ...] = ()
        if spec.per_corruption:
            listed = expect(body.get("corruptions", list(ELEMENTALS)), list, f"{at}.corruptions")
            corruptions = tuple(_with_where(corruption_name, c, f"{at}.corruptions") for c in listed)
        stages[name] = StageConfig(name, method, params, {r: body[r] for r in spec.refs}, corruptions)
    for stage in stages.values():
        for role, target in stage.refs.items():
            at = f"{where}: stages.{stage.name}.{role}"
            if target not in stages:
                raise UserError(
                    f"{at}: names stage {target!r}, which is not defined{suggest(str(target), stages)}"
                )
            wanted = METHODS[stage.method].refs[role]
            if stages[target].method != wanted:
                raise UserError(
                    f"{at}: stage {target!r} has method {stages[target].method!r}; {role} needs a "
                    f"{wanted!r} stage"
                )
    return stages


def _load_evaluation(raw: Any, stages: Mapping[str, StageConfig], where: str) -> EvaluationConfig:
    expect(raw, dict, where)
    check_keys(raw, ("systems", "batch_size", "shards"), where)
    systems = []
    for label, roles in expect(raw.get("systems") or {}, dict, f"{where}.systems").items():
        at = f"{where}.systems.{label}"
        roles = dict(expect(roles, dict, at))
        module_order = roles.pop("module_order", None)
        kind = next((k for k, r in SYSTEM_ROLES.items() if set(r) == set(roles)), None)
        if kind is None:
            forms = "; ".join(f"{k}: {{{', '.join(r)}}}" for k, r in SYSTEM_ROLES.items())
            raise UserError(f"{at}: roles {sorted(roles)} match no kind of system; use one of {forms}")
        for role, stage in roles.items():
            if stage not in stages:
                raise UserError(f"{at}.{role}: no stage {stage!r}{suggest(str(stage), stages)}")
            if stages[stage].method not in SYSTEM_ROLES[kind][role]:
                raise UserError(
                    f"{at}.{role}: stage {stage!r} ({stages[stage].method}) cannot be a {role}; it "
                    f"needs one of {', '.join(sorted(SYSTEM_ROLES[kind][role]))}"
                )
        if module_order is not None and (kind != "modular" or module_order not in MODULE_ORDERS):
            raise UserError(
                f"{at}.module_order: {module_order!r} is not allowed; only a modular system takes it, "
                f"one of {', '.join(MODULE_ORDERS)}"
            )
        systems.append(SystemConfig(str(label), kind, roles, module_order or "composition"))
    batch_size = check_range(
        expect(raw.get("batch_size", 512), int, f"{where}.batch_size"), f"{where}.batch_size", 1, 1_000_000
    )
    shards = check_range(expect(raw.get("shards", 1), int, f"{where}.shards"), f"{where}.shards", 1, 10_000)
    return EvaluationConfig(tuple(systems), int(batch_size), int(shards))
