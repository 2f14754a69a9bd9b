"""The training loop: learning, best-validation restore, atomic checkpoints, exact resume after SIGKILL, refusals."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers.toy_task import IDENTITY, ToyTask
from torch import nn

from comprobust.checkpoints import BEST, LAST, PREVIOUS, read_checkpoint
from comprobust.device import Precision
from comprobust.errors import UserError
from comprobust.training import TrainConfig, fit


def test_fit_learns_and_restores_the_best_validation_weights(tmp_path: Path) -> None:
    task = ToyTask()
    logged = []
    result = fit(
        task, TrainConfig(lr=0.1, max_epochs=6), tmp_path, IDENTITY, lambda m, e: logged.append((e, m))
    )
    assert [e for e, _ in logged] == list(range(6))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    best = min(result.history, key=lambda r: r["val_loss"])
    assert result.best_epoch == best["epoch"]
    # The model holds the best epoch's weights, as validated.
    task.model.eval()
    with torch.no_grad():
        assert task.validate()["val_loss"] == pytest.approx(best["val_loss"], abs=1e-6)
    # Learning-rate follows the cosine schedule from lr down.
    lrs = [r["lr"] for r in result.history]
    assert lrs[0] == pytest.approx(0.1) and all(a > b for a, b in zip(lrs, lrs[1:]))
    for name in (LAST, BEST, PREVIOUS):
        state = torch.load(tmp_path / name, weights_only=True)
        assert state["identity"] == IDENTITY
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_completed_run_is_not_trained_again(tmp_path: Path) -> None:
    fit(ToyTask(), TrainConfig(lr=0.1, max_epochs=3), tmp_path, IDENTITY)
    again = fit(ToyTask(), TrainConfig(lr=0.1, max_epochs=3), tmp_path, IDENTITY)
    assert again.epochs_run == [] and again.resumed_from == 3


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from helpers.toy_task import IDENTITY, ToyTask
    from comprobust.training import TrainConfig, fit

    def die_after_epoch_1(metrics, epoch):
        if epoch == 1:
            os.kill(os.getpid(), signal.SIGKILL)

    fit(ToyTask(), TrainConfig(lr=0.1, max_epochs=5), Path({folder!r}), IDENTITY, die_after_epoch_1)
    """
)


