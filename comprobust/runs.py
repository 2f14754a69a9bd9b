"""A run of an experiment as every layer sees it: what it is (`TrainRun`, `EvalRun`), where its files live
(`RunPaths`), the names of the artifacts it logs, and the W&B config that identifies it.

Nothing here reads a YAML file or plans anything (that is `comprobust.planning.resolve`); these are the values
the planner makes and everyone else passes around. Light: no torch, no wandb.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

DONE_FILE = "done.json"
FAILED_FILE = "failed.json"
LOCK_FILE = "running.lock"
MODEL_FILE = "model.pt"
MODEL_PREFIX = "model-"
ACTIVATIONS_PREFIX = "activations-"


def model_artifact(run_id: str) -> str:
    """The W&B artifact name of a training run's exported model."""
    return f"{MODEL_PREFIX}{run_id}"


def activations_artifact(run_id: str) -> str:
    """The W&B artifact name of an evaluation run's activation statistics."""
    return f"{ACTIVATIONS_PREFIX}{run_id}"


def model_input(run_id: str) -> str:
    """How a downstream run references a training run's model: its best version."""
    return f"{model_artifact(run_id)}:best"


def run_id_of_model(ref: str) -> str:
    """The training run id behind a model reference ("model-<run id>:<alias>")."""
    return ref.removeprefix(MODEL_PREFIX).split(":")[0]


@dataclass(frozen=True)
class TrainRun:
    """One run of a training stage: (stage, seed[, corruption])."""

    run_id: str
    stage: str
    method: str
    seed: int
    corruption: str | None
    config: Mapping[str, Any]  # everything that determines the run's result (its hash names the run)
    inputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # role -> upstream training run ids
    architecture: str = ""
    axes: Mapping[str, Any] = field(default_factory=dict)  # its values of the stage's axes, and its inputs'
    kind: ClassVar[str] = "train"

    @property
    def group(self) -> str:
        """The job array the run belongs to: its stage."""
        return self.stage

    @property
    def job_type(self) -> str:
        return self.stage

    @property
    def artifact(self) -> str:
        return model_artifact(self.run_id)

    @property
    def upstream(self) -> tuple[str, ...]:
        return tuple(run_id for ids in self.inputs.values() for run_id in ids)

    @property
    def tags(self) -> list[str]:
        return [self.method, self.kind, *axis_tags(self.axes)]

    @property
    def variant(self) -> str:
        """What tells the run apart within its stage and seed: its axis values and its corruption, e.g.
        "mechanisms=IAB,loss=kd" or "Contrast" ("" for a stage's only run)."""
        return ",".join([*axis_tags(self.axes), *([self.corruption] if self.corruption else [])])

    @property
    def selection(self) -> str:
        """The run-stage arguments that pick this run among its stage's (besides --seed)."""
        picks = [f" --select {name}={value}" for name, value in self.axes.items()]
        return "".join(picks) + (f" --corruption {self.corruption}" if self.corruption else "")


@dataclass(frozen=True)
class EvalRun:
    """One evaluation of a system (a label like "Modular", of a kind like "modular") on one seed and shard."""

    run_id: str
    label: str
    system: str  # monolithic | modular | imgspace
    seed: int
    shard: int
    shards: int
    config: Mapping[str, Any]
    inputs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    architecture: str = ""
    axes: Mapping[str, Any] = field(default_factory=dict)  # the axes of the run of its one-model role
    roles: Mapping[str, str] = field(default_factory=dict)  # role -> the stage that fills it
    kind: ClassVar[str] = "evaluate"
    corruption: ClassVar[None] = None

    @property
    def group(self) -> str:
        """The job array the run belongs to: the evaluated system's label."""
        return self.label

    @property
    def job_type(self) -> str:
        return self.kind

    @property
    def artifact(self) -> str:
        return activations_artifact(self.run_id)

    @property
    def upstream(self) -> tuple[str, ...]:
        return tuple(run_id for ids in self.inputs.values() for run_id in ids)

    @property
    def module_order(self) -> str:
        return str(self.config.get("module_order", "composition"))

    @property
    def tags(self) -> list[str]:
        return [self.system, self.kind, *axis_tags(self.axes)]

    @property
    def variant(self) -> str:
        """The axis values of the model it evaluates ("" for a system's only model)."""
        return ",".join(axis_tags(self.axes))


Run = TrainRun | EvalRun


