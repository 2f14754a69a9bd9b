"""Overhead of the stage machinery (W&B offline logging, per-epoch atomic checkpoints, best-val restore) over a
bare PyTorch loop: same model, same pre-materialised batches, same validation, in this process.

    .venv/bin/python benchmarks/training.py [--epochs 8] [--repeats 3] [--arch small]

Runs alternate (bare, stage, bare, stage, ...) and the medians are compared, so machine noise hits both alike.
Two figures: the training epochs themselves (per-epoch logging, checkpointing, best-weights tracking: what grows
with the budget; goal of issue 4: at most 5%), and the fixed cost of one W&B run (start, finish, artifact), paid
once per stage run.
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


def staged(arch: str, data, train, valid, epochs: int, out: Path) -> tuple[float, float]:
    """(seconds of the training epochs, seconds of the whole W&B stage run)."""
    torch.manual_seed(0)
    model = build_network(arch, data.spec.num_classes, in_channels=data.spec.channels, image_size=data.spec.image_size)
    task = ClassifierTask(model, lambda epoch: train, lambda: valid, torch.device("cpu"))
    start = time.perf_counter()
    with start_run(out_dir=out, project="bench", group="bench", job_type="train", name="bench", run_id=out.name,
                   config={"arch": arch}, tags=["bench"], mode="offline") as run:
        epochs_start = time.perf_counter()
        result = fit(task, TrainConfig(lr=0.05, max_epochs=epochs), out / "checkpoints", {"bench": 1},
                     lambda metrics, epoch: run.log(metrics, step=epoch), label="bench")
        epochs_s = time.perf_counter() - epochs_start
        run.log_checkpoint(result.best_path, "model-bench", {"bench": 1}, is_best=True)
    return epochs_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=8)
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
        bare_s, epochs_s, run_s = [], [], []
        for i in range(args.repeats):
            bare_s.append(bare(args.arch, data, train, valid, args.epochs))
            epochs, whole = staged(args.arch, data, train, valid, args.epochs, Path(tmp) / f"run{i}")
            epochs_s.append(epochs)
            run_s.append(whole)
    b, e, w = statistics.median(bare_s), statistics.median(epochs_s), statistics.median(run_s)
    print(f"arch {args.arch}, {args.epochs} epochs of {images // args.epochs} images, median of {args.repeats}:")
    print(f"  bare PyTorch loop          {b:6.2f} s  {images / b:8,.0f} images/s")
    print(f"  stage machinery, epochs    {e:6.2f} s  {images / e:8,.0f} images/s  (per-epoch W&B log + checkpoint)")
    overhead = 100 * (e / b - 1)
    print(f"  per-epoch overhead {overhead:+.1f}%  (goal <= 5%: {'met' if overhead <= 5 else 'NOT met'})")
    print(f"  fixed cost per stage run (W&B start + finish + model artifact): {w - e:.2f} s")


if __name__ == "__main__":
    main()
