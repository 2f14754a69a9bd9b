"""Overhead of the stage machinery (W&B offline logging, per-epoch atomic checkpoints, best-val restore) over a
bare PyTorch loop: same model, same pre-materialised batches, same validation, in this process.

    .venv/bin/python benchmarks/training.py [--epochs 4] [--repeats 3] [--arch small]

Runs alternate (bare, stage, bare, stage, ...) and the medians are compared, so machine noise hits both alike.
Goal (issue 4): overhead at most 5%.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.nn import functional as F

from comprobust.data import PairedViewLoader, load_dataset
from comprobust.methods.common import ClassifierTask
from comprobust.models import build_network
from comprobust.tracking import start_run
from comprobust.training import TrainConfig, fit


def batches(data, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = PairedViewLoader(data, split, views=("Identity",), batch_size=128, seed=0, augment=False)
    return [(x[0], y) for x, y in loader.batches(0)]


def bare(arch: str, data, train, valid, epochs: int) -> float:
    torch.manual_seed(0)
    model = build_network(arch, data.spec.num_classes, in_channels=data.spec.channels, image_size=data.spec.image_size)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for x, y in valid:
                F.cross_entropy(model(x), y)
        scheduler.step()
    return time.perf_counter() - start


def staged(arch: str, data, train, valid, epochs: int, out: Path) -> float:
    torch.manual_seed(0)
    model = build_network(arch, data.spec.num_classes, in_channels=data.spec.channels, image_size=data.spec.image_size)
    task = ClassifierTask(model, lambda epoch: train, lambda: valid, torch.device("cpu"))
    start = time.perf_counter()
    with start_run(out_dir=out, project="bench", group="bench", job_type="train", name="bench", run_id=out.name,
                   config={"arch": arch}, tags=["bench"], mode="offline") as run:
        fit(task, TrainConfig(lr=0.05, max_epochs=epochs), out / "checkpoints", {"bench": 1},
            lambda metrics, epoch: run.log(metrics, step=epoch), label="bench")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arch", default="small")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset("mnist5k", root=tmp)
        train, valid = batches(data, "train"), batches(data, "valid")
        images = args.epochs * sum(len(y) for _, y in train)
        staged(args.arch, data, train, valid, 1, Path(tmp) / "warmup")  # wandb service start, imports
        bare_s, stage_s = [], []
        for i in range(args.repeats):
            bare_s.append(bare(args.arch, data, train, valid, args.epochs))
            stage_s.append(staged(args.arch, data, train, valid, args.epochs, Path(tmp) / f"run{i}"))
    b, s = statistics.median(bare_s), statistics.median(stage_s)
    print(f"arch {args.arch}, {args.epochs} epochs of {images // args.epochs} images, median of {args.repeats}:")
    print(f"  bare PyTorch loop      {b:6.2f} s  {images / b:8,.0f} images/s")
    print(f"  stage machinery        {s:6.2f} s  {images / s:8,.0f} images/s  (W&B offline run, checkpoint per epoch)")
    overhead = 100 * (s / b - 1)
    print(f"  overhead {overhead:+.1f}%  (goal <= 5%: {'met' if overhead <= 5 else 'NOT met'})")


if __name__ == "__main__":
    main()
