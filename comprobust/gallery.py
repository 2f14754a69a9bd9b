"""A picture of what the corruptions do: sample images (rows) under Identity, the elementals and compositions."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from comprobust.atomic import atomic_open
from comprobust.corruptions import ELEMENTALS, CompositionLike, abbreviate, corrupt, parse_composition

DEFAULT_COMPOSITIONS: tuple[str, ...] = (
    "Identity",
    *ELEMENTALS,
    "Contrast-Rotate90",
    "ImpulseNoise-GaussianBlur",
    "Swirl-Invert-ImpulseNoise",
    "GaussianBlur-Contrast-Rotate90-Swirl",
    "Invert-Rotate90-Contrast-ImpulseNoise-Swirl-GaussianBlur",
)


def render_gallery(
    panels: Sequence[tuple[str, np.ndarray]],
    out_path: str | Path,
    compositions: Sequence[CompositionLike] = DEFAULT_COMPOSITIONS,
    seed: int = 0,
) -> Path:
    """Draw each panel's uint8 images (N,H,W) or (N,H,W,3) under every composition into one PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compositions = [parse_composition(c) for c in compositions]
    rows = sum(len(images) for _, images in panels)
    fig, axes = plt.subplots(
        rows, len(compositions), figsize=(1.15 * len(compositions), 1.2 * rows + 0.6), squeeze=False
    )
    row = 0
    for title, images in panels:
        outputs = [corrupt(images, c, seed=seed) for c in compositions]
        for i in range(len(images)):
            for col, (composition, out) in enumerate(zip(compositions, outputs)):
                ax = axes[row, col]
                ax.imshow(out[i], cmap="gray" if out.ndim == 3 else None, vmin=0, vmax=255)
                ax.set_xticks([])
                ax.set_yticks([])
                if row == 0:
                    ax.set_title(abbreviate(composition), fontsize=7)
                if col == 0 and i == 0:
                    ax.set_ylabel(title, fontsize=7)
            row += 1
    fig.suptitle("comprobust corruptions (applied left to right)", fontsize=9)
    fig.tight_layout()
    out_path = Path(out_path)
    with atomic_open(out_path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)
    return out_path
