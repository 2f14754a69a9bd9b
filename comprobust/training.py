"""The one training loop every stage uses.

SGD (momentum 0.9, weight decay 5e-4; the default) or AdamW (betas 0.9/0.999, decoupled decay, no decay on biases,
norms and tokens; see `comprobust.optim`) with an optional linear warmup and a cosine schedule over `max_epochs`, a
checkpoint every epoch (model, optimiser, scheduler, epoch, RNG state, history) written atomically, resume from the
last checkpoint, and the best-validation weights restored at the end (the paper's effective model selection).
Without warmup the schedule is torch's `CosineAnnealingLR`, as it always was (so SGD runs are bit-identical to the
loop before AdamW existed); with warmup it is `optim.warmup_cosine_scheduler`, a checkpointed `LambdaLR`. What a
stage trains and how it computes its losses is a `TrainTask`; this module knows nothing about methods.

Checkpoints are written off the critical path (`comprobust.checkpoints`): each epoch's state is packed and
serialised to bytes on the training thread (a few milliseconds) and written, still atomically and in order, by one
background thread while the next epoch trains. An epoch is logged only once its checkpoint is on disk (so its W&B
record arrives one epoch later than its progress line), and `fit` waits for the last write before it returns or
raises: whatever is logged can be resumed, exactly.
"""

from __future__ import annotations

import functools
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from comprobust.checkpoints import (
    BEST,
    LAST,
    CheckpointWriter,
    encode_checkpoint,
    load_checkpoint,
    write_epoch,
)
from comprobust.device import FP32, Precision
from comprobust.errors import UserError
from comprobust.optim import OPTIMIZERS, build_optimizer, warmup_cosine_scheduler


class TrainingDiverged(UserError):
    """The validation loss became NaN or infinite: the run diverged (usually: the learning rate is too high)."""


@dataclass(frozen=True)
class TrainConfig:
    """Budget and optimiser settings of one training run."""

    lr: float
    max_epochs: int
    momentum: float = 0.9
    weight_decay: float = 5e-4
    patience: int | None = None  # stop after this many epochs without a better validation value
    cosine_epochs: int | None = None  # T_max of the cosine schedule (default max_epochs)
    optimizer: str = "sgd"  # "sgd" (with `momentum`) | "adamw" (betas 0.9/0.999, decoupled `weight_decay`)
    warmup_epochs: int = 0  # linear warmup lr*(e+1)/(w+1) for epochs e < w, then the cosine
    min_improvement: float = 0.0  # the fraction of the best validation loss a new best must undercut it by

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"optimizer: {self.optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
        total = self.schedule_epochs
        warmup = self.warmup_epochs
        valid = isinstance(warmup, int) and not isinstance(warmup, bool) and 0 <= warmup < max(total, 1)
        if not valid:  # no warmup is always valid (max_epochs 0 is fit's error to report)
            raise UserError(
                f"warmup_epochs: {self.warmup_epochs!r} must be an integer in 0..{total - 1} "
                f"(below the {total} epochs of the schedule)"
            )

    def improves(self, val_loss: float, best: float) -> bool:
        """Whether an epoch with `val_loss` becomes the best: with `min_improvement` 0 (the paper's rule) when it
        is at most `best` (a tie counts), else when it undercuts `best` by more than that fraction of it. A slow
        creep at the end of an annealed schedule then leaves the best epoch where the curve flattened."""
        if self.min_improvement == 0 or math.isinf(best):
            return val_loss <= best
        return val_loss < best - self.min_improvement * abs(best)

    @property
    def schedule_epochs(self) -> int:
        """The length of the learning-rate schedule: `cosine_epochs`, else `max_epochs`."""
        return self.cosine_epochs or self.max_epochs

    def build(self, named_parameters: list[tuple[str, nn.Parameter]]) -> tuple[torch.optim.Optimizer, Any]:
        """The optimiser and the per-epoch scheduler of this config over `named_parameters`."""
        optimizer = build_optimizer(
            self.optimizer, named_parameters, self.lr, self.weight_decay, momentum=self.momentum
        )
        scheduler: Any
        if self.warmup_epochs == 0:  # the loop's schedule before warmup existed, kept for bit-identical runs
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.schedule_epochs)
        else:
            scheduler = warmup_cosine_scheduler(optimizer, self.warmup_epochs, self.schedule_epochs)
        return optimizer, scheduler


