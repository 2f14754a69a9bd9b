"""Test a trained system on every composition: accuracy and mean cross-entropy on the whole test split, plus
penultimate-layer statistics (per-class mean and std, per-unit max) for the invariance scores.

Systems (paper section 6): a monolithic classifier; the Modular backbone with the modules of the corruptions in
the composition chosen by oracle and applied by level, then by position in the composition; ImgSpace, where the
auto-encoders of the composition's corruptions run in composition order before the classifier. Corruptions are
applied to whole batches on the model's device, sharing prefixes across compositions, in the evaluating thread:
on a CPU they cost about 1% of the EMNIST network's forward passes (a background thread oversubscribed the
cores and cost more than it hid), and on a GPU they queue as kernels like the forward passes. A shard evaluates
a contiguous slice of the sorted compositions; merged shards equal an unsharded run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from comprobust.atomic import atomic_open
from comprobust.corruptions import ELEMENTALS, abbreviate, corrupt_many
from comprobust.data.dataset import LoadedDataset
from comprobust.device import FP32, Precision
from comprobust.errors import UserError
from comprobust.invariance import invariance_scores
from comprobust.methods.common import Export, StageContext
from comprobust.models.blocks import BlockNetwork
from comprobust.runs import EvalRun

Composition = tuple[str, ...]
Forward = Callable[[torch.Tensor, Composition], tuple[torch.Tensor, torch.Tensor]]


def shard_compositions(compositions: Sequence[Composition], shard: int, shards: int) -> list[Composition]:
    """Contiguous slice `shard` of `shards` of the sorted compositions (every composition in exactly one shard)."""
    ordered = sorted(compositions)
    bounds = np.linspace(0, len(ordered), shards + 1).round().astype(int)
    return ordered[bounds[shard] : bounds[shard + 1]]


def monolithic(classifier: BlockNetwork) -> Forward:
    return lambda x, composition: classifier.forward_features(x)


def modular(
    backbone: BlockNetwork, modules: Mapping[str, tuple[int, nn.Module]], reverse: bool = False
) -> Forward:
    """Oracle module choice: the modules of the composition's corruptions, by level then by position in the
    composition (`reverse`: modules sharing a level run in the reverse of that order)."""

    def forward(x: torch.Tensor, composition: Composition) -> tuple[torch.Tensor, torch.Tensor]:
        by_level: dict[int, list[nn.Module]] = {}
        for name in composition:
            if name != "Identity":
                level, module = modules[name]
                by_level.setdefault(level, []).append(module)
        if reverse:
            by_level = {level: chain[::-1] for level, chain in by_level.items()}
        return backbone.forward_features(x, by_level)

    return forward


def imgspace(autoencoders: Mapping[str, nn.Module], classifier: BlockNetwork) -> Forward:
    """Oracle auto-encoder choice: undo the composition's corruptions in composition order, then classify."""

    def forward(x: torch.Tensor, composition: Composition) -> tuple[torch.Tensor, torch.Tensor]:
        for name in composition:
            if name != "Identity":
                x = autoencoders[name](x)
        return classifier.forward_features(x)

    return forward


def build_system(
    kind: str, inputs: Mapping[str, list[Export]], device: torch.device, module_order: str = "composition"
) -> Forward:
    """The forward function of an evaluated system from its input models (`module_order`: see `modular`)."""
    if kind == "monolithic":
        return monolithic(inputs["classifier"][0].build_network(device))
    if kind == "modular":
        modules = {e.meta["corruption"]: (int(e.meta["level"]), e.build(device)) for e in inputs["modules"]}
        _require_all(modules, "modules")
        return modular(
            inputs["backbone"][0].build_network(device), modules, reverse=module_order == "reverse"
        )
    if kind == "imgspace":
        autoencoders = {e.meta["corruption"]: e.build(device) for e in inputs["autoencoders"]}
        _require_all(autoencoders, "autoencoders")
        return imgspace(autoencoders, inputs["classifier"][0].build_network(device))
    raise UserError(f"unknown system kind {kind!r}")


def _require_all(found: Mapping[str, Any], what: str) -> None:
    missing = [c for c in ELEMENTALS if c not in found]
    if missing:
        raise UserError(f"the {what} of {', '.join(missing)} are missing: train those runs before evaluating")


