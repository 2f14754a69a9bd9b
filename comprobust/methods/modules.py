"""Modular ("AutoModules") step 2: for one elemental, find the depth where a module helps most, then train it.

The backbone (a `backbone` stage's network) is frozen in eval mode. On paired batches [corruption, Identity] the
module runs on the whole batch at its level; the loss is cross-entropy on every output plus the 2-view NT-Xent
between the module's output for the corrupted images and the backbone's clean, pre-module features (section 5.5).
`batch_size` counts the images of one SGD step, as for every other method (half corrupted, half their clean
views: the paper's 128 + 128 at batch 256), so a module and ERM see equally many images per step.
Level search: a fresh module at every candidate level trains `search_epochs` epochs (cosine over `max_epochs`, as
the paper's T_max=200, so the rate stays near `lr`); its last-epoch weights are scored on the validation split,
the level with the best accuracy wins, and a fresh module is trained there for `max_epochs`. Per-level curves
are logged as a table; the export records each level's accuracy with its standard error over validation
images, and the margin of the chosen level over the runner-up with the standard error of that paired
difference, so a level chosen by noise shows as such.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from comprobust.checkpoints import LAST, load_checkpoint
from comprobust.errors import UserError
from comprobust.losses import multiview_nt_xent
from comprobust.methods.common import Export, PairedContrastiveTask, StageContext, accuracy_tensor
from comprobust.models import build_module
from comprobust.models.blocks import BlockNetwork
from comprobust.training import TrainingDiverged

VIEWS = 2  # [corrupted, clean]


class ModuleTask(PairedContrastiveTask):
    """Train `model` (a module at `level`) inside the frozen `backbone`, on views [corruption, Identity]."""

    def __init__(
        self,
        ctx: StageContext,
        backbone: BlockNetwork,
        model: nn.Module,
        level: int,
        valid_batches: int | None = None,
    ) -> None:
        assert ctx.corruption is not None, "modules are trained per corruption"
        super().__init__(
            ctx, model, (ctx.corruption, "Identity"), max(1, ctx.params["batch_size"] // VIEWS), valid_batches
        )
        self.backbone, self.level = backbone, level

    def _forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """(logits, labels, module output of the corrupted views, the backbone's clean pre-module features)."""
        x, y = batch
        n = y.numel()
        x = x.reshape(-1, *x.shape[2:]).to(self.ctx.device)  # [corrupted; clean]
        y = y.repeat(VIEWS).to(self.ctx.device)
        with torch.no_grad():
            features = self.backbone.run_to_level(x, self.level)
        moduled = self.model(features)
        return self.backbone.run_from_level(moduled, self.level), y, moduled[:n], features[n:]

    def _losses(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, y, corrupted, clean = self._forward(batch)
        pair = torch.cat([corrupted.flatten(1), clean.flatten(1)])
        ctv = multiview_nt_xent(pair, VIEWS, self.ctx.params["temperature"], self.ctx.params["weight"])
        return F.cross_entropy(logits, y), ctv, accuracy_tensor(logits, y)

    def correct(self) -> np.ndarray:
        """Per validation image (the batches `validate` scores): the share of its two views classified right."""
        shares = []
        self.model.eval()
        with torch.no_grad():
            for i, batch in enumerate(self.valid_loader.batches(0)):
                if self.valid_limit is not None and i >= self.valid_limit:
                    break
                logits, y = self._forward(batch)[:2]
                shares.append((logits.argmax(dim=1) == y).double().view(VIEWS, -1).mean(dim=0).cpu())
        return torch.cat(shares).numpy()


@dataclass(frozen=True)
class LevelSearch:
    """The outcome of a level search: the chosen level, the per-epoch table, and what `meta` exports."""

    level: int
    rows: list[list]
    accuracy: dict[int, float]  # validation accuracy (%) of each level's last-epoch module
    se: dict[int, float]  # its standard error over validation images (pp)
    runner_up: int | None
    margin: float  # chosen minus runner-up accuracy (pp); NaN with one level
    margin_se: float  # standard error of that difference, paired over the same images (pp)

    def meta(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for level in self.accuracy:
            out[f"level_{level}_val_acc"] = self.accuracy[level]
            out[f"level_{level}_val_acc_se"] = self.se[level]
        if self.runner_up is not None:
            out.update(
                level_runner_up=self.runner_up, level_margin=self.margin, level_margin_se=self.margin_se
            )
        return out


def standard_error(values: np.ndarray) -> float:
    """Standard error of the mean of `values` in pp (values are shares in [0, 1]); NaN below 2 values."""
    return float(100 * values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")


def search_level(ctx: StageContext, backbone: BlockNetwork) -> LevelSearch:
    """Train a fresh module briefly at every candidate level; the level with the best validation accuracy wins."""
    levels = ctx.params["levels"] if ctx.params["levels"] is not None else list(range(backbone.num_levels))
    bad = [level for level in levels if not isinstance(level, int) or not 0 <= level < backbone.num_levels]
    if bad:
        raise UserError(
            f"stage {ctx.stage}: levels {bad} are not in 0..{backbone.num_levels - 1} "
            f"for architecture {ctx.arch!r}"
        )
    rows: list[list] = []
    correct: dict[int, np.ndarray] = {}
    config = ctx.train_config(max_epochs=ctx.params["search_epochs"], cosine_epochs=ctx.params["max_epochs"])
    for level in levels:
        ctx.seed_torch("search", level)
        module = build_module(ctx.arch, level, **ctx.shape_args()).to(ctx.device)
        task = ModuleTask(ctx, backbone, module, level, ctx.params["search_val_batches"])
        folder = ctx.out_dir / "search" / f"level-{level}"
        identity = {**ctx.identity, "search_level": level}
        try:
            result = ctx.fit(task, folder, config, identity, f"{ctx.run_id} level {level}", log=False)
        except TrainingDiverged as err:  # a level whose module diverges is simply not chosen
            print(f"{err}; level {level} is out of the search", file=sys.stderr)
            continue
        rows += [
            [level, r["epoch"], r["train_loss"], r["train_acc"], r["val_loss"], r["val_acc"]]
            for r in result.history
        ]
        last = load_checkpoint(folder / LAST, identity, module)
        assert last is not None, "fit wrote the last checkpoint"
        module.load_state_dict(last["model"])  # fit restored the best
        correct[level] = task.correct()
    if not correct:
        raise UserError(
            f"stage {ctx.stage}: the module diverged at every candidate level {levels}; lower lr "
            f"(now {ctx.params['lr']})"
        )
    scores = {level: float(100 * shares.mean()) for level, shares in correct.items()}
    ranked = sorted(scores, key=lambda level: (-scores[level], level))
    chosen, runner_up = ranked[0], (ranked[1] if len(ranked) > 1 else None)
    nan = float("nan")
    return LevelSearch(
        level=chosen,
        rows=rows,
        accuracy=scores,
        se={k: standard_error(v) for k, v in correct.items()},
        runner_up=runner_up,
        margin=scores[chosen] - scores[runner_up] if runner_up is not None else nan,
        margin_se=standard_error(correct[chosen] - correct[runner_up]) if runner_up is not None else nan,
    )


def train(ctx: StageContext) -> Export:
    if ctx.corruption is None:
        raise UserError(f"stage {ctx.stage}: the modules method runs once per corruption")
    [backbone_export] = ctx.inputs["backbone"]
    backbone = backbone_export.build_network(ctx.device)
    search = search_level(ctx, backbone)
    ctx.seed_torch("module", search.level)
    module = build_module(ctx.arch, search.level, **ctx.shape_args()).to(ctx.device)
    result = ctx.fit(
        ModuleTask(ctx, backbone, module, search.level), identity={**ctx.identity, "level": search.level}
    )
    if ctx.log_extra is not None:  # after the epochs, so that W&B's step stays monotonic
        ctx.log_extra(
            "level_search", ["level", "epoch", "train_loss", "train_acc", "val_loss", "val_acc"], search.rows
        )
    return ctx.export(
        "module",
        module.state_dict(),
        {
            "level": search.level,
            "corruption": ctx.corruption,
            "best_epoch": result.best_epoch,
            **result.best_metrics,
            **search.meta(),
        },
    )
