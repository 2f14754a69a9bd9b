"""Scoring on a cue dataset's conditions: one classifier (`accuracy_table`) or a student against its teacher
(`fidelity_table`), over every image of a split, as the `conditions` W&B table's rows plus summary keys; and, on
every condition with a cue in conflict (X), Geirhos's cue-conflict scores (`cue_conflict_table`: the `cue_conflict`
table and `bias/<cue>`, `frac/<cue>`, `frac/other` keys, from `comprobust.shape_bias.cue_conflict`).

The images of a split under a condition are rendered with `render_seed(seed)`, a function of the experiment seed
alone, so every run and evaluation of one seed (teachers, students, baselines) is scored on the same images.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from comprobust.data.cues import CONFLICT, Condition
from comprobust.data.dataset import CueDataset
from comprobust.distill.metrics import fidelity_by_condition, summaries
from comprobust.shape_bias import CueConflict, cue_conflict

ACCURACY_COLUMNS = ["condition", "length", "accuracy", "loss", "images"]
FIDELITY_COLUMNS = [
    "condition",
    "length",
    "accuracy",
    "teacher_accuracy",
    "loss",
    "kl",
    "agreement",
    "images",
]
Rows = list[list[Any]]


def render_seed(seed: int) -> int:
    """The seed the conditions of an evaluated split are rendered with, from the experiment seed alone."""
    return int.from_bytes(hashlib.sha256(f"{seed}/cue-test".encode()).digest()[:8], "little") >> 1


def score(
    network: Callable[[torch.Tensor], torch.Tensor],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
) -> tuple[float, float, int]:
    """(accuracy in percent, mean cross-entropy, images) over every batch, without gradients (a module is put in
    eval mode and its training mode restored afterwards)."""
    training = network.training if isinstance(network, nn.Module) else None
    if isinstance(network, nn.Module):
        network.eval()
    correct, loss, count = 0, 0.0, 0
    try:
        with torch.no_grad():
            for x, y in batches:
                x, y = x.to(device), y.to(device)
                logits = network(x).to(torch.float64)
                correct += int((logits.argmax(dim=1) == y).sum())
                loss += float(F.cross_entropy(logits, y, reduction="sum"))
                count += len(y)
    finally:
        if isinstance(network, nn.Module) and training is not None:
            network.train(training)
    if not count:
        raise ValueError("no images were scored")
    return 100.0 * correct / count, loss / count, count


def accuracy_table(
    network: Callable[[torch.Tensor], torch.Tensor],
    data: CueDataset,
    conditions: Sequence[Condition],
    seed: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    split: str = "test",
) -> tuple[Rows, dict[str, float]]:
    """`ACCURACY_COLUMNS` rows per condition and `acc/<c>`, `loss/<c>`, `acc/mean`."""
    rows: Rows = []
    summary: dict[str, float] = {}
    for condition in conditions:
        batches = data.batches(split, condition, render_seed(seed), 0, batch_size)
        acc, loss, count = score(network, batches, device)
        rows.append([condition.name, condition.length, acc, loss, count])
        summary[f"acc/{condition.name}"] = acc
        summary[f"loss/{condition.name}"] = loss
    if rows:
        summary["acc/mean"] = sum(row[2] for row in rows) / len(rows)
    return rows, summary


def fidelity_table(
    student: Callable[[torch.Tensor], torch.Tensor],
    teacher: Callable[[torch.Tensor], torch.Tensor],
    data: CueDataset,
    conditions: Sequence[Condition],
    seed: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    split: str = "test",
) -> tuple[Rows, dict[str, float]]:
    """`FIDELITY_COLUMNS` rows per condition and `acc|teacher_acc|loss|kl|agree/<c>` plus their `/mean`
    (`comprobust.distill.metrics.summaries`)."""
    results = fidelity_by_condition(
        student,
        teacher,
        {c.name: data.batches(split, c, render_seed(seed), 0, batch_size) for c in conditions},
        device,
    )
    rows = [
        [r.condition, c.length, r.accuracy, r.teacher_accuracy, r.loss, r.ts_kl, r.ts_agree, r.images]
        for r, c in zip(results, conditions, strict=True)
    ]
    return rows, summaries(results)


def conflict_conditions(conditions: Sequence[Condition]) -> list[Condition]:
    """The conditions in which some cue is in conflict (X): those a cue-conflict evaluation scores."""
    return [c for c in conditions if CONFLICT in c.settings]


def predict_with_cues(
    network: Callable[[torch.Tensor], torch.Tensor],
    data: CueDataset,
    condition: Condition,
    seed: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    split: str = "test",
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(decisions (N,), {cue: the class it shows (N,), -1 where absent}) over every image of `split` under
    `condition`, rendered with `render_seed(seed)` as `accuracy_table`'s, in split order; the cues are the
    condition's mechanisms that are not at 0, the base first."""
    parts = data.parts[split]
    present = [m.name for m, s in zip(data.model.mechanisms, condition.settings) if s != 0]
    decisions: list[np.ndarray] = []
    cues: dict[str, list[np.ndarray]] = {name: [] for name in present}
    training = network.training if isinstance(network, nn.Module) else None
    if isinstance(network, nn.Module):
        network.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(parts), batch_size):
                indices = np.arange(start, min(start + batch_size, len(parts)))
                out = data.entry.render(parts, indices, condition, render_seed(seed), 0)
                x = data.normalize(torch.from_numpy(np.ascontiguousarray(out.images))).to(device)
                decisions.append(network(x).argmax(dim=1).cpu().numpy())
                for name in present:
                    cues[name].append(np.asarray(out.cues[name]))
    finally:
        if isinstance(network, nn.Module) and training is not None:
            network.train(training)
    if not decisions:
        raise ValueError(f"no images in the {split} split to score")
    return np.concatenate(decisions), {name: np.concatenate(v) for name, v in cues.items()}


