"""The `supervised` and `distill` stages end to end on a small real `dominoes` (Fashion-MNIST written as IDX files
with random pixels, the real mnist5k digits on top): exports, meta keys, the `conditions` tables, a kd student
that agrees with its teacher far above chance, the three losses, exact resume, and one-line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers.dataset_files import write_fake_fashion

from comprobust.checkpoints import read_checkpoint
from comprobust.data.dataset import CueDataset, load_dataset
from comprobust.distill.evaluate import accuracy_table, fidelity_table, render_seed
from comprobust.distill.metrics import fidelity
from comprobust.errors import UserError
from comprobust.methods import distill, supervised, trainer
from comprobust.methods.common import Export, StageContext
from comprobust.methods.specs import METHODS

EXHAUSTIVE = ("I", "A", "B", "AB", "IB", "IA", "IAB")
SIZES = {"train": 10, "valid": 3, "test": 3}


@pytest.fixture(scope="module", autouse=True)
def one_thread():  # type: ignore[no-untyped-def]
    """One thread for this file: on a shared 2-core machine two threads thrash when other jobs run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> CueDataset:
    root = tmp_path_factory.mktemp("dominoes-root")
    write_fake_fashion(root)
    loaded = load_dataset("dominoes", root, split_sizes=SIZES)
    assert isinstance(loaded, CueDataset)
    return loaded


Tables = dict[str, tuple[list[str], list[list[Any]]]]


def context(
    data: CueDataset,
    out_dir: Path,
    method: str,
    tables: Tables | None = None,
    inputs: dict[str, list[Export]] | None = None,
    log_epoch: Callable[[dict[str, float], int], None] | None = None,
    **params: Any,
) -> StageContext:
    """A stage context as `stages.execute` builds it: the method's resolved params (one value per axis)."""

    def log_extra(key: str, columns: list[str], rows: list[list[Any]]) -> None:
        if tables is not None:
            tables[key] = (columns, rows)

    resolved = {**METHODS[method].all_params, "lr": 0.05, "max_epochs": 2, "batch_size": 20, **params}
    return StageContext(
        run_id=f"{method}-run",
        stage=method,
        seed=0,
        corruption=None,
        params=resolved,
        identity={"run_id": f"{method}-run", "config_hash": "x"},
        data=data,
        arch="small",
        device=torch.device("cpu"),
        out_dir=out_dir,
        inputs=inputs or {},
        log_epoch=log_epoch,
        log_extra=log_extra,
    )


def epochs_into(records: list[dict[str, float]]) -> Callable[[dict[str, float], int], None]:
    return lambda metrics, epoch: records.append(dict(metrics))


@pytest.fixture(scope="module")
def teacher(data: CueDataset, tmp_path_factory: pytest.TempPathFactory) -> tuple[Export, Tables]:
    tables: Tables = {}
    records: list[dict[str, float]] = []
    out = tmp_path_factory.mktemp("teacher")
    settings = {"mechanisms": "IAB", "max_epochs": 3, "lr": 0.1}
    export = trainer("supervised")(
        context(data, out, "supervised", tables, log_epoch=epochs_into(records), **settings)
    )
    tables["epochs"] = (list(records[0]), [list(r.values()) for r in records])
    return export, tables


def test_the_trainer_table_resolves_both_methods() -> None:
    assert trainer("supervised") is supervised.train
    assert trainer("distill") is distill.train


def test_supervised_exports_a_rectangular_network_with_per_condition_accuracies(
    data: CueDataset, teacher: tuple[Export, Tables]
) -> None:
    export, tables = teacher
    assert export.path.is_file() and export.kind == "network" and export.image_size == (56, 28)
    assert export.meta["mechanisms"] == "IAB"
    assert {"best_epoch", "val_loss", "val_acc", "acc/mean"} <= set(export.meta)
    assert {f"acc/{c}" for c in EXHAUSTIVE} | {f"loss/{c}" for c in EXHAUSTIVE} <= set(export.meta)
    epoch_keys, epochs = tables["epochs"]
    assert len(epochs) == 3 and {f"cf/{c}/acc" for c in EXHAUSTIVE} <= set(epoch_keys)
    columns, rows = tables["conditions"]
    assert columns == supervised.CONDITION_COLUMNS
    assert [r[0] for r in rows] == list(EXHAUSTIVE) and [r[1] for r in rows] == [1, 1, 1, 2, 2, 2, 3]
    assert all(r[4] == len(data.test) for r in rows)
    assert export.meta["acc/mean"] == pytest.approx(np.mean([r[2] for r in rows]))
    loaded = Export.load(export.path, "network")
    assert loaded.image_size == (56, 28)
    network = loaded.build_network(torch.device("cpu"))
    assert network.input_shape == (1, 56, 28)
    # the digit half is real: a teacher trained on IAB reads it well above chance (10 %)
    assert export.meta["acc/IAB"] >= 30.0