StepMetrics = dict[str, float | torch.Tensor]
"""A training step's metrics: floats, or 0-d tensors left on the device (the loop reads them once per epoch, so
a GPU step never waits on the host)."""


class TrainTask(Protocol):
    """What a stage trains: its trainable module, its batches and how to score them."""

    model: nn.Module  # the trainable part: optimised, checkpointed and restored to its best weights

    def train_batches(self, epoch: int) -> Iterable[Any]:
        """The training batches of `epoch` (deterministic given the epoch)."""

    def train_step(self, batch: Any) -> tuple[torch.Tensor, StepMetrics]:
        """Loss to minimise on one batch, plus metrics to average over the epoch (e.g. train_acc)."""

    def validate(self) -> dict[str, float]:
        """Validation metrics; must include `val_loss` (lower is better, ties count as improvement)."""


@dataclass
class FitResult:
    """The outcome of `fit`: best epoch and its metrics, per-epoch history, checkpoint paths."""

    best_epoch: int
    best_metrics: dict[str, float]
    history: list[dict[str, float]]
    best_path: Path
    last_path: Path
    resumed_from: int | None = None
    epochs_run: list[int] = field(default_factory=list)


EpochLogger = Callable[[dict[str, float], int], None]


def fit(
    task: TrainTask,
    config: TrainConfig,
    checkpoint_dir: Path,
    identity: dict[str, Any],
    log_epoch: EpochLogger | None = None,
    label: str = "train",
    precision: Precision = FP32,
) -> FitResult:
    """Train `task.model` to `config`, checkpointing under `checkpoint_dir`; resume if a checkpoint is there.

    `identity` (the stage's resolved config and hash) is stored in every checkpoint; a checkpoint whose identity or
    parameter shapes differ is refused instead of being resumed. `precision` may run the task's steps and
    validation under bf16 autocast and the model in channels_last (both off by default).
    """
    checkpoint_dir = Path(checkpoint_dir)
    model = precision.prepare(task.model)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    parameters = [p for _, p in named]
    if not parameters:
        raise ValueError(f"{label}: the task's model has no trainable parameters")
    optimizer, scheduler = config.build(named)
    history: list[dict[str, float]] = []
    best = {"epoch": -1, "val_loss": math.inf}
    start_epoch = 0
    resumed_from = None

    state = load_checkpoint(checkpoint_dir / LAST, identity, model)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        history, best = list(state["history"]), dict(state["best"])
        start_epoch = resumed_from = int(state["epoch"]) + 1
        if log_epoch is not None:
            _relog(history, log_epoch)

    progress = Progress(label, config.max_epochs, start_epoch)
    epochs_run = []
    with CheckpointWriter() as writer:
        for epoch in range(start_epoch, config.max_epochs):
            if _patience_exhausted(history, best, config.patience):
                break
            with precision.autocast(parameters[0].device):
                record = _train_epoch(task, optimizer, scheduler, epoch, label, config.lr)
            history.append(record)
            improved = config.improves(record["val_loss"], best["val_loss"])
            if improved:
                best = {"epoch": epoch, **{k: v for k, v in record.items() if k.startswith("val_")}}
            state = {
                "identity": identity,
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "history": history,
                "best": best,
            }
            logged = {**record, "best_epoch": best["epoch"]}
            writer.submit(
                write_epoch,
                checkpoint_dir,
                encode_checkpoint(state),
                improved,
                then=None if log_epoch is None else functools.partial(log_epoch, logged, epoch),
            )
            epochs_run.append(epoch)
            progress.update(epoch, record, improved)

    if best["epoch"] < 0:
        raise UserError(f"{label}: max_epochs={config.max_epochs} trains nothing; set max_epochs >= 1")
    best_state = load_checkpoint(checkpoint_dir / BEST, identity, model)
    assert best_state is not None, "fit wrote a best checkpoint (best epoch >= 0)"
    model.load_state_dict(best_state["model"])
    model.eval()
    return FitResult(
        best_epoch=int(best["epoch"]),
        best_metrics={k: v for k, v in best.items() if k != "epoch"},
        history=history,
        best_path=checkpoint_dir / BEST,
        last_path=checkpoint_dir / LAST,
        resumed_from=resumed_from,
        epochs_run=epochs_run,
    )


