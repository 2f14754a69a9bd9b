"""Contrastive: one network, cross-entropy on 7 paired views of each image (Identity + the six elementals) plus the
multi-view NT-Xent on the penultimate layer (paper section 5.4)."""
from __future__ import annotations

from typing import Iterable

import torch
from torch.nn import functional as F

from comprobust.corruptions import ELEMENTALS
from comprobust.data import PairedViewLoader
from comprobust.losses import multiview_nt_xent
from comprobust.methods.common import Export, StageContext, accuracy, mean_metrics, views_as_batch

VIEWS = (*ELEMENTALS, "Identity")


class ContrastiveTask:
    def __init__(self, ctx: StageContext, model: torch.nn.Module) -> None:
        self.model, self.ctx = model, ctx
        per_view = max(1, ctx.params["batch_size"] // len(VIEWS))
        self.train_loader = PairedViewLoader(ctx.data, "train", views=VIEWS, batch_size=per_view, seed=ctx.seed)
        self.valid_loader = PairedViewLoader(ctx.data, "valid", views=VIEWS, batch_size=per_view, seed=ctx.seed)

    def train_batches(self, epoch: int) -> Iterable:
        return self.train_loader.batches(epoch)

    def _losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, float]:
        x, y = views_as_batch(*batch)
        x, y = x.to(self.ctx.device), y.to(self.ctx.device)
        logits, features = self.model.forward_features(x)
        ctv = multiview_nt_xent(features, len(VIEWS), self.ctx.params["temperature"], self.ctx.params["weight"])
        return F.cross_entropy(logits, y), ctv, accuracy(logits, y)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        ce, ctv, acc = self._losses(batch)
        return ce + ctv, {"train_acc": acc, "train_ce": float(ce.detach()), "train_ctv": float(ctv.detach())}

    def validate(self) -> dict[str, float]:
        def scored():
            for batch in self.valid_loader.batches(0):
                ce, ctv, acc = self._losses(batch)
                yield {"val_loss": float(ce + ctv), "val_ce": float(ce.detach()), "val_ctv": float(ctv.detach()), "val_acc": acc}, \
                    batch[1].numel()

        return mean_metrics(scored())


def train(ctx: StageContext) -> Export:
    ctx.seed_torch("init")
    network = ctx.new_network()
    result = ctx.fit(ContrastiveTask(ctx, network))
    return ctx.export("network", network.state_dict(), {"best_epoch": result.best_epoch, **result.best_metrics})
