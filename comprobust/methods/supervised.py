"""`supervised` (cue datasets): one network trained with cross-entropy on the condition `mechanisms` of the train
split, validated on the same condition of the valid split; a teacher, or a student's from-scratch baseline. Each
epoch also logs `cf/<condition>/acc` on the first 2 valid batches of every test condition.

After training, the test split is scored under every condition of `conditions` (rendered with
`comprobust.distill.evaluate.render_seed` of the experiment seed, so every run of a seed sees the same test images): the `conditions` table (condition, length, accuracy, loss, images)
and `acc/<condition>`, `loss/<condition>` and `acc/mean` in the export's meta (hence in the run's summary). On every
test condition with a cue in conflict (X; texture-digits' `conflict`, 100 X), Geirhos's cue-conflict scores too
(`comprobust.distill.evaluate.cue_conflict_table`): the `cue_conflict` table and `bias/<cue>` (`bias/shape`: the
shape bias), `frac/<cue>`, `frac/other` and per-class `bias/<cue>/class<k>` in the meta and summary; a bias with an
empty denominator is NaN, and `cue_conflict/notes` in the meta (and a warning line) says why.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from comprobust.data.cues import Condition
from comprobust.data.dataset import CueDataset
from comprobust.distill.evaluate import ACCURACY_COLUMNS, accuracy_table, cue_conflict_table, score
from comprobust.methods.common import ClassifierTask, Export, StageContext, cue_data
from comprobust.methods.specs import METHODS

CONDITION_COLUMNS = ACCURACY_COLUMNS
CF_BATCHES = 2  # per-epoch counterfactual metrics read at most this many valid batches per test condition


def param(ctx: StageContext, name: str) -> Any:
    """`ctx.params[name]`, else the method's declared default."""
    if name in ctx.params:
        return ctx.params[name]
    for method in ("supervised", "distill"):
        if name in METHODS[method].params:
            return METHODS[method].params[name]
    raise KeyError(name)


def training_condition(ctx: StageContext, data: CueDataset) -> Condition:
    """The condition a run trains on: its `mechanisms`, by default every cue (the dataset's natural condition)."""
    value = param(ctx, "mechanisms")
    return data.entry.condition(data.entry.natural if value is None else value)


def score_conditions(
    ctx: StageContext, network: nn.Module, conditions: Sequence[Condition]
) -> tuple[list[list[Any]], dict[str, float]]:
    """The `conditions` table's rows and the summary keys of `network` on the test split."""
    return accuracy_table(
        network, cue_data(ctx), conditions, ctx.seed, int(param(ctx, "batch_size")), ctx.device
    )


def score_cue_conflict(
    ctx: StageContext, network: nn.Module, conditions: Sequence[Condition]
) -> tuple[list[str], list[list[Any]], dict[str, Any]]:
    """The `cue_conflict` table (columns, rows) and the meta keys of `network` on the test split's conditions with a
    cue in conflict (nothing without one): the scores, and `cue_conflict/notes` when a denominator was empty."""
    columns, rows, summary, notes, _ = cue_conflict_table(
        network, cue_data(ctx), conditions, ctx.seed, int(param(ctx, "batch_size")), ctx.device
    )
    meta: dict[str, Any] = dict(summary)
    if notes:
        meta["cue_conflict/notes"] = "; ".join(notes)
        for note in notes:
            print(f"warning: stage {ctx.stage}: {note}")
    return columns, rows, meta


def cf_sources(
    ctx: StageContext, conditions: Sequence[Condition]
) -> dict[str, Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]]:
    """Per test condition, the first `CF_BATCHES` batches of the valid split under it (for `cf/<condition>/...`
    metrics every epoch: how training on one condition moves the others, without touching the test split)."""
    data = cue_data(ctx)
    seed, batch_size = ctx.data_seed("valid"), int(param(ctx, "batch_size"))

    def source(condition: Condition) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
        return lambda: itertools.islice(data.batches("valid", condition, seed, 0, batch_size), CF_BATCHES)

    return {condition.name: source(condition) for condition in conditions}


class ConditionTask(ClassifierTask):
    """`ClassifierTask` whose validation also reports `cf/<condition>/acc` on a few valid batches per condition."""

    def __init__(
        self,
        model: nn.Module,
        train_batches: Callable[[int], Iterable],
        valid_batches: Callable[[], Iterable],
        device: torch.device,
        cf: Mapping[str, Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]],
    ) -> None:
        super().__init__(model, train_batches, valid_batches, device)
        self.cf = dict(cf)

    def validate(self) -> dict[str, float]:
        metrics = super().validate()
        for name, batches in self.cf.items():
            metrics[f"cf/{name}/acc"] = score(self.model, batches(), self.device)[0]
        return metrics


def train(ctx: StageContext) -> Export:
    data = cue_data(ctx)
    condition = training_condition(ctx, data)
    tests = data.conditions(param(ctx, "conditions"))  # checked before any training
    ctx.seed_torch("init")
    network = ctx.new_network()
    batch_size = int(param(ctx, "batch_size"))
    train_seed, valid_seed = ctx.data_seed("train"), ctx.data_seed("valid")
    task = ConditionTask(
        network,
        lambda epoch: ctx.prefetch(
            data.batches("train", condition, train_seed, epoch, batch_size, shuffle=True)
        ),
        lambda: data.batches("valid", condition, valid_seed, 0, batch_size),
        ctx.device,
        cf_sources(ctx, tests),
    )
    result = ctx.fit(task)
    rows, summary = score_conditions(ctx, network, tests)
    conflict_columns, conflict_rows, conflict = score_cue_conflict(ctx, network, tests)
    if ctx.log_extra is not None:
        ctx.log_extra("conditions", list(CONDITION_COLUMNS), rows)
        if conflict_rows:
            ctx.log_extra("cue_conflict", conflict_columns, conflict_rows)
    meta = {
        "best_epoch": result.best_epoch,
        **result.best_metrics,
        "mechanisms": condition.name,
        **summary,
        **conflict,
    }
    return ctx.export("network", network.state_dict(), meta)
