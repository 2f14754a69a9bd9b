"""Modular ("AutoModules") step 2: for one elemental, find the depth where a module helps most, then train it.

The backbone (a `backbone` stage's network) is frozen in eval mode. On paired batches [corruption, Identity] the
module runs on the whole batch at its level; the loss is cross-entropy on every output plus the 2-view NT-Xent
between the module's output for the corrupted images and the backbone's clean, pre-module features (section 5.5).
Level search: a fresh module at every candidate level trains `search_epochs` epochs (cosine over `max_epochs`, as
the paper's T_max=200, so the rate stays near `lr`); the level with the best validation accuracy wins, and a fresh
module is trained there for `max_epochs`. Per-level curves are logged as a table.
"""
from __future__ import annotations

import sys

import torch
from torch import nn
from torch.nn import functional as F

from comprobust.errors import UserError
from comprobust.losses import multiview_nt_xent
from comprobust.methods.common import Export, PairedContrastiveTask, StageContext, accuracy
from comprobust.models import build_module
from comprobust.training import TrainingDiverged


class ModuleTask(PairedContrastiveTask):
    """Train `model` (a module at `level`) inside the frozen `backbone`, on views [corruption, Identity]."""

    def __init__(self, ctx: StageContext, backbone: nn.Module, model: nn.Module, level: int,
                 valid_batches: int | None = None) -> None:
        super().__init__(ctx, model, (ctx.corruption, "Identity"), ctx.params["batch_size"], valid_batches)
        self.backbone, self.level = backbone, level

    def _losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, float]:
        x, y = batch
        n = y.numel()
        x = x.reshape(-1, *x.shape[2:]).to(self.ctx.device)  # [corrupted; clean]
        y = y.repeat(2).to(self.ctx.device)
        with torch.no_grad():
            features = self.backbone.run_to_level(x, self.level)
        clean = features[n:]
        moduled = self.model(features)
        logits = self.backbone.run_from_level(moduled, self.level)
        pair = torch.cat([moduled[:n].flatten(1), clean.flatten(1)])
        ctv = multiview_nt_xent(pair, 2, self.ctx.params["temperature"], self.ctx.params["weight"])
        return F.cross_entropy(logits, y), ctv, accuracy(logits, y)


def search_level(ctx: StageContext, backbone: nn.Module) -> tuple[int, list[list]]:
    """Train a fresh module briefly at every candidate level; the level with the best validation accuracy wins."""
    levels = ctx.params["levels"] if ctx.params["levels"] is not None else list(range(backbone.num_levels))
    bad = [level for level in levels if not isinstance(level, int) or not 0 <= level < backbone.num_levels]
    if bad:
        raise UserError(f"stage {ctx.stage}: levels {bad} are not in 0..{backbone.num_levels - 1} "
                        f"for architecture {ctx.arch!r}")
    rows: list[list] = []
    config = ctx.train_config(max_epochs=ctx.params["search_epochs"], cosine_epochs=ctx.params["max_epochs"])
    for level in levels:
        ctx.seed_torch("search", level)
        module = build_module(ctx.arch, level, **ctx.shape_args()).to(ctx.device)
        task = ModuleTask(ctx, backbone, module, level, ctx.params["search_val_batches"])
        try:
            result = ctx.fit(task, ctx.out_dir / "search" / f"level-{level}", config,
                             {**ctx.identity, "search_level": level}, f"{ctx.run_id} level {level}", log=False)
        except TrainingDiverged as err:  # a level whose module diverges is simply not chosen
            print(f"{err}; level {level} is out of the search", file=sys.stderr)
            continue
        rows += [[level, r["epoch"], r["train_loss"], r["train_acc"], r["val_loss"], r["val_acc"]]
                 for r in result.history]
    final = {row[0]: row[5] for row in rows if row[1] == ctx.params["search_epochs"] - 1}
    if not final:
        raise UserError(f"stage {ctx.stage}: the module diverged at every candidate level {levels}; lower lr "
                        f"(now {ctx.params['lr']})")
    return max(final, key=lambda level: (final[level], -level)), rows


def train(ctx: StageContext) -> Export:
    if ctx.corruption is None:
        raise UserError(f"stage {ctx.stage}: the modules method runs once per corruption")
    [backbone_export] = ctx.inputs["backbone"]
    backbone = backbone_export.build(ctx.device)
    level, search_rows = search_level(ctx, backbone)
    ctx.seed_torch("module", level)
    module = build_module(ctx.arch, level, **ctx.shape_args()).to(ctx.device)
    result = ctx.fit(ModuleTask(ctx, backbone, module, level), identity={**ctx.identity, "level": level})
    if ctx.log_extra is not None:  # after the epochs, so that W&B's step stays monotonic
        ctx.log_extra("level_search", ["level", "epoch", "train_loss", "train_acc", "val_loss", "val_acc"], search_rows)
    search = {f"level_{row[0]}_val_acc": row[5] for row in search_rows if row[1] == ctx.params["search_epochs"] - 1}
    return ctx.export("module", module.state_dict(), {"level": level, "corruption": ctx.corruption,
                                                      "best_epoch": result.best_epoch, **result.best_metrics,
                                                      **search})
