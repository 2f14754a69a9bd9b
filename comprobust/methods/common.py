"""What every method's `train(context)` shares: the stage context, model exports, classifier tasks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn
from torch.nn import functional as F

from comprobust.atomic import atomic_open
from comprobust.data.dataset import CueDataset, LoadedDataset
from comprobust.device import Precision
from comprobust.errors import UserError
from comprobust.methods.specs import COMMON_PARAMS
from comprobust.models import build_autoencoder, build_module, build_network
from comprobust.models.blocks import BlockNetwork
from comprobust.runs import MODEL_FILE
from comprobust.stage_config import UNLISTED_DEFAULTS
from comprobust.training import EpochLogger, FitResult, StepMetrics, TrainConfig, fit

if TYPE_CHECKING:
    from comprobust.data.loaders import PairedViewLoader

T = TypeVar("T")
EXPORT_FORMAT = 1
EXPORT_FILE = MODEL_FILE


@dataclass
class StageContext:
    """Everything a method needs to train one stage run."""

    run_id: str
    stage: str
    seed: int
    corruption: str | None
    params: Mapping[str, Any]
    identity: Mapping[str, Any]
    data: LoadedDataset
    arch: str
    device: torch.device
    out_dir: Path
    inputs: Mapping[str, list[Export]] = field(default_factory=dict)
    log_epoch: EpochLogger | None = None
    log_extra: Callable[[str, list[str], list[list[Any]]], None] | None = None  # (key, columns, rows) tables
    loader_workers: int = 0  # the stage's `loader_workers` (not a param: it leaves the batches as they are)

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The stage's `TrainConfig` (with `overrides` of its params)."""
        p = {**self.resolved_params(), **overrides}
        return TrainConfig(
            lr=p["lr"],
            max_epochs=p["max_epochs"],
            momentum=p["momentum"],
            weight_decay=p["weight_decay"],
            patience=p["patience"],
            cosine_epochs=p.get("cosine_epochs"),
            optimizer=p["optimizer"],
            warmup_epochs=p["warmup_epochs"],
            min_improvement=p["min_improvement"],
        )

    def resolved_params(self) -> dict[str, Any]:
        """The stage's params with the `UNLISTED_DEFAULTS` they leave out at their defaults (`optimizer`,
        `warmup_epochs`, `bf16`, ...: out of the params, so runs planned before they existed keep their ids)."""
        return {**{key: COMMON_PARAMS[key] for key in UNLISTED_DEFAULTS}, **self.params}

    def precision(self) -> Precision:
        """The stage's `bf16` and `channels_last` (off, and out of its params, unless a stage sets them)."""
        params = self.resolved_params()
        return Precision(bf16=params["bf16"], channels_last=params["channels_last"])

    def prefetch(self, batches: Iterable[T]) -> Iterable[T]:
        """The training `batches` as they are (`loader_workers: 0`), or made by one background thread, the next
        batch while the model trains on this one (`loader_workers: 1`, `comprobust.data.prefetch`): the same
        batches either way, bit for bit."""
        if not self.loader_workers:
            return batches
        from comprobust.data.prefetch import prefetch

        return prefetch(batches)

    @property
    def views_device(self) -> torch.device | None:
        """Where paired views are made (`PairedViewLoader(device=)`): the training device when it is not the CPU,
        so a GPU never waits for CPU corruption; None (the CPU loader, single-threaded) on a CPU."""
        return None if self.device.type == "cpu" else self.device

    def paired_views(self, split: str, views: Sequence[str], batch_size: int) -> PairedViewLoader:
        """The stage's loader of `views` of `split` (`batch_size` images per view), seeded by `data_seed(split)`,
        its views made on `views_device`."""
        from comprobust.data.loaders import PairedViewLoader

        return PairedViewLoader(
            self.data,
            split,
            views=views,
            batch_size=batch_size,
            seed=self.data_seed(split),
            device=self.views_device,
        )

    def clean_batches(self, batch_size: int) -> tuple[Callable[[int], Iterable], Callable[[], Iterable]]:
        """(an epoch's training batches, the validation batches) of clean, augmented (x, y): the Identity view of
        `paired_views`, the training batches through `prefetch`."""
        train, valid = (self.paired_views(split, ("Identity",), batch_size) for split in ("train", "valid"))
        return (
            lambda epoch: ((x[0], y) for x, y in self.prefetch(train.batches(epoch))),
            lambda: ((x[0], y) for x, y in valid.batches(0)),
        )

    def stream_seed(self, *salt: Any) -> int:
        """A 63-bit seed from (experiment seed, stage, corruption, `salt`) only.

        Never from the run id or config hash: a field with no scientific effect (data root, output folder,
        W&B project, cluster) or a changed hyper-parameter leaves every draw as it was, and the seed alone
        says which replicate a run is.
        """
        text = "/".join(str(s) for s in (self.seed, self.stage, self.corruption, *salt))
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1

    def seed_torch(self, *salt: Any) -> None:
        """Seed torch's global generator (initialisation, dropout) from `stream_seed("torch", *salt)`."""
        torch.manual_seed(self.stream_seed("torch", *salt))

    def data_seed(self, split: str) -> int:
        """The seed of a loader of `split`: its data order, crop/flip and fresh noise derive from it."""
        return self.stream_seed("data", split)

    def shape_args(self) -> dict[str, Any]:
        """`in_channels` and `image_size` (a side, or (H, W) for rectangular images) of the dataset."""
        spec = self.data.spec
        return {"in_channels": spec.channels, "image_size": spec.image_size}

    def new_network(self) -> BlockNetwork:
        return build_network(self.arch, self.data.spec.num_classes, **self.shape_args()).to(self.device)

    def fit(
        self,
        task: Any,
        checkpoint_dir: Path | None = None,
        config: TrainConfig | None = None,
        identity: Mapping[str, Any] | None = None,
        label: str | None = None,
        log: bool = True,
    ) -> FitResult:
        return fit(
            task,
            config or self.train_config(),
            checkpoint_dir or self.out_dir / "checkpoints",
            dict(identity or self.identity),
            self.log_epoch if log else None,
            label or self.run_id,
            precision=self.precision(),
        )

    def export(self, kind: str, state: Mapping[str, torch.Tensor], meta: Mapping[str, Any]) -> Export:
        export = Export(
            kind=kind,
            arch=self.arch,
            num_classes=self.data.spec.num_classes,
            in_channels=self.data.spec.channels,
            image_size=self.data.spec.image_size,
            state={k: v.detach().cpu() for k, v in state.items()},
            meta=dict(meta),
            path=self.out_dir / EXPORT_FILE,
        )
        export.save()
        return export


