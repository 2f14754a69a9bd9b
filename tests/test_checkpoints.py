"""Checkpoint files: the packed format reads back exactly what was saved, and older plain files still resume."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from helpers.toy_task import IDENTITY, ToyTask
from torch import nn

from comprobust.checkpoints import LAST, encode_checkpoint, read_checkpoint, write_epoch
from comprobust.errors import UserError
from comprobust.training import TrainConfig, fit


def _trained_state() -> dict:
    """An epoch's state as `fit` builds it, with what packing must keep: a channels_last conv weight, AdamW's 0-d
    step tensors and tuple betas, the int64 and uint8 tensors of batch norm and the RNG, a state dict's
    `_metadata`."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=3)
    nn.functional.cross_entropy(model(torch.randn(5, 3, 8, 8)), torch.tensor([0, 1, 0, 1, 1])).backward()
    optimizer.step()
    scheduler.step()
    return {
        "identity": IDENTITY,
        "epoch": 0,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": [{"epoch": 0, "val_loss": 0.5}],
        "best": {"epoch": 0, "val_loss": 0.5},
    }


def _assert_same_tree(found, expected, where: str = "state") -> None:
    assert type(found) is type(expected), where
    if isinstance(expected, torch.Tensor):
        assert (found.dtype, found.shape, found.stride()) == (
            expected.dtype,
            expected.shape,
            expected.stride(),
        )
        assert torch.equal(found, expected), where
    elif isinstance(expected, dict):
        assert list(found) == list(expected), where
        assert getattr(found, "_metadata", None) == getattr(expected, "_metadata", None), where
        for key in expected:
            _assert_same_tree(found[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, list | tuple):
        assert len(found) == len(expected), where
        for i, (a, b) in enumerate(zip(found, expected)):
            _assert_same_tree(a, b, f"{where}[{i}]")
    else:
        assert found == expected, where


def test_a_packed_checkpoint_reads_back_every_tensor_with_its_dtype_shape_strides_and_own_storage(
    tmp_path: Path,
) -> None:
    state = _trained_state()
    assert state["model"]["0.weight"].is_contiguous(memory_format=torch.channels_last)
    write_epoch(tmp_path, encode_checkpoint(state), improved=False)
    found = read_checkpoint(tmp_path / LAST)
    assert found.pop("format") == 2
    _assert_same_tree(found, state)
    tensors = [*found["model"].values(), *found["optimizer"]["state"][0].values(), found["torch_rng"]]
    assert len({t.untyped_storage().data_ptr() for t in tensors}) == len(tensors)  # none shares the flat's


def test_a_checkpoint_file_holds_one_storage_per_dtype_not_one_per_tensor(tmp_path: Path) -> None:
    """Packing is what makes the epoch's serialisation cheap: torch.save writes a record per storage."""
    state = _trained_state()
    write_epoch(tmp_path, encode_checkpoint(state), improved=False)
    with zipfile.ZipFile(tmp_path / LAST) as archive:
        storages = [name for name in archive.namelist() if "/data/" in name and not name.endswith(".pkl")]
    dtypes = {t.dtype for t in (*state["model"].values(), *state["optimizer"]["state"][0].values())}
    assert len(storages) == len(
        dtypes | {torch.uint8}
    )  # float32, int64 (batch norm's count), the RNG's uint8


def test_the_snapshot_is_taken_when_encoded_not_when_written(tmp_path: Path) -> None:
    state = _trained_state()
    expected = state["model"]["3.weight"].clone()
    data = encode_checkpoint(state)
    state["model"]["3.weight"].add_(1.0)  # training goes on while the writer thread is behind
    write_epoch(tmp_path, data, improved=False)
    assert torch.equal(read_checkpoint(tmp_path / LAST)["model"]["3.weight"], expected)


class Stop(Exception):
    pass


def _stop_after_epoch_1(metrics: dict[str, float], epoch: int) -> None:
    if epoch == 1:  # called once the epoch's checkpoint is on disk
        raise Stop


def test_a_format_1_checkpoint_written_before_packing_still_resumes_exactly(tmp_path: Path) -> None:
    config = TrainConfig(lr=0.1, max_epochs=4)
    straight = fit(ToyTask(), config, tmp_path / "straight", IDENTITY)
    with pytest.raises(Stop):
        fit(ToyTask(), config, tmp_path / "cut", IDENTITY, _stop_after_epoch_1)
    last = tmp_path / "cut" / LAST
    torch.save({**read_checkpoint(last), "format": 1}, last)  # the plain tree the loop wrote before packing
    resumed = fit(ToyTask(), config, tmp_path / "cut", IDENTITY)
    assert resumed.resumed_from == 2
    assert [{**r, "epoch_time": 0} for r in resumed.history] == [
        {**r, "epoch_time": 0} for r in straight.history
    ]


def test_a_checkpoint_of_an_unknown_format_is_refused_with_the_formats_it_could_read(tmp_path: Path) -> None:
    torch.save({"format": 3, "epoch": 0}, tmp_path / LAST)
    with pytest.raises(UserError, match=r"last\.pt is not a comprobust checkpoint \(formats 1, 2\)"):
        read_checkpoint(tmp_path / LAST)
