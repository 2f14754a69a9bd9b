"""Contrastive: one network, cross-entropy on 7 paired views of each image (Identity + the six elementals) plus the
multi-view NT-Xent on the penultimate layer (paper section 5.4)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from comprobust.corruptions import ELEMENTALS
from comprobust.losses import multiview_nt_xent
from comprobust.methods.common import (
    Export,
    PairedContrastiveTask,
    StageContext,
    accuracy_tensor,
    views_as_batch,
)
from comprobust.models.blocks import BlockNetwork

VIEWS = (*ELEMENTALS, "Identity")


class ContrastiveTask(PairedContrastiveTask):
    """7 views per image; NT-Xent over the penultimate features of all views."""

    model: BlockNetwork

    def __init__(self, ctx: StageContext, model: BlockNetwork) -> None:
        super().__init__(ctx, model, VIEWS, per_view=max(1, ctx.params["batch_size"] // len(VIEWS)))

    def _losses(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x, y = views_as_batch(*batch)
        x, y = x.to(self.ctx.device), y.to(self.ctx.device)
        logits, features = self.model.forward_features(x)
        ctv = multiview_nt_xent(
            features, len(VIEWS), self.ctx.params["temperature"], self.ctx.params["weight"]
        )
        return F.cross_entropy(logits, y), ctv, accuracy_tensor(logits, y)


def train(ctx: StageContext) -> Export:
    ctx.seed_torch("init")
    network = ctx.new_network()
    result = ctx.fit(ContrastiveTask(ctx, network))
    return ctx.export(
        "network", network.state_dict(), {"best_epoch": result.best_epoch, **result.best_metrics}
    )
