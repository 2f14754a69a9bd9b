"""Evaluating all 167 compositions vs the forward passes alone over the same pre-materialised images.

    .venv/bin/python benchmarks/evaluation.py [--arch emnist] [--images 60] [--threads 1] [--repeats 5]

The evaluation corrupts every test batch under every composition (prefix-shared, on the model's device) and
collects accuracy, loss and penultimate statistics; the baseline only runs the network's forward passes on
already-corrupted, normalised tensors. Rounds alternate their order; the figure is the median paired ratio.
Goal: evaluation at most 1.03x the forward passes.
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from harness import REPEATS, Goal, interleave, ratio, record, setup, spread

from comprobust.compositions import paper_compositions
from comprobust.corruptions import corrupt_many
from comprobust.data.dataset import load_dataset
from comprobust.evaluation import evaluate, monolithic
from comprobust.models import build_network


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="emnist", help="emnist (the paper's network) or small")
    parser.add_argument("--images", type=int, default=60, help="test images (per class: images/10)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    environment = setup(args.threads)
    compositions = paper_compositions()
    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset(
            "mnist5k", root=tmp, split_sizes={"train": 10, "valid": 10, "test": args.images // 10}
        )
    network = build_network(args.arch, data.spec.num_classes, in_channels=1, image_size=28).eval()
    test = data.test
    materialised = []
    for start in range(0, len(test), args.batch_size):
        images = test.images[start : start + args.batch_size]
        for _, corrupted in corrupt_many(
            images, compositions, indices=torch.arange(start, start + len(images)).numpy()
        ):
            materialised.append(data.normalize(corrupted))
    count = sum(len(x) for x in materialised)

    def forward() -> None:
        with torch.no_grad():
            for x in materialised:
                network.forward_features(x)

    forward()  # warm-up
    seconds = interleave(
        {
            "forward": forward,
            "evaluate": lambda: evaluate(monolithic(network), data, compositions, batch_size=args.batch_size),
        },
        args.repeats,
    ).wall
    overhead = ratio(seconds["evaluate"], seconds["forward"])
    f, e = spread(seconds["forward"]), spread(seconds["evaluate"])
    print(
        f"arch {args.arch}: {len(test)} test images x {len(compositions)} compositions = {count:,} images, "
        f"min/median of {args.repeats}"
    )
    print(
        f"  forward passes alone   {f['min']:7.2f} / {f['median']:7.2f} s  {count / f['median']:9,.0f} images/s"
    )
    print(
        f"  full evaluation        {e['min']:7.2f} / {e['median']:7.2f} s  {count / e['median']:9,.0f} images/s"
    )
    print(f"  ratio {overhead['median']:.3f}x (paired ratios {overhead['min']:.3f}-{overhead['max']:.3f})")
    row = {
        "benchmark": f"`evaluation.py`: the paper's {args.arch.upper()} network on {len(test)} test images x 167 "
        "compositions",
        "baseline": f"forward passes alone on pre-corrupted tensors: {count / f['median']:,.0f} images/s",
        "measured": (
            f"{count / e['median']:,.0f} images/s, **{overhead['median']:.3f}x** (paired ratios "
            f"{overhead['min']:.3f}-{overhead['max']:.3f})"
        ),
        "goal": "<= 1.03x",
    }
    goal = Goal(
        "evaluation: time over the forward passes alone (median)", overhead["median"], "<=", 1.03, "x"
    )
    record(
        "evaluation",
        environment,
        [row],
        [goal],
        {"forward_s": f, "evaluate_s": e, "ratio": overhead, "images": count, "arch": args.arch},
    )


if __name__ == "__main__":
    main()