def test_run_killed_after_epoch_1_resumes_at_epoch_2_and_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    script = KILLED_RUN.format(tests=str(Path(__file__).parent), folder=str(tmp_path / "killed"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert torch.load(tmp_path / "killed" / LAST, weights_only=True)["epoch"] == 1

    resumed_task = ToyTask()
    resumed = fit(resumed_task, TrainConfig(lr=0.1, max_epochs=5), tmp_path / "killed", IDENTITY)
    assert resumed.resumed_from == 2 and resumed.epochs_run == [2, 3, 4]

    straight_task = ToyTask()
    straight = fit(straight_task, TrainConfig(lr=0.1, max_epochs=5), tmp_path / "straight", IDENTITY)
    assert [r["val_loss"] for r in resumed.history] == [r["val_loss"] for r in straight.history]
    assert [r["train_loss"] for r in resumed.history] == [r["train_loss"] for r in straight.history]
    for a, b in zip(resumed_task.model.state_dict().values(), straight_task.model.state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_of_another_config_or_architecture_is_refused(tmp_path: Path) -> None:
    fit(ToyTask(), TrainConfig(lr=0.1, max_epochs=1), tmp_path, IDENTITY)
    with pytest.raises(
        UserError, match="belongs to another run.*config_hash: checkpoint 'abc123' vs run 'zzz'"
    ):
        fit(ToyTask(), TrainConfig(lr=0.1, max_epochs=2), tmp_path, {**IDENTITY, "config_hash": "zzz"})
    wider = ToyTask()
    wider.model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    with pytest.raises(UserError, match="another architecture"):
        fit(wider, TrainConfig(lr=0.1, max_epochs=2), tmp_path, IDENTITY)


def test_corrupt_checkpoint_is_reported_and_the_previous_one_kept(tmp_path: Path) -> None:
    fit(ToyTask(), TrainConfig(lr=0.1, max_epochs=2), tmp_path, IDENTITY)
    previous = (tmp_path / PREVIOUS).read_bytes()
    last = tmp_path / LAST
    last.write_bytes(last.read_bytes()[: len(last.read_bytes()) // 2])
    with pytest.raises(
        UserError, match=f"{LAST} is corrupt or truncated.*previous good checkpoint is .*{PREVIOUS}"
    ):
        fit(ToyTask(), TrainConfig(lr=0.1, max_epochs=3), tmp_path, IDENTITY)
    assert (tmp_path / PREVIOUS).read_bytes() == previous
    assert torch.load(tmp_path / PREVIOUS, weights_only=True)["epoch"] == 0


def test_patience_stops_early(tmp_path: Path) -> None:
    task = ToyTask()
    calls: list[int] = []

    def worse_every_epoch() -> dict[str, float]:
        calls.append(0)
        return {"val_loss": float(len(calls))}

    task.validate = worse_every_epoch
    result = fit(task, TrainConfig(lr=0.1, max_epochs=10, patience=2), tmp_path, IDENTITY)
    assert result.epochs_run == [0, 1, 2] and result.best_epoch == 0


def test_min_improvement_keeps_the_best_epoch_where_the_curve_flattened(tmp_path: Path) -> None:
    """A validation loss creeping down by 0.03% an epoch: under the paper's rule every epoch is the best, with a
    0.1% tolerance the best stays at the epoch after the last real drop, and both restore that epoch's weights."""
    curve = [2.0, 1.5, 1.2, 1.2 * 0.9997, 1.2 * 0.9997**2, 1.2 * 0.9997**3]

    def fit_on(config: TrainConfig, folder: Path) -> int:
        task = ToyTask()
        calls: list[int] = []

        def creeping() -> dict[str, float]:
            calls.append(0)
            return {"val_loss": curve[len(calls) - 1]}

        task.validate = creeping
        return fit(task, config, folder, IDENTITY).best_epoch

    assert fit_on(TrainConfig(lr=0.1, max_epochs=6), tmp_path / "paper") == 5
    assert fit_on(TrainConfig(lr=0.1, max_epochs=6, min_improvement=0.001), tmp_path / "tolerant") == 2
    config = TrainConfig(lr=0.1, max_epochs=6, min_improvement=0.001)
    assert config.improves(1.0, math.inf) and config.improves(0.998, 1.0) and not config.improves(0.9995, 1.0)
    assert TrainConfig(lr=0.1, max_epochs=6).improves(1.0, 1.0)  # the paper's rule: a tie counts


def test_divergence_is_reported_with_the_learning_rate(tmp_path: Path) -> None:
    task = ToyTask()
    task.validate = lambda: {"val_loss": float("nan")}
    with pytest.raises(
        UserError, match="validation loss is nan after epoch 1.*training diverged; lower lr \\(now 0.1\\)"
    ):
        fit(task, TrainConfig(lr=0.1, max_epochs=3), tmp_path, IDENTITY)


def test_training_accuracy_is_a_percent_like_evaluation():
    """One unit for every logged accuracy: training's val_acc/train_acc are percents, as evaluation's are."""
    from comprobust.methods.common import accuracy

    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [2.0, 0.0]])
    assert accuracy(logits, torch.tensor([0, 1, 0, 1])) == 75.0


def test_a_failed_background_checkpoint_write_fails_fit_and_is_never_logged(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the checkpoint folder should be")
    logged = []
    with pytest.raises(OSError):
        fit(
            ToyTask(),
            TrainConfig(lr=0.1, max_epochs=3),
            blocker / "checkpoints",
            IDENTITY,
            lambda metrics, epoch: logged.append(epoch),
        )
    assert logged == []  # an epoch is logged only once its checkpoint is on disk


def test_every_epoch_is_logged_once_in_order_after_its_checkpoint(tmp_path: Path) -> None:
    seen = []

    def log(metrics, epoch):
        seen.append((epoch, torch.load(tmp_path / LAST, weights_only=True)["epoch"]))

    fit(ToyTask(), TrainConfig(lr=0.1, max_epochs=4), tmp_path, IDENTITY, log)
    assert [epoch for epoch, _ in seen] == [0, 1, 2, 3]
    assert all(on_disk >= epoch for epoch, on_disk in seen)


def test_bf16_autocast_reaches_the_task_only_when_asked(tmp_path: Path) -> None:
    dtypes = {}

    class Recording(ToyTask):
        def train_step(self, batch):
            loss, metrics = super().train_step(batch)
            dtypes.setdefault(self.mode, set()).add(self.model(batch[0]).dtype)
            return loss, metrics

    for mode, precision in (("default", Precision()), ("bf16", Precision(bf16=True))):
        task = Recording()
        task.mode = mode
        result = fit(task, TrainConfig(lr=0.1, max_epochs=2), tmp_path / mode, IDENTITY, precision=precision)
        assert math.isfinite(result.history[-1]["val_loss"])
    assert dtypes == {"default": {torch.float32}, "bf16": {torch.bfloat16}}


def test_metrics_left_on_the_device_log_exactly_what_host_floats_logged(tmp_path: Path) -> None:
    """A step may return its metrics as tensors (no host read per step); the epoch means are the same bits as
    summing each step's float, the loop's arithmetic before."""
    from comprobust.methods.common import accuracy, accuracy_tensor

    class OnDevice(ToyTask):
        def train_step(self, batch):
            x, y = batch
            logits = self.model(x)
            return nn.functional.cross_entropy(logits, y), {"train_acc": accuracy_tensor(logits, y)}

    class OnHost(ToyTask):
        def train_step(self, batch):
            x, y = batch
            logits = self.model(x)
            return nn.functional.cross_entropy(logits, y), {"train_acc": accuracy(logits, y)}

    histories = []
    for kind in (OnDevice, OnHost):
        task = kind()  # seeds the global RNG that dropout then draws from
        result = fit(task, TrainConfig(lr=0.1, max_epochs=3), tmp_path / type(task).__name__, IDENTITY)
        histories.append([{k: v for k, v in r.items() if k != "epoch_time"} for r in result.history])
    assert histories[0] == histories[1]
    assert all(type(record[key]) is float for record in histories[0] for key in ("train_loss", "train_acc"))


def test_a_checkpoint_holds_its_epoch_even_when_training_changes_the_weights_before_it_is_written(
    tmp_path: Path,
) -> None:
    """Checkpoints are written in the background while the next epoch trains: each must hold the weights of
    the epoch it names, not whatever the live tensors hold by the time the writer gets to it."""
    weights_at_epoch_end = {}

    def log(metrics, epoch):  # called once the epoch's checkpoint is on disk, one epoch later
        on_disk = read_checkpoint(tmp_path / LAST)
        if on_disk["epoch"] == epoch:
            assert all(torch.equal(on_disk["model"][k], v) for k, v in weights_at_epoch_end[epoch].items())

    class Recording(ToyTask):
        def validate(self):
            metrics = super().validate()
            epoch = len(weights_at_epoch_end)
            weights_at_epoch_end[epoch] = {k: v.clone() for k, v in self.model.state_dict().items()}
            return metrics

    fit(Recording(), TrainConfig(lr=0.5, max_epochs=4), tmp_path, IDENTITY, log)
    final = read_checkpoint(tmp_path / LAST)
    assert final["epoch"] == 3
    assert all(torch.equal(final["model"][k], v) for k, v in weights_at_epoch_end[3].items())
    previous = read_checkpoint(tmp_path / PREVIOUS)
    assert all(torch.equal(previous["model"][k], v) for k, v in weights_at_epoch_end[2].items())


def test_best_pt_is_the_whole_checkpoint_of_the_best_epoch_and_stays_when_later_epochs_do_worse(
    tmp_path: Path,
) -> None:
    class Scripted(ToyTask):
        losses = iter([3.0, 1.0, 2.0, 2.5])

        def validate(self):
            return {**super().validate(), "val_loss": next(self.losses)}

    result = fit(Scripted(), TrainConfig(lr=0.1, max_epochs=4), tmp_path, IDENTITY)
    best, last, previous = (read_checkpoint(tmp_path / n) for n in (BEST, LAST, PREVIOUS))
    assert (best["epoch"], last["epoch"], previous["epoch"]) == (1, 3, 2)
    assert result.best_epoch == 1 and best["best"] == {
        "epoch": 1,
        "val_loss": 1.0,
        "val_acc": best["best"]["val_acc"],
    }
    assert {"model", "optimizer", "history"} <= set(best)  # resumable from, like any epoch's checkpoint
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staged file or link left behind


def test_a_checkpoint_keeps_the_state_dicts_metadata_though_it_serialises_a_copy(tmp_path: Path) -> None:
    """The loop serialises a copy of the tensors (serialising the live ones slowed training): the copy must keep
    what `torch.save` of the state dict itself would hold, the module versions in `_metadata` included."""
    task = ToyTask()
    fit(task, TrainConfig(lr=0.1, max_epochs=2), tmp_path, IDENTITY)
    on_disk = read_checkpoint(tmp_path / LAST)["model"]
    live = task.model.state_dict()
    assert on_disk._metadata == live._metadata and on_disk._metadata
    assert list(on_disk) == list(live)