def axis_tags(axes: Mapping[str, Any]) -> list[str]:
    """W&B tags of a run's axis values: `mechanisms=IAB`, `teacher.mechanisms=I`, `architecture=vit-cpu`."""
    return [f"{name}={value}" for name, value in axes.items()]


@dataclass(frozen=True)
class RunPaths:
    """The files of one run under `<output_dir>/runs/<run id>/`."""

    folder: Path

    @classmethod
    def of(cls, output_dir: Path, run: Run) -> RunPaths:
        return cls(Path(output_dir) / "runs" / run.run_id)

    @property
    def done(self) -> Path:
        """Written atomically, and only when the run has finished."""
        return self.folder / DONE_FILE

    @property
    def failed(self) -> Path:
        """The error and traceback of the run's last failed attempt."""
        return self.folder / FAILED_FILE

    @property
    def lock(self) -> Path:
        return self.folder / LOCK_FILE

    @property
    def model(self) -> Path:
        """A training run's exported model (what downstream runs load)."""
        return self.folder / MODEL_FILE


@dataclass(frozen=True)
class DoneRecord:
    """What a finished run leaves in its `done.json`: who it was, how long it took, its metrics (the W&B summary's
    numbers) and what it made (`outputs`: a training run's exported model, an evaluation's rows, invariance scores
    and statistics file).

    On disk the outputs sit beside the other keys (a flat JSON object), as every version has written it."""

    run_id: str
    kind: str
    group: str
    seed: int
    corruption: str | None
    seconds: float
    metrics: Mapping[str, Any]
    outputs: Mapping[str, Any] = field(default_factory=dict)
    planned: Mapping[str, Any] = field(default_factory=dict)  # the planned run, as planned

    IDENTITY: ClassVar[tuple[str, ...]] = (
        "run_id",
        "kind",
        "stage",
        "seed",
        "corruption",
        "seconds",
        "planned",
    )

    @classmethod
    def of(
        cls, run: Run, seconds: float, metrics: Mapping[str, Any], outputs: Mapping[str, Any]
    ) -> DoneRecord:
        """The record of `run`, finished just now."""
        return cls(
            run.run_id, run.kind, run.group, run.seed, run.corruption, seconds, metrics, outputs, asdict(run)
        )

    @property
    def export(self) -> Path:
        """A training run's exported model file."""
        return Path(self.outputs["export"])

    def to_json(self) -> str:
        record = {
            "run_id": self.run_id,
            "kind": self.kind,
            "stage": self.group,
            "seed": self.seed,
            "corruption": self.corruption,
            "seconds": self.seconds,
            "metrics": dict(self.metrics),
            **self.outputs,
            "planned": dict(self.planned),
        }
        return json.dumps(record, indent=2, default=str)

    @classmethod
    def from_json(cls, text: str, run: Run) -> DoneRecord:
        """Parse a `done.json` of `run`; identity keys an older or hand-made record lacks are taken from `run`.
        Raises ValueError when the text is not a JSON object with a `metrics` object."""
        record = json.loads(text)
        if not isinstance(record, dict) or not isinstance(record.get("metrics"), dict):
            raise ValueError("not a done record (a JSON object with a 'metrics' object)")
        return cls(
            run_id=str(record.get("run_id", run.run_id)),
            kind=str(record.get("kind", run.kind)),
            group=str(record.get("stage", run.group)),
            seed=int(record.get("seed", run.seed)),
            corruption=record.get("corruption", run.corruption),
            seconds=float(record.get("seconds") or 0.0),
            metrics=record["metrics"],
            outputs={k: v for k, v in record.items() if k not in cls.IDENTITY and k != "metrics"},
            planned=record.get("planned") or {},
        )


def wandb_config(run: Run, experiment_name: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The W&B config of a run: its planned config plus who it is (and its axis values, under `axes`). The one
    place these keys are written; `comprobust.results` reads them back with `method_label`."""
    config = {
        **run.config,
        **dict(extra or {}),
        "run_id": run.run_id,
        "kind": run.kind,
        "experiment": experiment_name,
        "architecture": run.architecture,
    }
    if run.axes:
        config["axes"] = dict(run.axes)
    if isinstance(run, TrainRun):
        config["stage"] = run.stage
    else:
        config["label"] = run.label
    return config


def method_label(config: Mapping[str, Any]) -> str:
    """What a run's W&B config names it by in results: an evaluation's system label, a training run's stage."""
    key = "label" if config.get("kind") == EvalRun.kind else "stage"
    return str(config.get(key) or "")