def _train_epoch(
    task: TrainTask,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    epoch: int,
    label: str,
    lr_setting: float,
) -> dict[str, float]:
    """One epoch of training and validation; the epoch's record (train means, validation metrics, lr, time)."""
    started = time.perf_counter()
    model = task.model
    model.train()
    steps: dict[str, list[float | torch.Tensor]] = {}
    for batch in task.train_batches(epoch):
        loss, metrics = task.train_step(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        for key, value in {"train_loss": loss.detach(), **metrics}.items():
            steps.setdefault(key, []).append(value)
    if not steps:  # every step records its train_loss
        raise UserError(
            f"{label}: no training batch in epoch {epoch}: the train split is smaller than one batch"
        )
    lr = optimizer.param_groups[0]["lr"]
    model.eval()
    with torch.no_grad():
        val = task.validate()
    scheduler.step()
    record = {key: _step_mean(values) for key, values in steps.items()}
    record.update(val)
    record.update(epoch=epoch, lr=lr, epoch_time=time.perf_counter() - started)
    if not math.isfinite(record["val_loss"]):
        raise TrainingDiverged(
            f"{label}: validation loss is {record['val_loss']} after epoch {epoch + 1} "
            f"(train loss {record.get('train_loss')}): training diverged; lower lr "
            f"(now {lr_setting})"
        )
    return record


def _step_mean(values: list[float | torch.Tensor]) -> float:
    """The mean of one metric's per-step values, summed in step order in float64: the same bits as summing each
    step's float as it came. Tensors are read in one transfer (a GPU is waited for once per epoch, not per step)."""
    tensors = [value for value in values if isinstance(value, torch.Tensor)]
    if len(tensors) == len(values):
        values = torch.stack(tensors).tolist()
    total = 0.0
    for value in values:
        total += float(value)
    return total / len(values)


def _relog(history: list[dict[str, float]], log_epoch: EpochLogger) -> None:
    """Log the epochs restored from a checkpoint again: W&B may never have received them (the client flushes
    every few seconds, a kill loses the rest). Online, wandb drops the steps the server already has, so each
    epoch is kept once; offline, the resumed attempt's log holds the whole history on its own."""
    best = {"epoch": -1, "val_loss": math.inf}
    for record in history:
        if record["val_loss"] <= best["val_loss"]:
            best = {"epoch": record["epoch"], "val_loss": record["val_loss"]}
        log_epoch({**record, "best_epoch": best["epoch"]}, int(record["epoch"]))


def _patience_exhausted(
    history: list[dict[str, float]], best: dict[str, float], patience: int | None
) -> bool:
    return patience is not None and bool(history) and history[-1]["epoch"] - best["epoch"] >= patience


class Progress:
    """A one-line progress bar on a terminal; plain log lines (one per epoch) otherwise."""

    def __init__(self, label: str, total: int, start: int, stream=None) -> None:
        self.label, self.total, self.stream = label, total, stream or sys.stderr
        self.interactive = hasattr(self.stream, "isatty") and self.stream.isatty()
        if start:
            self._write(f"{label}: resuming at epoch {start + 1}/{total}\n")

    def update(self, epoch: int, record: dict[str, float], improved: bool) -> None:
        metrics = "  ".join(
            f"{key} {record[key]:.4g}" for key in ("train_loss", "val_loss", "val_acc") if key in record
        )
        line = f"{self.label}: epoch {epoch + 1}/{self.total}  {metrics}  {record['epoch_time']:.1f}s"
        line += " *" if improved else ""
        if self.interactive:
            done = int(20 * (epoch + 1) / self.total)
            self._write(
                f"\r[{'#' * done}{'.' * (20 - done)}] {line}\033[K"
                + ("\n" if epoch + 1 == self.total else "")
            )
        else:
            self._write(line + "\n")

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