def kd_student(
    data: CueDataset, out: Path, teacher: Export, tables: Tables | None = None, **params: Any
) -> Export:
    settings = {"mechanisms": "IAB", "loss": "kd", "temperature": 4.0, "kd_t2": True, "lr": 0.1, **params}
    return trainer("distill")(
        context(data, out, "distill", tables, inputs={"teacher": [teacher]}, **settings)
    )


def test_a_kd_student_agrees_with_its_teacher_far_above_chance_and_reports_every_condition(
    data: CueDataset, teacher: tuple[Export, Tables], tmp_path: Path
) -> None:
    teacher_export, teacher_tables = teacher
    tables: Tables = {}
    records: list[dict[str, float]] = []
    student = kd_student(data, tmp_path, teacher_export, tables, log_epoch=epochs_into(records), max_epochs=3)
    assert len(records) == 3
    for key in (
        "train_kd",
        "train_aux",
        "val_kd",
        "val_ts_agree",
        "val_ts_kl",
        "cf/A/acc",
        "cf/A/ts_agree",
        "cf/A/ts_kl",
    ):
        assert key in records[-1], key
    meta = student.meta
    assert meta["loss"] == "kd" and meta["mechanisms"] == "IAB" and meta["teacher_mechanisms"] == "IAB"
    for key in ("val_loss", "val_acc", "val_ts_agree", "val_ts_kl", "best_epoch"):
        assert key in meta
    for kind in ("acc", "teacher_acc", "loss", "kl", "agree"):
        assert {f"{kind}/{c}" for c in EXHAUSTIVE} <= set(meta)
    assert {"acc/mean", "teacher_acc/mean", "kl/mean", "agree/mean"} <= set(meta)
    columns, rows = tables["conditions"]
    assert columns == distill.CONDITION_COLUMNS
    assert [r[0] for r in rows] == list(EXHAUSTIVE) and all(r[-1] == len(data.test) for r in rows)
    # the teacher is scored on the very test images its own run was scored on (the seed's, not the stage's)
    own = {row[0]: row[2] for row in teacher_tables["conditions"][1]}
    assert {row[0]: row[3] for row in rows} == pytest.approx(own)
    # far above chance (10 %), and above an untrained student's agreement with the same teacher (43 vs 13 here)
    torch.manual_seed(0)
    fresh = context(data, tmp_path, "distill").new_network()
    batches = data.batches("test", "IAB", render_seed(0), 0, 20)
    untrained = fidelity(fresh, teacher_export.build_network(torch.device("cpu")), batches, "IAB")
    assert meta["agree/IAB"] >= 30.0
    assert meta["agree/IAB"] > untrained.ts_agree + 15
    # only the student is exported, as a plain network
    assert set(student.state) == set(fresh.state_dict())


@pytest.mark.parametrize(
    ("loss", "extra"),
    [
        ("jacobian", {"top_k": 3}),
        ("contrastive", {}),
        ("contrastive", {"crd_heads": "fresh", "crd_pairs": "instance"}),
    ],
)
def test_jacobian_and_contrastive_students_train_and_export_the_student_only(
    data: CueDataset, teacher: tuple[Export, Tables], tmp_path: Path, loss: str, extra: dict[str, Any]
) -> None:
    student = trainer("distill")(
        context(
            data,
            tmp_path,
            "distill",
            inputs={"teacher": [teacher[0]]},
            mechanisms="AB",
            loss=loss,
            max_epochs=1,
            batch_size=50,
            **extra,
        )
    )
    assert np.isfinite(student.meta["val_loss"]) and student.meta["loss"] == loss
    assert student.meta["resolved_alpha"] == {"jacobian": 0.15, "contrastive": 0.03}[loss]
    assert not any(key.startswith("heads.") for key in student.state)
    checkpoint = read_checkpoint(tmp_path / "checkpoints" / "last.pt")
    heads = any(key.startswith("heads.") for key in checkpoint["model"])
    assert heads == (loss == "contrastive" and extra.get("crd_heads") != "fresh")


