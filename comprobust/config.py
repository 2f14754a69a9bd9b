"""Experiment YAML -> validated, frozen `ExperimentConfig`. Every mistake is one error naming file and key.

Schema (see experiments/demo.yaml for a commented example)::

    name, description, dataset {name, root, split_sizes, download}, architecture, seeds, output_root,
    compositions, wandb {project, entity, mode}, cluster {...}, training {common stage parameters},
    stages {NAME: {method, <parameters>, <references to other stages>, corruptions}},
    evaluation {batch_size, shards, systems {LABEL: {<role>: STAGE, ...}}}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from comprobust.architectures import ARCHITECTURES
from comprobust.claims_config import ClaimCriteria, load_claims
from comprobust.cluster.config import ClusterConfig
from comprobust.compositions import resolve_compositions
from comprobust.errors import UserError
from comprobust.methods.specs import COMMON_PARAMS, SYSTEM_ROLES
from comprobust.stage_config import StageConfig, load_stages, with_params
from comprobust.validation import (
    check_keys,
    check_output_folder,
    check_range,
    expect,
    expect_switch,
    load_yaml_mapping,
    suggest,
)

if TYPE_CHECKING:
    from comprobust.data.cues import CueModel

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
MAX_SEED = 2**32 - 1  # numpy's legacy seeding, used by some libraries, takes 32 bits


@dataclass(frozen=True)
class DatasetConfig:
    name: str
    root: str = "data"
    split_sizes: Mapping[str, Any] | None = None
    download: bool = False


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
    bf16: bool = False  # bf16 autocast of the forward passes (`comprobust.device.Precision`)
    channels_last: bool = False  # inputs (and convolutions) in NHWC

    def identity(self) -> dict[str, bool]:
        """What an evaluation run's identity adds for its precision: the keys set to something else than their
        default (off), so that runs planned before they existed keep their ids, and a bf16 run is another run."""
        return {key: True for key in PRECISION_KEYS if getattr(self, key)}


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
        changed = with_params(self.stages[stage], overrides, cue_model(self.dataset.name))
        return replace(self, stages={**self.stages, stage: changed})


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
    dataset = _load_dataset(raw["dataset"], f"{where}: dataset")
    training = raw.get("training") or {}
    check_keys(training, COMMON_PARAMS, f"{where}: training")
    cues = cue_model(dataset.name)
    stages = load_stages(raw["stages"], training, where, dataset.name, cues)
    output_root = Path(expect(raw.get("output_root", "outputs"), str, f"{where}: output_root"))
    check_output_folder(output_root / name, f"{where}: output_root", write=False)
    from comprobust.data.registry import get_dataset_spec

    evaluation = _load_evaluation(raw.get("evaluation") or {}, stages, f"{where}: evaluation")
    if evaluation.systems and cues is not None:
        raise UserError(
            f"{where}: evaluation.systems test compositions of corruptions, and dataset {dataset.name!r} is a cue "
            "dataset: its runs score themselves under each of their `conditions`; drop the evaluation block"
        )
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


def cue_model(dataset: str) -> CueModel | None:
    """The cue model (mechanisms, condition sets) of a cue dataset, or None for a corruption dataset (whose
    configs then import no cue renderer, nor numpy)."""
    from comprobust.data.registry import is_cue_dataset

    if not is_cue_dataset(dataset):
        return None
    from comprobust.data.cue_datasets import CUE_DATASETS

    return CUE_DATASETS.require(dataset).model


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


PRECISION_KEYS = ("bf16", "channels_last")
"""The evaluation's (and every stage's) precision switches, off by default (`comprobust.device.Precision`)."""


def _load_evaluation(raw: Any, stages: Mapping[str, StageConfig], where: str) -> EvaluationConfig:
    expect(raw, dict, where)
    check_keys(raw, ("systems", "batch_size", "shards", *PRECISION_KEYS), where)
    precision = {key: expect_switch(raw.get(key, False), key, f"{where}.{key}") for key in PRECISION_KEYS}
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
    return EvaluationConfig(tuple(systems), int(batch_size), int(shards), **precision)
