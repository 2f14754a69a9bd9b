"""Data-loading speed: loaders vs pre-materialised tensors, and their share of an EMNIST training step.

Run: `.venv/bin/python benchmarks/data.py` (offline: uses the mnist5k default, 28x28 grey like EMNIST). Prints
images/s of the paired loader (7 views, on-the-fly corruption + crop/flip) against iterating tensors that were
corrupted and normalised beforehand, and the time per batch of each loader as a share of one SGD step of the
paper's EMNIST network (2 CPU threads). Loader passes are repeated 5 times (min reported), the data/step split
is the median over 8 steps in which fetching and computing alternate, so load hits both. Goal: data
preparation under 10% of the step time.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import REPEATS, Goal, record, setup  # noqa: E402

from comprobust.corruptions import ELEMENTALS, corrupt_batch  # noqa: E402
from comprobust.data.dataset import load_dataset
from comprobust.data.loaders import MixedElementalLoader, PairedViewLoader  # noqa: E402

THREADS = 2
VIEWS = ELEMENTALS + ("Identity",)  # the Contrastive method's 7 views, 36 images each (256 // 7)
PER_VIEW = 256 // 7
ERM_BATCH = 256


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
    row = {
        "benchmark": f"`data.py`: paired loader ({len(VIEWS)} views, on-the-fly corruption)",
        "baseline": f"iterating pre-materialised tensors: {per_batch_images / pre_s:,.0f} images/s",
        "measured": (
            f"{per_batch_images / paired_s:,.0f} images/s; **data {worst:.1%} of an EMNIST-network SGD "
            f"step** (worst loader, {THREADS} threads)"
        ),
        "goal": "data < 10% of the step",
    }
    goal = Goal("data: share of an EMNIST-network training step (worst loader)", 100 * worst, "<", 10.0, "%")
    record(
        "data",
        environment,
        [row],
        [goal],
        {
            "paired_s_per_batch": paired_s,
            "materialised_s_per_batch": pre_s,
            "erm_s_per_batch": erm_s,
            "shares": shares,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
