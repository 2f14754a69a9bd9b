"""Training and evaluation speed of the paper's EMNIST and CIFAR networks on whatever device is present.

    .venv/bin/python benchmarks/device.py [--device cuda] [--bf16] [--channels-last] [--repeats 5]

Per network: training images/s with corruption on the device (one elemental per step, as the ERM loader mixes
them), the data share of a step (corrupt + normalise vs the whole step, synchronised at both ends; goal < 5%);
the same for Contrastive's step fed by the real `PairedViewLoader` making its 7 views on the device (crop, the six
elementals with fresh noise, normalise); and evaluation of all 167 compositions vs the forward passes alone on
pre-corrupted tensors (goal <= 1.05x).
The images are bundled samples (digits, photo patches), so nothing is downloaded; sizes grow on a GPU.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from harness import REPEATS, Goal, interleave, ratio, record, setup, spread
from torch.nn import functional as F

from comprobust.compositions import paper_compositions
from comprobust.corruptions import ELEMENTALS, corrupt_batch, corrupt_many
from comprobust.data.dataset import ImageSplit, LoadedDataset
from comprobust.data.loaders import PairedViewLoader
from comprobust.data.registry import get_dataset_spec
from comprobust.device import Precision, best_device
from comprobust.evaluation import evaluate, monolithic
from comprobust.losses import multiview_nt_xent
from comprobust.methods.common import views_as_batch
from comprobust.models import build_network
from comprobust.sample_images import sample_digits, sample_photo_patches

DATASETS = {"emnist": "emnist", "cifar": "cifar10"}


def synthetic(arch: str, count: int) -> LoadedDataset:
    """`count` bundled sample images as the test split of the network's dataset (labels cycle the classes)."""
    spec = get_dataset_spec(DATASETS[arch])
    images = (
        sample_digits(count)[:, None]
        if spec.channels == 1
        else sample_photo_patches(count).transpose(0, 3, 1, 2)
    )
    split = ImageSplit(
        "test", torch.from_numpy(np.ascontiguousarray(images)), torch.arange(count) % spec.num_classes
    )
    return LoadedDataset(
        spec, split, split, split, (0.5,) * spec.channels, (0.25,) * spec.channels, Path("."), {}
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(
    network: torch.nn.Module,
    device: torch.device,
    precision: Precision,
    steps: int,
    next_batch: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
) -> tuple[float, float]:
    """(images/s, data share of a step) of SGD steps on `network`: `next_batch(step)` makes the batch (the data
    part), `loss_of(x, y)` its loss, run in `precision` (its input format and autocast); medians over `steps`
    after two warm-up steps."""
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    network.train()
    data_s, step_s, images = [], [], 0
    for step in range(steps + 2):
        sync(device)
        start = time.perf_counter()
        x, y = next_batch(step)
        sync(device)
        fetched = time.perf_counter()
        with precision.autocast(device):
            loss = loss_of(precision.inputs(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        if step >= 2:  # warm-up steps excluded
            data_s.append(fetched - start)
            step_s.append(time.perf_counter() - start)
            images = len(x)
    step_time = statistics.median(step_s)
    return images / step_time, statistics.median(data_s) / step_time


def training(
    network: torch.nn.Module,
    data: LoadedDataset,
    device: torch.device,
    precision: Precision,
    batch: int,
    steps: int,
) -> tuple[float, float]:
    """(images/s of SGD steps fed by on-device corruption, data share of a step): medians over `steps`."""
    images, labels = data.test.images[:batch].to(device), data.test.labels[:batch].to(device)

    def corrupted(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return data.normalize(corrupt_batch(images, ELEMENTALS[step % len(ELEMENTALS)], seed=step)), labels

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(network(x), y)

    return timed_steps(network, device, precision, steps, corrupted, loss_of)


def contrastive_training(
    network: torch.nn.Module,
    data: LoadedDataset,
    device: torch.device,
    precision: Precision,
    batch: int,
    steps: int,
) -> tuple[float, float]:
    """(images/s, data share) of Contrastive's SGD steps, each fed by `PairedViewLoader` making Identity + the six
    elementals of `batch // 7` images on `device`: medians over `steps` (the loader's epochs repeat as needed)."""
    views = (*ELEMENTALS, "Identity")
    loader = PairedViewLoader(
        data, "train", views=views, batch_size=batch // len(views), seed=0, device=device
    )
    stream = (b for epoch in range(10_000) for b in loader.batches(epoch))

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits, features = network.forward_features(x)
        return F.cross_entropy(logits, y.to(device)) + multiview_nt_xent(features, len(views), 0.15, 1.0)

    return timed_steps(network, device, precision, steps, lambda step: views_as_batch(*next(stream)), loss_of)


def evaluation(
    network: torch.nn.Module,
    data: LoadedDataset,
    device: torch.device,
    precision: Precision,
    batch: int,
    repeats: int,
) -> tuple[dict, dict, int]:
    """Paired ratios of evaluate() over forward passes alone, seconds of both, and the image count."""
    network.eval()
    compositions = paper_compositions()
    images = data.test.images.to(device)
    materialised = [
        precision.inputs(data.normalize(x))
        for start in range(0, len(images), batch)
        for _, x in corrupt_many(
            images[start : start + batch],
            compositions,
            indices=np.arange(start, min(start + batch, len(images))),
        )
    ]

    def forward() -> None:
        with torch.no_grad(), precision.autocast(device):
            for x in materialised:
                network.forward_features(x)
        sync(device)

    def full() -> None:
        evaluate(
            monolithic(network), data, compositions, batch_size=batch, device=device, precision=precision
        )
        sync(device)

    forward()
    timings = interleave({"forward": forward, "evaluate": full}, repeats)
    count = sum(len(x) for x in materialised)
    return ratio(timings.wall["evaluate"], timings.wall["forward"]), spread(timings.wall["forward"]), count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default=str(best_device()))
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    environment = setup(args.threads)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    environment["device"] = torch.cuda.get_device_name(device) if gpu else "cpu"
    precision = Precision(bf16=args.bf16, channels_last=args.channels_last)
    batch, steps, test_images = (512, 30, 2000) if gpu else (64, 8, 20)
    rows, goals, figures = [], [], {}
    for arch in DATASETS:
        data = synthetic(arch, max(batch, test_images))
        data.test = ImageSplit("test", data.test.images[:test_images], data.test.labels[:test_images])
        network = precision.prepare(
            build_network(
                arch, data.spec.num_classes, in_channels=data.spec.channels, image_size=data.spec.image_size
            ).to(device)
        )
        train_rate, share = training(network, synthetic(arch, batch), device, precision, batch, steps)
        views_rate, views_share = contrastive_training(
            network, synthetic(arch, batch), device, precision, batch, steps
        )
        overhead, forward_s, count = evaluation(network, data, device, precision, batch, args.repeats)
        print(
            f"{arch} on {environment['device']}: training {train_rate:,.0f} images/s (batch {batch}), data "
            f"{share:.1%} of a step; Contrastive {views_rate:,.0f} images/s, its 7 views {views_share:.1%} of a "
            f"step; evaluation {overhead['median']:.3f}x the forward passes "
            f"({count / forward_s['median']:,.0f} images/s forward)"
        )
        rows.append(
            {
                "benchmark": f"`device.py`: the paper's {arch.upper()} network on {environment['device']} "
                f"({'bf16' if args.bf16 else 'fp32'}{', channels_last' if args.channels_last else ''})",
                "baseline": f"forward passes alone: {count / forward_s['median']:,.0f} images/s",
                "measured": (
                    f"training {train_rate:,.0f} images/s, data **{share:.1%}** of a step; Contrastive "
                    f"{views_rate:,.0f} images/s, its 7 views **{views_share:.1%}** of a step; evaluation "
                    f"**{overhead['median']:.3f}x** the forward passes"
                ),
                "goal": "data < 5% (both); <= 1.05x",
            }
        )
        goals += [
            Goal(f"device {arch}: data share of a training step (median)", 100 * share, "<", 5.0, "%"),
            Goal(
                f"device {arch}: Contrastive's 7 views' share of its step (median)",
                100 * views_share,
                "<",
                5.0,
                "%",
            ),
            Goal(
                f"device {arch}: evaluation over forward passes (median)", overhead["median"], "<=", 1.05, "x"
            ),
        ]
        figures[arch] = {
            "train_images_per_s": train_rate,
            "data_share": share,
            "contrastive_images_per_s": views_rate,
            "contrastive_views_share": views_share,
            "eval_ratio": overhead,
            "forward_s": forward_s,
            "images": count,
            "batch": batch,
        }
    record("device", environment, rows, goals, figures)


if __name__ == "__main__":
    main()
