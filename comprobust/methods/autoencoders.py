"""ImgSpace step 1: per elemental, an auto-encoder trained to map corrupted images back to the clean ones (MSE in
normalised space), on paired views [corruption, Identity] with identical crop/flip."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.nn import functional as F

from comprobust.methods.common import Export, StageContext, mean_metrics
from comprobust.models import build_autoencoder
from comprobust.training import StepMetrics


class AutoEncoderTask:
    def __init__(self, ctx: StageContext, model: torch.nn.Module) -> None:
        self.model, self.device, self.prefetch = model, ctx.device, ctx.prefetch
        assert ctx.corruption is not None, "auto-encoders are trained per corruption"
        views = (ctx.corruption, "Identity")
        size = ctx.params["batch_size"]
        self.train_loader, self.valid_loader = (
            ctx.paired_views(split, views, size) for split in ("train", "valid")
        )

    def train_batches(self, epoch: int) -> Iterable:
        return self.prefetch(self.train_loader.batches(epoch))

    def _mse(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x = batch[0].to(self.device)
        return F.mse_loss(self.model(x[0]), x[1])

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, StepMetrics]:
        return self._mse(batch), {}

    def validate(self) -> dict[str, float]:
        return mean_metrics(
            ({"val_loss": float(self._mse(b))}, b[1].numel()) for b in self.valid_loader.batches(0)
        )


def train(ctx: StageContext) -> Export:
    ctx.seed_torch("init")
    autoencoder = build_autoencoder(ctx.arch, **ctx.shape_args()).to(ctx.device)
    result = ctx.fit(AutoEncoderTask(ctx, autoencoder))
    return ctx.export(
        "autoencoder",
        autoencoder.state_dict(),
        {"corruption": ctx.corruption, "best_epoch": result.best_epoch, **result.best_metrics},
    )
