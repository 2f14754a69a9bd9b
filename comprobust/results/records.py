"""What both run stores know about one run (`RunRecord`), the frames' columns, and small readers they
share."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from comprobust.errors import UserError
from comprobust.runs import method_label

EVALUATE = "evaluate"
COMPOSITIONS_TABLE = "compositions"
INVARIANCE_TABLE = "invariance"
CONDITIONS_TABLE = "conditions"  # per test condition, logged by the runs of cue-dataset stages
CUE_CONFLICT_TABLE = "cue_conflict"  # shape-bias decisions on cue-conflict conditions
RESULT_TABLES = (COMPOSITIONS_TABLE, INVARIANCE_TABLE, CONDITIONS_TABLE, CUE_CONFLICT_TABLE)
"""The W&B tables both stores read back."""
METHOD_ORDER = ("ERM", "Contrastive", "Modular", "ImgSpace-Identity", "ImgSpace-Joint")
RESULT_COLUMNS = [
    "method",
    "system",
    "dataset",
    "seed",
    "composition",
    "abbreviation",
    "length",
    "accuracy",
    "loss",
    "images",
    "run_id",
    "shard",
]
INVARIANCE_COLUMNS = [
    "method",
    "system",
    "dataset",
    "seed",
    "composition",
    "length",
    "elemental_invariance",
    "composition_invariance",
    "units",
    "accuracy",
    "source",
]
RUN_COLUMNS = [
    "run_id",
    "name",
    "project",
    "entity",
    "group",
    "job_type",
    "kind",
    "state",
    "method",
    "system",
    "dataset",
    "seed",
    "shard",
    "shards",
    "created",
    "location",
]


def method_order(labels: Iterable[str]) -> list[str]:
    """Method labels in the paper's order (ERM, Contrastive, Modular, ImgSpace), others after, sorted."""
    labels = list(dict.fromkeys(labels))
    known = [m for m in METHOD_ORDER if m in labels]
    return known + sorted(m for m in labels if m not in METHOD_ORDER)


@dataclass
class RunRecord:
    """What both backends know about one run, before it becomes frame rows."""

    run_id: str
    name: str
    project: str
    entity: str
    group: str
    job_type: str
    state: str  # finished | failed | crashed | killed | running | ...
    created: float  # seconds since the epoch (NaN when unknown)
    location: str  # run folder or run URL
    config: dict[str, Any]
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    stats: str = ""  # local path (offline) or artifact name (online) of the activation statistics

    @property
    def is_evaluation(self) -> bool:
        return self.job_type == EVALUATE and self.config.get("kind", EVALUATE) == EVALUATE

    @property
    def method(self) -> str:
        return method_label(self.config)

    @property
    def system(self) -> str:
        return str(self.config.get("system") or self.summary.get("system") or "")

    @property
    def dataset(self) -> str:
        dataset = self.config.get("dataset")
        return str(dataset.get("name", "")) if isinstance(dataset, dict) else str(dataset or "")


def scalars(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary without media references (tables, images): numbers, strings and plain nested values."""
    out = {}
    for key, value in summary.items():
        if key.startswith("_") or (isinstance(value, Mapping) and "_type" in value):
            continue
        out[key] = scalars(value) if isinstance(value, Mapping) else value
    return out


def read_table(path: Path) -> pd.DataFrame:
    """A `wandb.Table` JSON file ({"columns": [...], "data": [[...], ...]}) as a DataFrame."""
    try:
        payload = json.loads(Path(path).read_text())
        return pd.DataFrame(payload["data"], columns=payload["columns"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{path}: unreadable W&B table file ({err}); re-run the evaluation that wrote it"
        ) from err


def sort_time(created: float) -> float:
    return 0.0 if math.isnan(created) else created  # unknown times sort first


def timestamp(value: Any) -> float:
    if value in (None, ""):
        return float("nan")
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return float("nan")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()
