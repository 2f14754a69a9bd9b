"""A picture of a dataset: rows are samples of a few classes, columns are Identity and the six elementals (for a
cue dataset: its conditions, `exhaustive` by default)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from comprobust.atomic import atomic_open
from comprobust.corruptions import abbreviate, corrupt_batch
from comprobust.data.dataset import CueDataset, LoadedDataset
from comprobust.data.loaders import ELEMENTAL_SETS
from comprobust.errors import UserError


def pick_samples(data: LoadedDataset, split: str, classes: int, per_class: int, seed: int) -> np.ndarray:
    """Positions in `split` of `per_class` random images of each of the first `classes` classes present."""
    labels = data.split(split).labels.numpy()
    rng = np.random.default_rng(seed)
    picked = []
    for label in np.unique(labels)[:classes]:
        members = np.flatnonzero(labels == label)
        picked.extend(rng.choice(members, size=min(per_class, len(members)), replace=False).tolist())
    if not picked:
        raise UserError(f"the {split} split of {data.name} is empty; nothing to show")
    return np.asarray(picked)


def save_sample_grid(
    data: LoadedDataset,
    out: str | Path,
    split: str = "train",
    classes: int = 6,
    per_class: int = 1,
    corruptions: Sequence[str] = ELEMENTAL_SETS,
    seed: int = 0,
    conditions: object = "exhaustive",
) -> Path:
    """Write a PNG grid (rows: samples, columns: corruptions, or a cue dataset's `conditions`) to `out` atomically;
    returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positions = pick_samples(data, split, classes, per_class, seed)
    images = data.split(split).images[torch.from_numpy(positions)]
    labels = data.split(split).labels[torch.from_numpy(positions)].tolist()
    if isinstance(data, CueDataset):
        chosen = data.conditions(conditions)
        titles = [f"{c.name}\n(length {c.length})" for c in chosen]
        columns = [
            torch.from_numpy(data.entry.render(data.parts[split], positions, c, seed).images) for c in chosen
        ]
        what = "under each condition"
    else:
        titles = [f"{name}\n({abbreviate(name)})" for name in corruptions]
        columns = [corrupt_batch(images, name, seed=seed, indices=positions) for name in corruptions]
        what = "under Identity and the elementals"
    names = data.spec.class_names
    size = 1.3
    height, width = data.spec.image_hw
    fig, axes = plt.subplots(
        len(positions),
        len(columns),
        squeeze=False,
        figsize=(size * len(columns) + 0.6, size * height / width * len(positions) + 0.5),
    )
    for col, (title, batch) in enumerate(zip(titles, columns, strict=True)):
        axes[0, col].set_title(title, fontsize=8)
        for row in range(len(positions)):
            ax = axes[row, col]
            pixels = batch[row].permute(1, 2, 0).numpy()
            if pixels.shape[2] == 1:
                ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            else:
                ax.imshow(pixels, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                label = labels[row]
                ax.set_ylabel(f"{names[label] if names else label}", fontsize=8, rotation=0, labelpad=14)
    fig.suptitle(f"{data.name} ({split}): samples per class {what}", fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    with atomic_open(out, "wb") as handle:
        handle.write(buffer.getvalue())
    return Path(out)