@dataclass
class Export:
    """A trained model as handed to downstream stages: self-describing, loadable with weights_only=True."""

    kind: str  # "network" | "module" | "autoencoder"
    arch: str
    num_classes: int
    in_channels: int
    image_size: int | tuple[int, int]  # a side, or (H, W) for rectangular images
    state: Mapping[str, torch.Tensor]
    meta: Mapping[str, Any]
    path: Path

    def save(self) -> None:
        payload = {
            "format": EXPORT_FORMAT,
            "kind": self.kind,
            "arch": self.arch,
            "num_classes": self.num_classes,
            "in_channels": self.in_channels,
            "image_size": self.image_size,
            "state": dict(self.state),
            "meta": dict(self.meta),
        }
        with atomic_open(self.path, "wb") as handle:
            torch.save(payload, handle)

    @classmethod
    def load(cls, path: Path, expected_kind: str | None = None) -> Export:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise UserError(
                f"model file {path} is corrupt or unreadable ({type(err).__name__}); rerun the stage "
                "that produced it"
            ) from err
        if payload.get("format") != EXPORT_FORMAT:
            raise UserError(f"{path} is not a comprobust model file (format {EXPORT_FORMAT})")
        if expected_kind is not None and payload["kind"] != expected_kind:
            raise UserError(f"{path} holds a {payload['kind']}, but a {expected_kind} is needed here")
        return cls(
            payload["kind"],
            payload["arch"],
            payload["num_classes"],
            payload["in_channels"],
            _image_size(payload["image_size"]),
            payload["state"],
            payload["meta"],
            Path(path),
        )

    def build_network(self, device: torch.device) -> BlockNetwork:
        """The trained classifier (kind "network") in eval mode, parameters frozen."""
        model = self.build(device)
        if not isinstance(model, BlockNetwork):
            raise UserError(f"{self.path}: a {self.kind} where a classifier network was expected")
        return model

    def build(self, device: torch.device) -> nn.Module:
        """The trained model in eval mode, parameters frozen."""
        shape: dict[str, Any] = {"in_channels": self.in_channels, "image_size": self.image_size}
        model: nn.Module
        if self.kind == "network":
            model = build_network(self.arch, self.num_classes, **shape)
        elif self.kind == "module":
            model = build_module(self.arch, int(self.meta["level"]), **shape)
        elif self.kind == "autoencoder":
            model = build_autoencoder(self.arch, **shape)
        else:
            raise UserError(f"{self.path}: unknown model kind {self.kind!r}")
        model.load_state_dict(self.state)
        model.to(device).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        return model


