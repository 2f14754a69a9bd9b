"""The training loop with AdamW and warmup: the schedule's values, a bit-identical resume, and the SGD path unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from helpers.toy_task import IDENTITY, ToyTask

from comprobust.checkpoints import LAST, read_checkpoint
from comprobust.errors import UserError
from comprobust.optim import warmup_cosine
from comprobust.training import TrainConfig, fit


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _records(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in record.items() if k != "epoch_time"} for record in history]


def _legacy_build(self: TrainConfig, named: list[tuple[str, Any]]) -> tuple[Any, Any]:
    """The loop's optimiser and schedule before AdamW and warmup existed (comprobust/training.py at ff88e8b)."""
    optimizer = torch.optim.SGD(
        [p for _, p in named], lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=self.cosine_epochs or self.max_epochs
    )
    return optimizer, scheduler


@pytest.mark.parametrize(
    "config",
    [
        TrainConfig(lr=0.1, max_epochs=5),
        TrainConfig(lr=0.05, max_epochs=3, cosine_epochs=7, weight_decay=1e-3),
    ],
    ids=["plain", "cosine_epochs"],
)
def test_the_default_sgd_path_is_bit_identical_to_the_loop_before_adamw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config: TrainConfig
) -> None:
    assert (config.optimizer, config.warmup_epochs) == ("sgd", 0)
    today_task = ToyTask()
    today = fit(today_task, config, tmp_path / "today", IDENTITY)
    with monkeypatch.context() as patch:
        patch.setattr(TrainConfig, "build", _legacy_build)
        legacy_task = ToyTask()
        legacy = fit(legacy_task, config, tmp_path / "legacy", IDENTITY)
    assert _records(today.history) == _records(legacy.history)
    for key, value in today_task.model.state_dict().items():
        assert torch.equal(value, legacy_task.model.state_dict()[key]), key
    last = [read_checkpoint(tmp_path / f / LAST) for f in ("today", "legacy")]
    assert last[0]["optimizer"]["param_groups"] == last[1]["optimizer"]["param_groups"]
    assert last[0]["scheduler"] == last[1]["scheduler"]


def test_no_warmup_keeps_cosine_annealing_because_the_closed_form_differs_in_the_last_bits() -> None:
    named = list(ToyTask().model.named_parameters())
    for optimizer in ("sgd", "adamw"):
        _, scheduler = TrainConfig(lr=0.1, max_epochs=7, optimizer=optimizer).build(named)
        assert isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR)
    built, warm = TrainConfig(lr=0.1, max_epochs=7, optimizer="adamw", warmup_epochs=2).build(named)
    assert isinstance(built, torch.optim.AdamW) and isinstance(warm, torch.optim.lr_scheduler.LambdaLR)
    # why: LambdaLR's closed form and CosineAnnealingLR's recursion disagree in the last bits at T_max=7
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.SGD(named[0][1:], lr=0.05), T_max=7)
    recursive = []
    for _ in range(7):
        recursive.append(cosine.get_last_lr()[0])
        cosine.optimizer.step()
        cosine.step()
    closed = [0.05 * warmup_cosine(e, 0, 7) for e in range(7)]
    assert recursive == pytest.approx(closed, rel=1e-12) and recursive != closed


def test_warmup_then_cosine_learning_rates_in_the_history(tmp_path: Path) -> None:
    config = TrainConfig(lr=1e-3, max_epochs=4, optimizer="adamw", weight_decay=0.05, warmup_epochs=1)
    result = fit(ToyTask(), config, tmp_path, IDENTITY)
    assert [r["lr"] for r in result.history] == pytest.approx([5e-4, 1e-3, 7.5e-4, 2.5e-4], rel=1e-12)
    state = read_checkpoint(tmp_path / LAST)
    groups = state["optimizer"]["param_groups"]
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]  # weights decay, biases do not
    assert groups[0]["betas"] == (0.9, 0.999)
    assert state["scheduler"]["last_epoch"] == 4


class Stop(Exception):
    pass


def _stop_after(epoch: int):
    def log(metrics: dict[str, float], logged_epoch: int) -> None:
        if logged_epoch == epoch:  # called once this epoch's checkpoint is on disk
            raise Stop

    return log


@pytest.mark.parametrize("optimizer,warmup", [("adamw", 2), ("sgd", 1), ("adamw", 0)])
def test_stopping_halfway_and_resuming_is_bit_identical(tmp_path: Path, optimizer: str, warmup: int) -> None:
    config = TrainConfig(lr=3e-3, max_epochs=6, optimizer=optimizer, weight_decay=0.05, warmup_epochs=warmup)
    straight_task = ToyTask()
    straight = fit(straight_task, config, tmp_path / "straight", IDENTITY)
    with pytest.raises(Stop):
        fit(ToyTask(), config, tmp_path / "cut", IDENTITY, _stop_after(2))
    assert torch.load(tmp_path / "cut" / LAST, weights_only=True)["epoch"] == 2
    resumed_task = ToyTask()
    resumed = fit(resumed_task, config, tmp_path / "cut", IDENTITY)
    assert resumed.resumed_from == 3 and resumed.epochs_run == [3, 4, 5]
    assert _records(resumed.history) == _records(straight.history)
    assert [r["lr"] for r in straight.history] == pytest.approx(
        [3e-3 * warmup_cosine(e, warmup, 6) for e in range(6)], rel=1e-12
    )
    for key, value in straight_task.model.state_dict().items():  # the best epoch's weights
        assert torch.equal(value, resumed_task.model.state_dict()[key]), key
    last = [read_checkpoint(tmp_path / f / LAST) for f in ("straight", "cut")]
    for key, value in last[0]["model"].items():  # and the last epoch's
        assert torch.equal(value, last[1]["model"][key]), key
    for index, moments in last[0]["optimizer"]["state"].items():
        for name, value in moments.items():
            assert torch.equal(value, last[1]["optimizer"]["state"][index][name]), (index, name)


def test_bad_optimizer_or_warmup_is_one_user_error_naming_the_key() -> None:
    with pytest.raises(UserError, match=r"^optimizer: 'adam' is not one of sgd, adamw$"):
        TrainConfig(lr=0.1, max_epochs=4, optimizer="adam")
    with pytest.raises(UserError, match=r"^warmup_epochs: 4 must be an integer in 0\.\.3 "):
        TrainConfig(lr=0.1, max_epochs=4, warmup_epochs=4)
    with pytest.raises(UserError, match=r"^warmup_epochs: -1 "):
        TrainConfig(lr=0.1, max_epochs=4, warmup_epochs=-1)
    # the level search trains fewer epochs than its schedule (cosine_epochs): the warmup is checked against that
    assert TrainConfig(lr=0.1, max_epochs=1, cosine_epochs=5, warmup_epochs=2).schedule_epochs == 5


def test_no_warmup_leaves_max_epochs_0_to_fits_own_error(tmp_path: Path) -> None:
    config = TrainConfig(lr=0.1, max_epochs=0)
    with pytest.raises(UserError, match="max_epochs=0 trains nothing"):
        fit(ToyTask(), config, tmp_path, IDENTITY)
    with pytest.raises(UserError, match=r"^warmup_epochs: True "):
        TrainConfig(lr=0.1, max_epochs=4, warmup_epochs=True)
