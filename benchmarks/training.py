"""Overhead of the stage machinery (W&B offline logging, per-epoch atomic checkpoints, best-val restore) over a
bare PyTorch loop: same model, same pre-materialised batches, same validation, in this process.

    .venv/bin/python benchmarks/training.py [--epochs 4] [--repeats 11] [--arch small] [--threads 1]

Rounds alternate their order (bare, stage; stage, bare; ...), so machine noise hits both alike; the overhead is
the median over rounds of each round's paired ratio. Two figures: the training epochs themselves (per-epoch
logging, checkpointing, best-weights tracking: what grows with the budget; goal: at most 2%), and the fixed cost
of one W&B run (start, finish, artifact), paid once per stage run.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from pathlib import Path

import torch
from harness import REPEATS, Goal, interleave, ratio, record, setup, spread
from torch.nn import functional as F

from comprobust.data.dataset import load_dataset
from comprobust.data.loaders import PairedViewLoader
from comprobust.methods.common import ClassifierTask
from comprobust.models import build_network
from comprobust.tracking import start_run
from comprobust.training import TrainConfig, fit


def batches(data, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    loader = PairedViewLoader(data, split, views=("Identity",), batch_size=128, seed=0, augment=False)
    return [(x[0], y) for x, y in loader.batches(0)]


def bare(arch: str, data, train, valid, epochs: int) -> float:
    torch.manual_seed(0)
    model = build_network(
        arch, data.spec.num_classes, in_channels=data.spec.channels, image_size=data.spec.image_size
    )
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


def staged(arch: str, data, train, valid, epochs: int, out: Path) -> tuple[float, float, float]:
    """(wall and CPU seconds of the training epochs, wall seconds of the whole W&B stage run)."""
    torch.manual_seed(0)
    model = build_network(
        arch, data.spec.num_classes, in_channels=data.spec.channels, image_size=data.spec.image_size
    )
    task = ClassifierTask(model, lambda epoch: train, lambda: valid, torch.device("cpu"))
    start = time.perf_counter()
    with start_run(
        out_dir=out,
        project="bench",
        group="bench",
        job_type="train",
        name="bench",
        run_id=out.name,
        config={"arch": arch},
        tags=["bench"],
        mode="offline",
    ) as run:
        epochs_start, epochs_cpu = time.perf_counter(), time.process_time()
        result = fit(
            task,
            TrainConfig(lr=0.05, max_epochs=epochs),
            out / "checkpoints",
            {"bench": 1},
            lambda metrics, epoch: run.log(metrics, step=epoch),
            label="bench",
        )
        epochs_s, cpu_s = time.perf_counter() - epochs_start, time.process_time() - epochs_cpu
        run.log_checkpoint(result.best_path, "model-bench", {"bench": 1}, is_best=True)
    return epochs_s, cpu_s, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the demo's stages train 4)")
    parser.add_argument("--repeats", type=int, default=2 * REPEATS + 1, help="rounds (bare + stage each)")
    parser.add_argument("--arch", default="small")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    environment = setup(args.threads)
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset("mnist5k", root=tmp)
        train, valid = batches(data, "train"), batches(data, "valid")
        images = args.epochs * sum(len(y) for _, y in train)
        staged(args.arch, data, train, valid, 1, Path(tmp) / "warmup")  # wandb service start, imports
        runs, epochs_s, cpu_s, run_s = itertools.count(), [], [], []

        def stage() -> None:
            epochs, cpu, whole = staged(
                args.arch, data, train, valid, args.epochs, Path(tmp) / f"run{next(runs)}"
            )
            epochs_s.append(epochs)
            cpu_s.append(cpu)
            run_s.append(whole)

        timings = interleave(
            {"bare": lambda: bare(args.arch, data, train, valid, args.epochs), "stage": stage}, args.repeats
        )
    overhead = ratio(epochs_s, timings.wall["bare"])
    cpu_overhead = ratio(cpu_s, timings.cpu["bare"])
    b, e = spread(timings.wall["bare"]), spread(epochs_s)
    fixed = spread([w - x for w, x in zip(run_s, epochs_s)])
    percent = 100 * (overhead["median"] - 1)
    print(
        f"arch {args.arch}, {args.epochs} epochs of {images // args.epochs} images, min/median of {args.repeats}:"
    )
    print(
        f"  bare PyTorch loop          {b['min']:6.2f} / {b['median']:6.2f} s  {images / b['median']:8,.0f} images/s"
    )
    print(
        f"  stage machinery, epochs    {e['min']:6.2f} / {e['median']:6.2f} s  {images / e['median']:8,.0f} images/s"
    )
    cpu_percent = 100 * (cpu_overhead["median"] - 1)
    print(
        f"  per-epoch overhead {percent:+.1f}% wall (paired ratios {overhead['min']:.3f}-{overhead['max']:.3f}), "
        f"{cpu_percent:+.1f}% CPU time of this process (paired ratios {cpu_overhead['min']:.3f}-"
        f"{cpu_overhead['max']:.3f})"
    )
    print(f"  fixed cost per stage run (W&B start + finish + model artifact): {fixed['median']:.2f} s")
    row = {
        "benchmark": f"`training.py`: {args.epochs} epochs of the {args.arch} network through the stage machinery",
        "baseline": f"bare PyTorch loop, same batches: {images / b['median']:,.0f} images/s",
        "measured": (
            f"{images / e['median']:,.0f} images/s, **{percent:+.1f}% per epoch** wall (paired ratios "
            f"{overhead['min']:.2f}-{overhead['max']:.2f}), {cpu_percent:+.1f}% in CPU time; plus "
            f"{fixed['median']:.2f} s once per run (W&B start, finish, artifact)"
        ),
        "goal": "<= +2%",
    }
    goals = [
        Goal("training: per-epoch overhead over a bare loop, wall (median)", percent, "<=", 2.0, "%"),
        Goal("training: per-epoch overhead over a bare loop, CPU time (median)", cpu_percent, "<=", 2.0, "%"),
    ]
    record(
        "training",
        environment,
        [row],
        goals,
        {
            "bare_s": b,
            "stage_epochs_s": e,
            "overhead_ratio": overhead,
            "cpu_overhead_ratio": cpu_overhead,
            "fixed_s": fixed,
            "images": images,
        },
    )


if __name__ == "__main__":
    main()
