"""A tiny training task for the training loop's tests (tests/test_training*.py): learnable, with dropout."""

from __future__ import annotations

import torch
from torch import nn


class ToyTask:
    """Noisy linear classification with dropout, so that resuming must also restore the RNG state."""

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(256, 8, generator=g)
        self.y = (self.x[:, 0] + 0.5 * self.x[:, 1] > 0).long()
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(8, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 2))

    def train_batches(self, epoch: int):
        order = torch.randperm(192, generator=torch.Generator().manual_seed(epoch))
        for i in range(0, 192, 32):
            yield self.x[order[i : i + 32]], self.y[order[i : i + 32]]

    def train_step(self, batch):
        x, y = batch
        logits = self.model(x)
        return nn.functional.cross_entropy(logits, y), {
            "train_acc": float((logits.argmax(1) == y).float().mean())
        }

    def validate(self):
        logits = self.model(self.x[192:])
        y = self.y[192:]
        return {
            "val_loss": float(nn.functional.cross_entropy(logits, y)),
            "val_acc": float((logits.argmax(1) == y).float().mean()),
        }


IDENTITY = {"stage": "toy", "config_hash": "abc123"}
