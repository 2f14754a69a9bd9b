"""Data-loading speed: loaders vs pre-materialised tensors, and their share of an EMNIST training step.

Run: `.venv/bin/python benchmarks/data.py` (offline: uses the mnist5k default, 28x28 grey like EMNIST). Prints
images/s of the paired loader (7 views, on-the-fly corruption + crop/flip) against iterating tensors that were
corrupted and normalised beforehand, and the time per batch of each loader as a share of one SGD step of the
paper's EMNIST network (2 CPU threads). Loader passes are repeated 5 times (min reported), the data/step split
is the median over 8 steps in which fetching and computing alternate, so load hits both. Goal: data
preparation under 10% of the step time.

Then the time of `PREFETCH_STEPS` SGD steps (about half an epoch) of the demo's `small` network fed by each loader,
plain (each batch made between steps) and prefetched (`loader_workers: 1`: `comprobust.data.prefetch`, one
background thread), interleaved over 5 rounds (min / median and the median of the paired ratios); with training
at 2 threads (the pinned count: 3 busy threads on a 2-core machine) and at 1 (training and loader one core each).
"""

from __future__ import annotations

import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import REPEATS, Goal, interleave, ratio, record, setup, spread  # noqa: E402

from comprobust.corruptions import ELEMENTALS, corrupt_batch  # noqa: E402
from comprobust.data.dataset import load_dataset
from comprobust.data.loaders import MixedElementalLoader, PairedViewLoader  # noqa: E402
from comprobust.data.prefetch import prefetch  # noqa: E402
from comprobust.models import build_network  # noqa: E402

THREADS = 2
VIEWS = ELEMENTALS + ("Identity",)  # the Contrastive method's 7 views, 36 images each (256 // 7)
PER_VIEW = 256 // 7
ERM_BATCH = 256
PREFETCH_STEPS = 40


def emnist_network() -> nn.Module:
    """The paper's EMNIST network (comprobust.models when available, else the same layers inline)."""
    try:
        from comprobust.models import build_network

        return build_network("emnist", num_classes=47, in_channels=1, image_size=28)
    except ImportError:

        def conv(cin: int, cout: int, p: float) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 5, 2, 2), nn.Dropout2d(p), nn.ReLU()]

        return nn.Sequential(
            *conv(1, 64, 0.1),
            *conv(64, 128, 0.3),
            *conv(128, 256, 0.5),
            *conv(256, 256, 0.5),
            nn.Flatten(),
            nn.Linear(1024, 512),
            nn.Dropout(0.5),
            nn.ReLU(),
            nn.Linear(512, 47),
        )


def seconds_per_batch(make_iter, repeats: int = REPEATS) -> tuple[float, int]:
    """Best-of-`repeats` seconds per batch of one pass over `make_iter(repeat)`, and the batch count."""
    results = []
    for repeat in range(repeats):
        start, count = time.perf_counter(), 0
        for _ in make_iter(repeat):
            count += 1
        results.append((time.perf_counter() - start) / count)
    return min(results), count


def training_loop_shares(model: nn.Module, batches, views: int, steps: int = 8) -> tuple[float, float]:
    """Run `steps` SGD steps fed by `batches`, timing the data fetch and the step separately.

    Data and compute alternate as in real training, so both see the same machine load. Returns the median
    seconds of (data fetch, step), after 2 warm-up steps.
    """
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    data_times, step_times = [], []
    iterator = iter(batches)
    for i in range(steps + 2):
        start = time.perf_counter()
        x, y = next(iterator)
        if (
            views > 1
        ):  # paired views: (V, B, ...) -> (V * B, ...), as the Contrastive method concatenates them
            x, y = x.flatten(0, 1), y.repeat(views)
        fetched = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        optimiser.step()
        if i >= 2:
            data_times.append(fetched - start)
            step_times.append(time.perf_counter() - fetched)
    return statistics.median(data_times), statistics.median(step_times)


