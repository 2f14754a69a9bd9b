"""Evaluating all 167 compositions vs the forward passes alone over the same number of pre-materialised images.

    .venv/bin/python benchmarks/evaluation.py [--arch emnist] [--images 500]

The evaluation corrupts every test batch under every composition (prefix-shared, in a background thread) and
collects accuracy, loss and penultimate statistics; the baseline only runs the network's forward passes on
already-corrupted tensors. Goal (issue 5): evaluation at most 1.15x the forward passes.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch

from comprobust.compositions import paper_compositions
from comprobust.corruptions import corrupt_many
from comprobust.data import load_dataset
from comprobust.evaluation import evaluate, monolithic
from comprobust.models import build_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="emnist", help="emnist (the paper's network) or small")
    parser.add_argument("--images", type=int, default=500, help="test images (per class: images/10)")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    compositions = paper_compositions()
    with tempfile.TemporaryDirectory() as tmp:
        data = load_dataset("mnist5k", root=tmp, split_sizes={"train": 10, "valid": 10, "test": args.images // 10})
    network = build_network(args.arch, data.spec.num_classes, in_channels=1, image_size=28).eval()
    test = data.test
    materialised = []
    for start in range(0, len(test), args.batch_size):
        images = test.images[start:start + args.batch_size]
        for _, corrupted in corrupt_many(images, compositions, indices=torch.arange(start, start + len(images)).numpy()):
            materialised.append(data.normalize(corrupted))
    count = sum(len(x) for x in materialised)

    with torch.no_grad():
        network(materialised[0])  # warm-up
        start = time.perf_counter()
        for x in materialised:
            network.forward_features(x)
        forward_s = time.perf_counter() - start
    start = time.perf_counter()
    evaluate(monolithic(network), data, compositions, batch_size=args.batch_size)
    evaluate_s = time.perf_counter() - start
    ratio = evaluate_s / forward_s
    print(f"arch {args.arch}: {len(test)} test images x {len(compositions)} compositions = {count:,} images")
    print(f"  forward passes alone   {forward_s:7.2f} s  {count / forward_s:9,.0f} images/s")
    print(f"  full evaluation        {evaluate_s:7.2f} s  {count / evaluate_s:9,.0f} images/s")
    print(f"  ratio {ratio:.3f}x  (goal <= 1.15x: {'met' if ratio <= 1.15 else 'NOT met'})")


if __name__ == "__main__":
    main()