class Killed(Exception):
    pass


def kill_after_epoch_0(metrics: dict[str, float], epoch: int) -> None:
    if epoch == 0:  # called once the epoch's checkpoint is on disk
        raise Killed


def test_a_resumed_distillation_is_exact(
    data: CueDataset, teacher: tuple[Export, Tables], tmp_path: Path
) -> None:
    """Killed after epoch 0 and rerun: the trained CRD heads live in the task's model, so the checkpoint resumes
    them too and the result equals an uninterrupted run."""

    def run(out: Path, log_epoch: Callable[[dict[str, float], int], None] | None = None) -> Export:
        settings = {"mechanisms": "IAB", "loss": "contrastive", "max_epochs": 2}
        return trainer("distill")(
            context(data, out, "distill", inputs={"teacher": [teacher[0]]}, log_epoch=log_epoch, **settings)
        )

    whole = run(tmp_path / "whole")
    with pytest.raises(Killed):
        run(tmp_path / "parts", kill_after_epoch_0)
    assert torch.load(tmp_path / "parts" / "checkpoints" / "last.pt", weights_only=False)["epoch"] == 0
    resumed = run(tmp_path / "parts")
    assert whole.state.keys() == resumed.state.keys()
    assert all(torch.equal(whole.state[k], resumed.state[k]) for k in whole.state)
    assert whole.meta == resumed.meta


def expect_error(call: Callable[[], Any], *fragments: str) -> None:
    with pytest.raises(UserError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and all(f in message for f in fragments), message


def test_one_line_errors(
    data: CueDataset, teacher: tuple[Export, Tables], tmp_path: Path, small_mnist
) -> None:  # type: ignore[no-untyped-def]
    one = {"teacher": [teacher[0]]}
    two = {"teacher": [teacher[0], teacher[0]]}
    expect_error(
        lambda: distill.train(context(data, tmp_path, "distill", inputs=two)), "exactly one teacher", "got 2"
    )
    expect_error(
        lambda: distill.train(context(data, tmp_path, "distill", inputs=one, loss="jacobain")),
        "unknown loss 'jacobain'",
        "did you mean 'jacobian'",
    )
    expect_error(
        lambda: supervised.train(context(data, tmp_path, "supervised", mechanisms="IXB")),
        "unknown mechanism 'X'",
    )
    expect_error(
        lambda: supervised.train(context(data, tmp_path, "supervised", conditions="exhaustiv")),
        "did you mean 'exhaustive'",
    )
    mnist_ctx = context(data, tmp_path, "supervised")
    mnist_ctx.data = small_mnist
    expect_error(lambda: supervised.train(mnist_ctx), "cue dataset", "mnist5k")


def test_a_student_that_is_its_teacher_agrees_on_every_condition(
    data: CueDataset, teacher: tuple[Export, Tables]
) -> None:
    network = teacher[0].build_network(torch.device("cpu"))
    conditions = data.conditions("exhaustive")
    rows, summary = fidelity_table(network, network, data, conditions, seed=0, batch_size=16)
    assert [r[0] for r in rows] == list(EXHAUSTIVE)
    assert all(r[6] == 100.0 and abs(r[5]) <= 1e-6 and r[2] == r[3] for r in rows)
    assert summary["agree/mean"] == 100.0
    plain, plain_summary = accuracy_table(network, data, conditions, seed=0, batch_size=7)
    assert [r[2] for r in plain] == [r[2] for r in rows]  # the same images at any batch size
    assert {k: v for k, v in plain_summary.items() if k.startswith("acc/")} == pytest.approx(
        {k: v for k, v in summary.items() if k.startswith("acc/")}
    )
    assert {f"acc/{c}": r[2] for c, r in zip(EXHAUSTIVE, plain)} == pytest.approx(
        {k: v for k, v in teacher[0].meta.items() if k.startswith("acc/") and k != "acc/mean"}
    )