def sgd_epoch(model: nn.Module, loader, epoch: int, views: int, prefetched: bool) -> None:
    """`PREFETCH_STEPS` SGD steps on epoch `epoch` of `loader`, its batches made between steps or by `prefetch`'s
    background thread."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    model.train()
    batches = prefetch(loader.batches(epoch)) if prefetched else loader.batches(epoch)
    try:
        for x, y in itertools.islice(batches, PREFETCH_STEPS):
            if views > 1:
                x, y = x.flatten(0, 1), y.repeat(views)
            optimiser.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            optimiser.step()
    finally:
        batches.close()  # the producer joined inside the timing


def epoch_runner(model: nn.Module, loader, views: int, prefetched: bool, epochs: Iterator[int]):
    """A callable running `sgd_epoch` on the next epoch of `epochs` (each round sees new batches)."""
    return lambda: sgd_epoch(model, loader, next(epochs), views, prefetched)


def prefetch_epochs(data, cases) -> dict[str, dict]:
    """Seconds of `PREFETCH_STEPS` steps, plain vs prefetched, of the `small` network on each (name, loader, views,
    threads): wall clock, and the paired ratios of wall and of CPU time (all threads of this process)."""
    figures = {}
    for name, loader, views, threads in cases:
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        model = build_network("small", data.spec.num_classes, in_channels=1, image_size=28)
        epochs = itertools.count()
        sgd_epoch(model, loader, 0, views, False)  # warm-up
        timings = interleave(
            {
                "plain": epoch_runner(model, loader, views, False, epochs),
                "prefetched": epoch_runner(model, loader, views, True, epochs),
            }
        )
        plain, ahead = spread(timings.wall["plain"]), spread(timings.wall["prefetched"])
        paired = ratio(timings.wall["prefetched"], timings.wall["plain"])
        cpu = ratio(timings.cpu["prefetched"], timings.cpu["plain"])
        figures[name] = {
            "threads": threads,
            "plain_s": plain,
            "prefetched_s": ahead,
            "ratio": paired,
            "cpu_ratio": cpu,
        }
        print(
            f"{name:38s} {PREFETCH_STEPS} steps plain {plain['min']:5.2f} / {plain['median']:5.2f} s, prefetched "
            f"{ahead['min']:5.2f} / {ahead['median']:5.2f} s (min / median of {plain['n']}): prefetched/plain "
            f"{paired['median']:.3f} (paired ratios {paired['min']:.3f}-{paired['max']:.3f}), CPU time "
            f"{cpu['median']:.3f}"
        )
    torch.set_num_threads(THREADS)
    return figures


def main() -> int:
    environment = setup(THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset("mnist5k", root=tmp)  # 3000 train images of 1x28x28
        n = len(data.train)

        # 1. paired loader vs pre-materialised tensors (same order, same batch shape)
        paired = PairedViewLoader(data, "train", views=VIEWS, batch_size=PER_VIEW, seed=0)
        paired_s, batches = seconds_per_batch(lambda r: paired.batches(r))
        pre = torch.stack([data.normalize(corrupt_batch(data.train.images, v, seed=0)) for v in VIEWS])

        def materialised(epoch: int):
            order = torch.randperm(n, generator=torch.Generator().manual_seed(epoch))
            for b in range(n // PER_VIEW):
                idx = order[b * PER_VIEW : (b + 1) * PER_VIEW]
                yield pre[:, idx], data.train.labels[idx]

        pre_s, _ = seconds_per_batch(materialised)
        per_batch_images = len(VIEWS) * PER_VIEW
        print(
            f"paired loader ({len(VIEWS)} views x {PER_VIEW}, on-the-fly corruption): "
            f"{per_batch_images / paired_s:,.0f} images/s ({paired_s * 1e3:.2f} ms/batch, {batches} batches)"
        )
        print(
            f"pre-materialised tensors (same batches):                   "
            f"{per_batch_images / pre_s:,.0f} images/s ({pre_s * 1e3:.2f} ms/batch)"
        )
        print(f"pre-materialised tensors are {paired_s / pre_s:.1f}x faster than the paired loader")

        # 2. ERM loader over the elemental sets (made in memory when the loader is built)
        erm = MixedElementalLoader(data, batch_size=ERM_BATCH, seed=0)
        erm_s, _ = seconds_per_batch(lambda r: erm.batches(r))

        # 3. share of a training step of the paper's EMNIST network, measured inside a training loop
        model = emnist_network()
        print(f"ERM loader over the elemental sets: {erm_s * 1e3:.2f} ms/batch of {ERM_BATCH} alone")
        worst, shares = 0.0, {}
        for name, loader, views in (
            ("ERM mixed elementals", erm, 1),
            (f"paired views ({len(VIEWS)}, on the fly)", paired, len(VIEWS)),
        ):
            data_s, train_s = training_loop_shares(model, loader.batches(5), views)
            share = data_s / (data_s + train_s)
            worst = max(worst, share)
            shares[name] = {"data_s": data_s, "step_s": train_s, "share": share}
            print(
                f"{name:30s} data {data_s * 1e3:6.2f} ms + EMNIST-network SGD step {train_s * 1e3:7.1f} ms "
                f"({THREADS} threads): data = {share:5.1%} of the step time (data/step "
                f"{data_s / train_s:.3f})"
            )

        # 4. training time with and without prefetching (loader_workers: 1), the demo's small network
        prefetching = prefetch_epochs(
            data,
            [
                (f"paired views ({len(VIEWS)}), {THREADS} threads", paired, len(VIEWS), THREADS),
                (f"ERM mixed elementals, {THREADS} threads", erm, 1, THREADS),
                (f"paired views ({len(VIEWS)}), 1 thread", paired, len(VIEWS), 1),
            ],
        )
    row = {
        "benchmark": f"`data.py`: paired loader ({len(VIEWS)} views, on-the-fly corruption)",
        "baseline": f"iterating pre-materialised tensors: {per_batch_images / pre_s:,.0f} images/s",
        "measured": (
            f"{per_batch_images / paired_s:,.0f} images/s; **data {worst:.1%} of an EMNIST-network SGD "
            f"step** (worst loader, {THREADS} threads)"
        ),
        "goal": "data < 10% of the step",
    }
    first = next(iter(prefetching.values()))
    prefetch_row = {
        "benchmark": (
            f"`data.py`: {PREFETCH_STEPS} SGD steps of the small network on each loader, batches prefetched by "
            "one thread (`loader_workers: 1`)"
        ),
        "baseline": f"batches made between steps (paired views, {THREADS} threads: {first['plain_s']['median']:.2f} s)",
        "measured": "; ".join(
            f"{name}: **{figure['ratio']['median']:.3f}x** the plain time (paired ratios "
            f"{figure['ratio']['min']:.2f}-{figure['ratio']['max']:.2f})"
            for name, figure in prefetching.items()
        ),
        "goal": "– (the same batches; a gain only where data is a share of the step)",
    }
    goal = Goal("data: share of an EMNIST-network training step (worst loader)", 100 * worst, "<", 10.0, "%")
    record(
        "data",
        environment,
        [row, prefetch_row],
        [goal],
        {
            "paired_s_per_batch": paired_s,
            "materialised_s_per_batch": pre_s,
            "erm_s_per_batch": erm_s,
            "shares": shares,
            "prefetch_epochs": prefetching,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