def _image_size(value: Any) -> int | tuple[int, int]:
    """An export's `image_size` as saved: an int side, or (H, W) (saved as a tuple)."""
    return (int(value[0]), int(value[1])) if isinstance(value, (tuple, list)) else int(value)


def cue_data(ctx: StageContext) -> CueDataset:
    """The stage's dataset as a cue dataset; a UserError when the experiment's dataset has no conditions."""
    if not isinstance(ctx.data, CueDataset):
        from comprobust.data.cue_datasets import CUE_DATASETS

        raise UserError(
            f"stage {ctx.stage}: this method trains on a cue dataset's conditions ({', '.join(CUE_DATASETS)}), "
            f"not on {ctx.data.name}"
        )
    return ctx.data


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy in percent: the one unit of every accuracy comprobust logs (training and evaluation)."""
    return float(accuracy_tensor(logits, labels))


def accuracy_tensor(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """`accuracy` as a float64 0-d tensor on the logits' device (the same value): a training step returns it so
    that the loop reads it once per epoch instead of waiting for the device after every step."""
    return (logits.argmax(dim=1) == labels).float().mean().double() * 100.0


def mean_metrics(batches: Iterable[tuple[dict[str, float], int]]) -> dict[str, float]:
    """Average per-batch metric dicts weighted by batch size (every example counts once)."""
    totals: dict[str, float] = {}
    count = 0
    for metrics, size in batches:
        count += size
        for key, value in metrics.items():
            totals[key] = totals.get(key, 0.0) + value * size
    if count == 0:
        raise UserError("validation split is empty: give the dataset a non-zero 'valid' split size")
    return {key: value / count for key, value in totals.items()}


class ClassifierTask:
    """Cross-entropy training of a whole network on (x, y) batches; validation on another batch source."""

    def __init__(
        self,
        model: nn.Module,
        train_batches: Callable[[int], Iterable],
        valid_batches: Callable[[], Iterable],
        device: torch.device,
    ) -> None:
        self.model, self._train, self._valid, self.device = model, train_batches, valid_batches, device

    def train_batches(self, epoch: int) -> Iterable:
        return self._train(epoch)

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, StepMetrics]:
        x, y = (t.to(self.device) for t in batch)
        logits = self.model(x)
        return F.cross_entropy(logits, y), {"train_acc": accuracy_tensor(logits, y)}

    def validate(self) -> dict[str, float]:
        def scored():
            for x, y in self._valid():
                x, y = x.to(self.device), y.to(self.device)
                logits = self.model(x)
                yield {"val_loss": float(F.cross_entropy(logits, y)), "val_acc": accuracy(logits, y)}, len(y)

        return mean_metrics(scored())


def views_as_batch(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(V, B, C, H, W) paired views and (B,) labels -> (V*B, C, H, W) and (V*B,), view-major."""
    return x.reshape(-1, *x.shape[2:]), y.repeat(x.shape[0])


class PairedContrastiveTask:
    """Training on paired views with loss = cross-entropy + weighted NT-Xent (Contrastive, Modular modules).

    Subclasses implement `_losses(batch) -> (ce, ctv, accuracy)`; validation averages over the valid split's paired
    batches (at most `valid_limit` of them), monitoring ce + ctv as the paper does.
    """

    def __init__(
        self,
        ctx: StageContext,
        model: nn.Module,
        views: tuple[str, ...],
        per_view: int,
        valid_limit: int | None = None,
    ) -> None:
        self.ctx, self.model, self.valid_limit = ctx, model, valid_limit
        self.train_loader, self.valid_loader = (
            ctx.paired_views(split, views, per_view) for split in ("train", "valid")
        )

    def _losses(
        self, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(cross-entropy, contrastive loss, `accuracy_tensor`) of one batch."""
        raise NotImplementedError

    def train_batches(self, epoch: int) -> Iterable:
        return self.ctx.prefetch(self.train_loader.batches(epoch))

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, StepMetrics]:
        ce, ctv, acc = self._losses(batch)
        return ce + ctv, {"train_acc": acc, "train_ce": ce.detach(), "train_ctv": ctv.detach()}

    def validate(self) -> dict[str, float]:
        def scored():
            for i, batch in enumerate(self.valid_loader.batches(0)):
                if self.valid_limit is not None and i >= self.valid_limit:
                    return
                ce, ctv, acc = self._losses(batch)
                yield (
                    {
                        "val_loss": float(ce + ctv),
                        "val_ce": float(ce),
                        "val_ctv": float(ctv),
                        "val_acc": float(acc),
                    },
                    batch[0].shape[0] * batch[0].shape[1],
                )

        return mean_metrics(scored())