def cue_conflict_table(
    network: Callable[[torch.Tensor], torch.Tensor],
    data: CueDataset,
    conditions: Sequence[Condition],
    seed: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    split: str = "test",
) -> tuple[list[str], Rows, dict[str, float], list[str], dict[str, CueConflict]]:
    """Geirhos's cue-conflict scores of `network` on every condition of `conditions` with a cue in conflict (X):
    the `cue_conflict` table (columns: condition, then `CueConflict.table`'s: class, trials, n/<cue>, n/other,
    bias/<cue>), the summary keys (`bias/<cue>`, `frac/<cue>`, `frac/other`, `cue_conflict/trials`,
    `cue_conflict/dropped`, per class `bias/<cue>/class<k>`; prefixed with `<condition>/` when several conditions
    are in conflict), the notes on empty denominators, and the results by condition. Nothing when no condition
    has a conflict."""
    scored = conflict_conditions(conditions)
    columns: list[str] = ["condition"]
    tables: list[tuple[str, list[str], list[list[float]]]] = []
    summary: dict[str, float] = {}
    notes: list[str] = []
    results: dict[str, CueConflict] = {}
    for condition in scored:
        decisions, cues = predict_with_cues(network, data, condition, seed, batch_size, device, split)
        result = cue_conflict(decisions, cues, data.spec.num_classes)
        results[condition.name] = result
        prefix = f"{condition.name}/" if len(scored) > 1 else ""
        for key, value in result.summary().items():
            key = f"cue_conflict/{key}" if key in ("trials", "dropped") else key
            summary[f"{prefix}{key}"] = value
        for row in result.per_class:
            for cue in result.cues:
                summary[f"{prefix}bias/{cue}/class{int(row['class'])}"] = float(row[f"bias/{cue}"])
        notes.extend(f"cue conflict on {condition.name}: {note}" for note in result.notes)
        names, rows = result.table()
        columns.extend(c for c in names if c not in columns)
        tables.append((condition.name, names, rows))
    table: Rows = []
    for name, names, part in tables:
        for values in (dict(zip(names, row)) for row in part):
            table.append([name, *(values.get(c, math.nan) for c in columns[1:])])
    return columns, table, summary, notes, results
