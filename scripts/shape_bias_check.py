#!/usr/bin/env python3
"""End-to-end check of the shape-bias building blocks, outside the pipeline: train ``small`` and ``vit-cpu`` for a few
hundred steps on texture-digits ``natural`` and ``stylized`` data, then print each network's accuracy on the natural,
shape, texture and conflict test sets and its shape bias on the conflict set.

Expected direction: stylized training (the texture carries no label) drives the shape bias towards 1; natural
training (both cues name the label) leaves it lower. A check of the units, not a result: one seed, tiny budgets.

    .venv/bin/python scripts/shape_bias_check.py [--steps 300] [--archs small vit-cpu]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from comprobust.data import texture_digits as td
from comprobust.models import build_network
from comprobust.optim import build_optimizer, warmup_cosine_scheduler
from comprobust.shape_bias import cue_conflict

SETTINGS = {  # optimiser, lr, weight decay, warmup share of the steps
    "small": ("sgd", 0.05, 5e-4, 0.0),
    "vit-cpu": ("adamw", 2e-3, 0.05, 0.1),
}


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 1, H, W) -> float in about [-1, 1.5] (the natural training set's mean 0.3, std 0.25)."""
    return (torch.from_numpy(images).float() / 255 - 0.3) / 0.25


def train(arch: str, regime: str, steps: int, batch: int, seed: int) -> nn.Module:
    """``arch`` trained for ``steps`` batches of texture-digits ``regime`` (re-rendered every pass over the data)."""
    torch.manual_seed(seed)
    net = build_network(arch, td.NUM_CLASSES, in_channels=1)
    kind, lr, decay, warmup = SETTINGS[arch]
    optimizer = build_optimizer(kind, net.named_parameters(), lr=lr, weight_decay=decay)
    scheduler = warmup_cosine_scheduler(optimizer, warmup=int(warmup * steps), total=steps)
    per_epoch = 3000 // batch
    net.train()
    for step in range(steps):
        epoch, position = divmod(step, per_epoch)
        if position == 0:
            data = td.load("train", regime, seed, epoch)
            x, y = to_tensor(data.images), torch.from_numpy(data.labels)
            order = torch.randperm(len(y))
        chosen = order[position * batch : (position + 1) * batch]
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(x[chosen]), y[chosen]).backward()
        optimizer.step()
        scheduler.step()  # stepped per batch here: warmup and cosine in steps
    return net.eval()


def evaluate(net: nn.Module, seed: int) -> dict[str, float]:
    """Accuracy on each test condition, and the cue-conflict summary on ``conflict``."""
    out = {}
    for condition in ("natural", "shape", "texture", "conflict"):
        data = td.load("test", condition, seed)
        with torch.no_grad():
            decisions = net(to_tensor(data.images)).argmax(1).numpy()
        out[f"acc/{condition}"] = float((decisions == data.labels).mean())
        if condition == "conflict":
            out.update(
                cue_conflict(
                    decisions, {"shape": data.shape_classes, "texture": data.texture_classes}
                ).summary()
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--archs", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    print(
        f"{'arch':8} {'training':9} {'natural':>8} {'shape':>6} {'texture':>8} {'conflict':>9} "
        f"{'bias/shape':>11} {'frac/other':>11} {'seconds':>8}"
    )
    for arch in args.archs:
        for regime in ("natural", "stylized"):
            begun = time.perf_counter()
            result = evaluate(train(arch, regime, args.steps, args.batch, args.seed), args.seed)
            print(
                f"{arch:8} {regime:9} {result['acc/natural']:8.3f} {result['acc/shape']:6.3f} "
                f"{result['acc/texture']:8.3f} {result['acc/conflict']:9.3f} {result['bias/shape']:11.3f} "
                f"{result['frac/other']:11.3f} {time.perf_counter() - begun:8.1f}",
                flush=True,
            )
    print(f"total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
