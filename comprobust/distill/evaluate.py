"""Scoring on a cue dataset's conditions: one classifier (`accuracy_table`) or a student against its teacher
(`fidelity_table`), over every image of a split, as the `conditions` W&B table's rows plus summary keys.

The images of a split under a condition are rendered with `render_seed(seed)`, a function of the experiment seed
alone, so every run and evaluation of one seed (teachers, students, baselines) is scored on the same images.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from comprobust.data.cues import Condition
from comprobust.data.dataset import CueDataset
from comprobust.distill.metrics import fidelity_by_condition, summaries

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