@dataclass
class CompositionStats:
    """Running sums for one composition."""

    correct: int = 0
    loss_sum: float = 0.0
    count: int = 0
    class_sum: np.ndarray | None = None
    class_sq: np.ndarray | None = None
    class_count: np.ndarray | None = None
    unit_max: np.ndarray | None = None

    def add(
        self, logits: torch.Tensor, features: torch.Tensor, labels: torch.Tensor, num_classes: int
    ) -> None:
        self.correct += int((logits.argmax(1) == labels).sum())
        self.loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        self.count += labels.numel()
        f = features.double()
        # per-class sums by scattering rows (a one-hot matrix product did 10x the arithmetic on zeros)
        sums = f.new_zeros(num_classes, f.shape[1]).index_add_(0, labels, f).numpy()
        squares = f.new_zeros(num_classes, f.shape[1]).index_add_(0, labels, f * f).numpy()
        counts = torch.bincount(labels, minlength=num_classes).double().numpy()
        batch_max = torch.amax(f, 0).numpy()  # max(0) also finds the indices: six times as long
        if self.class_sum is None:
            self.class_sum, self.class_sq, self.class_count, self.unit_max = sums, squares, counts, batch_max
        else:
            self.class_sum += sums
            self.class_sq += squares
            self.class_count += counts
            self.unit_max = np.maximum(self.maxima(), batch_max)

    def _sums(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.class_sum is None or self.class_sq is None or self.class_count is None:
            raise ValueError("no batch was added to these statistics")
        return self.class_sum, self.class_sq, self.class_count

    def maxima(self) -> np.ndarray:
        """Each unit's maximum activation over the images seen."""
        if self.unit_max is None:
            raise ValueError("no batch was added to these statistics")
        return self.unit_max

    def class_mean(self) -> np.ndarray:
        class_sum, _, class_count = self._sums()
        return (class_sum / np.maximum(class_count, 1)[:, None]).astype(np.float32)

    def class_std(self) -> np.ndarray:
        class_sum, class_sq, class_count = self._sums()
        mean = class_sum / np.maximum(class_count, 1)[:, None]
        var = class_sq / np.maximum(class_count, 1)[:, None] - mean**2
        return np.sqrt(np.clip(var, 0, None)).astype(np.float32)


@dataclass
class EvaluationResult:
    rows: list[dict[str, Any]]  # one per composition
    stats: dict[Composition, CompositionStats] = field(repr=False)


def _corrupted_batches(
    data: LoadedDataset, compositions: Sequence[Composition], batch_size: int, seed: int, device: torch.device
) -> Iterator[tuple[Composition, torch.Tensor, torch.Tensor]]:
    """(composition, normalised batch on `device`, labels) for every test batch and composition."""
    split = data.test
    for start in range(0, len(split), batch_size):
        images = split.images[start : start + batch_size].to(device)
        labels = split.labels[start : start + batch_size]
        indices = np.arange(start, start + len(labels))
        for composition, corrupted in corrupt_many(images, compositions, seed=seed, indices=indices):
            yield composition, data.normalize(corrupted), labels


def evaluate(
    forward: Forward,
    data: LoadedDataset,
    compositions: Sequence[Composition],
    batch_size: int = 512,
    seed: int = 0,
    device: torch.device | None = None,
    precision: Precision = FP32,
) -> EvaluationResult:
    """Accuracy, mean loss and penultimate statistics of `forward` on each composition of the test split.

    The test images are corrupted on `device` (default: the CPU), where the system's models are; `precision` may
    add bf16 autocast and channels_last inputs (statistics are always accumulated in float64).
    """
    device = device or torch.device("cpu")
    stats = {composition: CompositionStats() for composition in compositions}
    with torch.no_grad():
        for composition, x, y in _corrupted_batches(data, compositions, batch_size, seed, device):
            with precision.autocast(device):
                logits, features = forward(precision.inputs(x), composition)
            stats[composition].add(
                logits.float().cpu(), features.flatten(1).float().cpu(), y, data.spec.num_classes
            )
    rows = [
        {
            "composition": "-".join(c),
            "abbreviation": abbreviate(c),
            "length": len(c),
            "elements": " ".join(c),
            "accuracy": 100.0 * s.correct / s.count,
            "loss": s.loss_sum / s.count,
            "images": s.count,
        }
        for c, s in ((c, stats[c]) for c in compositions)
    ]
    return EvaluationResult(rows, stats)


def summary_metrics(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Dashboard summaries: mean accuracy overall, on elementals, on compositions, and per length."""

    def mean(selected: list[float]) -> float:
        return float(np.mean(selected)) if selected else float("nan")

    out = {
        "acc/mean": mean([r["accuracy"] for r in rows]),
        "acc/identity": mean([r["accuracy"] for r in rows if r["composition"] == "Identity"]),
        "acc/elementals": mean(
            [r["accuracy"] for r in rows if r["length"] == 1 and r["composition"] != "Identity"]
        ),
        "acc/compositions": mean([r["accuracy"] for r in rows if r["length"] >= 2]),
        "loss/mean": mean([r["loss"] for r in rows]),
    }
    for length in sorted({r["length"] for r in rows}):
        out[f"acc/length_{length}"] = mean([r["accuracy"] for r in rows if r["length"] == length])
    return out


def save_stats(path, stats: Mapping[Composition, CompositionStats]) -> None:
    """Penultimate statistics of every composition in one compressed npz (float32), written atomically."""
    arrays = {}
    for composition, s in stats.items():
        key = "-".join(composition)
        arrays[f"{key}/class_mean"] = s.class_mean()
        arrays[f"{key}/class_std"] = s.class_std()
        arrays[f"{key}/unit_max"] = s.maxima().astype(np.float32)
    with atomic_open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def load_stats(path) -> tuple[dict[Composition, np.ndarray], dict[Composition, np.ndarray]]:
    """(class means, unit maxima) per composition from `save_stats` files."""
    means, maxima = {}, {}
    with np.load(path) as data:
        for key in data.files:
            name, _, field_name = key.rpartition("/")
            composition = tuple(name.split("-"))
            if field_name == "class_mean":
                means[composition] = data[key]
            elif field_name == "unit_max":
                maxima[composition] = data[key]
    return means, maxima


def evaluate_run(
    ctx: StageContext, run: EvalRun, experiment, tracker
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The `evaluate` stage: evaluate, log the table, summaries, statistics artifact and invariance scores.
    Returns the run's metrics (its W&B summary) and outputs (for its done record)."""
    shard, shards = run.shard, run.shards
    compositions = shard_compositions(experiment.compositions, shard, shards)
    forward = build_system(run.system, ctx.inputs, ctx.device, run.module_order)
    settings = experiment.evaluation
    result = evaluate(
        forward,
        ctx.data,
        compositions,
        settings.batch_size,
        seed=run.seed,
        device=ctx.device,
        precision=Precision(bf16=settings.bf16, channels_last=settings.channels_last),
    )
    columns = ["composition", "abbreviation", "length", "elements", "accuracy", "loss", "images"]
    tracker.log_table("compositions", columns, [[row[c] for c in columns] for row in result.rows])
    summary = summary_metrics(result.rows)
    stats_path = ctx.out_dir / "activation_stats.npz"
    save_stats(stats_path, result.stats)
    invariance_rows = []
    if shards == 1:
        means = {c: s.class_mean() for c, s in result.stats.items()}
        maxima = {c: s.maxima() for c, s in result.stats.items()}
        for score in invariance_scores(means, maxima):
            invariance_rows.append(
                [
                    "-".join(score.composition),
                    len(score.composition),
                    score.elemental,
                    score.composition_score,
                    score.units,
                ]
            )
        if invariance_rows:
            tracker.log_table(
                "invariance",
                ["composition", "length", "elemental_invariance", "composition_invariance", "units"],
                invariance_rows,
            )
            summary["invariance/elemental_median"] = float(np.nanmedian([r[2] for r in invariance_rows]))
            summary["invariance/composition_median"] = float(np.nanmedian([r[3] for r in invariance_rows]))
    tracker.summary_update({**summary, "system": run.system, "label": run.label})
    tracker.log_checkpoint(
        stats_path,
        run.artifact,
        metadata={"kind": "activation_stats"},
        aliases=("latest",),
        artifact_type="stats",
    )
    return summary, {"rows": result.rows, "invariance": invariance_rows, "stats": str(stats_path)}
