"""Overhead of the stage machinery (W&B offline logging, per-epoch atomic checkpoints, best-val restore) over a
bare PyTorch loop: same network, same pre-materialised batches, same validation, in this process.

    .venv/bin/python benchmarks/training.py [--epochs 4] [--runs 21] [--arch small] [--threads 1]

The two loops are interleaved epoch by epoch: each W&B stage run trains its own network and, at the end of each
of its epochs' training batches, one epoch of the bare loop (its own network, optimiser and schedule) runs and is
timed on its own. A stage epoch's time is the span from one epoch's start to the next's, less the bare epoch
inside it, so it holds everything the stage adds per epoch: the step metrics, the checkpoint serialised on the
training thread, its write in the background while the next epoch trains, the W&B record, the progress line.
Pairs half a second apart see the same machine (whole 4-epoch rounds, 5 s apart, gave paired ratios from 0.7 to
1.6 on a shared 2-core VM). Pairs come from every epoch but each run's last (which also waits for its write and
restores the best weights, counted with W&B's start and finish as the fixed cost of a run).

A control run (an A/A test) alternates with every stage run: a second bare loop in the stage's place, cut by
an inner bare epoch the same way. Its median ratio is what the arrangement reads with no overhead at all, and
its distance from 1 shows how finely this machine resolves the figure. The figure is the median stage/bare
ratio. Goal: at most 2% per epoch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from harness import Goal, ratio, record, setup, spread
from torch.nn import functional as F

from comprobust.data.dataset import LoadedDataset, load_dataset
from comprobust.data.loaders import PairedViewLoader
from comprobust.methods.common import ClassifierTask
from comprobust.models import build_network
from comprobust.tracking import start_run
from comprobust.training import TrainConfig, fit

Batches = list[tuple[torch.Tensor, torch.Tensor]]


def batches(data: LoadedDataset, split: str) -> Batches:
    loader = PairedViewLoader(data, split, views=("Identity",), batch_size=128, seed=0, augment=False)
    return [(x[0], y) for x, y in loader.batches(0)]


def network(arch: str, data: LoadedDataset) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_network(
        arch, data.spec.num_classes, in_channels=data.spec.channels, image_size=data.spec.image_size
    )


class BareLoop:
    """The baseline: SGD with momentum and weight decay, a cosine schedule, validation losses; nothing else."""

    def __init__(self, arch: str, data: LoadedDataset, train: Batches, valid: Batches, epochs: int) -> None:
        self.model, self.train, self.valid = network(arch, data), train, valid
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=epochs)

    def train_part(self) -> None:
        self.model.train()
        for x, y in self.train:
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()

    def validate_part(self) -> None:
        self.model.eval()
        with torch.no_grad():
            for x, y in self.valid:
                F.cross_entropy(self.model(x), y)
        self.scheduler.step()

    def epoch(self) -> None:
        self.train_part()
        self.validate_part()


@dataclass
class Clock:
    """Wall and process CPU seconds at a point, and the difference of two points."""

    wall: float = field(default_factory=time.perf_counter)
    cpu: float = field(default_factory=time.process_time)

    def __sub__(self, other: Clock) -> Clock:
        return Clock(self.wall - other.wall, self.cpu - other.cpu)


@dataclass
class Pairs:
    """Epochs of an outer loop (the stage, or the control's bare loop) and the bare epochs timed inside them."""

    outer: list[Clock] = field(default_factory=list)
    inner: list[Clock] = field(default_factory=list)

    def __iadd__(self, other: Pairs) -> Pairs:
        self.outer += other.outer
        self.inner += other.inner
        return self

    def ratios(self) -> tuple[dict[str, float], dict[str, float]]:
        """Paired outer/inner ratios of wall and of CPU seconds (min, median, max)."""
        return (
            ratio([o.wall for o in self.outer], [i.wall for i in self.inner]),
            ratio([o.cpu for o in self.outer], [i.cpu for i in self.inner]),
        )


@dataclass
class Run:
    """One stage run's timings: its epochs paired with their inner bare epochs, and the fixed cost."""

    pairs: Pairs
    fixed_s: float


def interleaved_run(
    arch: str, data: LoadedDataset, train: Batches, valid: Batches, epochs: int, out: Path
) -> Run:
    """One W&B stage run of `epochs`, with one bare-loop epoch inside each of its epochs."""
    bare = BareLoop(arch, data, train, valid, epochs)
    starts: list[Clock] = []
    bare_epochs: list[Clock] = []

    def train_batches(epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        starts.append(Clock())
        yield from train
        before = Clock()
        bare.epoch()
        bare_epochs.append(Clock() - before)

    task = ClassifierTask(network(arch, data), train_batches, lambda: valid, torch.device("cpu"))
    begin = Clock()
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
        result = fit(
            task,
            TrainConfig(lr=0.05, max_epochs=epochs),
            out / "checkpoints",
            {"bench": 1},
            lambda metrics, epoch: run.log(metrics, step=epoch),
            label="bench",
        )
        run.log_checkpoint(result.best_path, "model-bench", {"bench": 1}, is_best=True)
    end = Clock()
    stage = [starts[e + 1] - starts[e] - bare_epochs[e] for e in range(epochs - 1)]
    # the rest of the run beyond `epochs` typical stage epochs and the bare ones: W&B's start and finish, the
    # artifact, the last write's wait and the best weights' restore
    typical = statistics.median(s.wall for s in stage)
    fixed = (end - begin).wall - sum(b.wall for b in bare_epochs) - epochs * typical
    return Run(Pairs(stage, bare_epochs[: epochs - 1]), fixed)


def control_run(arch: str, data: LoadedDataset, train: Batches, valid: Batches, epochs: int) -> Pairs:
    """The A/A test: a bare loop in the stage's place, cut by an inner bare epoch as the stage's epochs are;
    every epoch but the last paired, as the stage's are."""
    outer, inner = BareLoop(arch, data, train, valid, epochs), BareLoop(arch, data, train, valid, epochs)
    pairs = Pairs()
    for _ in range(epochs - 1):
        start = Clock()
        outer.train_part()
        before = Clock()
        inner.epoch()
        pairs.inner.append(Clock() - before)
        outer.validate_part()
        pairs.outer.append(Clock() - start - pairs.inner[-1])
    outer.epoch()  # the last epoch, as the stage's last, unpaired
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the demo's stages train 4)")
    parser.add_argument(
        "--runs", type=int, default=21, help="stage runs and control runs (each epochs - 1 pairs)"
    )
    parser.add_argument("--arch", default="small")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (a run's last epoch is not paired)")
    environment = setup(args.threads)
    os.environ.setdefault("WANDB_SILENT", "true")
    runs: list[Run] = []
    stage_pairs, control_pairs = Pairs(), Pairs()
    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset("mnist5k", root=tmp)
        train, valid = batches(data, "train"), batches(data, "valid")
        images = sum(len(y) for _, y in train)
        interleaved_run(args.arch, data, train, valid, 2, Path(tmp) / "warmup")  # wandb service, imports
        for i in range(args.runs):
            runs.append(interleaved_run(args.arch, data, train, valid, args.epochs, Path(tmp) / f"run{i}"))
            stage_pairs += runs[-1].pairs
            control_pairs += control_run(args.arch, data, train, valid, args.epochs)
    stage, bare = stage_pairs.outer, stage_pairs.inner
    raw, raw_cpu = stage_pairs.ratios()
    control, control_cpu = control_pairs.ratios()
    percent, cpu_percent = 100 * (raw["median"] - 1), 100 * (raw_cpu["median"] - 1)
    b, e = spread([x.wall for x in bare]), spread([x.wall for x in stage])
    fixed = spread([run.fixed_s for run in runs])
    print(
        f"arch {args.arch}, epochs of {images} images, {len(stage)} epoch pairs from {args.runs} runs of "
        f"{args.epochs} epochs (and as many control pairs), min/median:"
    )
    print(
        f"  bare PyTorch epoch      {b['min']:6.3f} / {b['median']:6.3f} s  {images / b['median']:8,.0f} images/s"
    )
    print(
        f"  stage epoch             {e['min']:6.3f} / {e['median']:6.3f} s  {images / e['median']:8,.0f} images/s"
    )
    print(
        f"  stage/bare {raw['median']:.4f} (paired ratios {raw['min']:.3f}-{raw['max']:.3f}); control (bare in the "
        f"stage's place) {control['median']:.4f} ({control['min']:.3f}-{control['max']:.3f})"
    )
    print(f"  per-epoch overhead {percent:+.1f}% wall, {cpu_percent:+.1f}% CPU time of this process")
    print(
        "  fixed cost per stage run (W&B start + last write + best restore + finish + artifact): "
        f"{fixed['median']:.2f} s"
    )
    row = {
        "benchmark": (
            f"`training.py`: {args.epochs}-epoch runs of the {args.arch} network through the stage machinery, "
            "a bare epoch timed inside each epoch"
        ),
        "baseline": f"bare PyTorch loop, same batches: {images / b['median']:,.0f} images/s",
        "measured": (
            f"{images / e['median']:,.0f} images/s, **{percent:+.1f}% per epoch** wall ({len(stage)} pairs; "
            f"the control, a bare loop in the stage's place, reads {100 * (control['median'] - 1):+.1f}%), "
            f"{cpu_percent:+.1f}% in CPU time; plus {fixed['median']:.2f} s once per run (W&B start, last write, "
            "best restore, finish, artifact)"
        ),
        "goal": "<= +2%",
    }
    goals = [
        Goal("training: per-epoch overhead over a bare loop, wall (median)", percent, "<=", 2.0, "%"),
        Goal("training: per-epoch overhead over a bare loop, CPU time (median)", cpu_percent, "<=", 2.0, "%"),
    ]
    deciles = statistics.quantiles([s.wall / x.wall for s, x in zip(stage, bare)], n=10)
    record(
        "training",
        environment,
        [row],
        goals,
        {
            "bare_epoch_s": b,
            "stage_epoch_s": e,
            "stage_over_bare": raw,
            "stage_over_bare_deciles": deciles,
            "stage_over_bare_cpu": raw_cpu,
            "control_ratio": control,
            "control_ratio_cpu": control_cpu,
            "fixed_s": fixed,
            "images_per_epoch": images,
        },
    )


if __name__ == "__main__":
    main()
