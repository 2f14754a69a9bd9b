"""The module level search records each level's accuracy with its standard error and the chosen level's margin
over the runner-up with the paired standard error; a module step holds `batch_size` images, as ERM's does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from comprobust.methods.common import StageContext
from comprobust.methods.modules import LevelSearch, ModuleTask, search_level, standard_error
from comprobust.methods.specs import METHODS
from comprobust.models import build_network


def context(data, tmp_path: Path, **params) -> StageContext:
    resolved = {
        **METHODS["modules"].all_params,
        "lr": 0.05,
        "batch_size": 32,
        "max_epochs": 2,
        "search_epochs": 1,
        "levels": [3, 4],
        **params,
    }
    return StageContext(
        run_id="modules-test",
        stage="modules",
        seed=1,
        corruption="Invert",
        params=resolved,
        identity={"test": 1},
        data=data,
        arch="small",
        device=torch.device("cpu"),
        out_dir=tmp_path,
    )


def backbone(data) -> torch.nn.Module:
    torch.manual_seed(0)
    network = build_network("small", data.spec.num_classes, in_channels=1, image_size=28).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


def test_standard_error_by_hand() -> None:
    values = np.array([1.0, 0.5, 0.0, 1.0])
    assert standard_error(values) == pytest.approx(100 * np.sqrt(np.var(values, ddof=1) / 4))
    assert np.isnan(standard_error(np.array([1.0])))


def test_a_module_step_holds_batch_size_images_half_corrupted_half_clean(small_mnist, tmp_path: Path) -> None:
    ctx = context(small_mnist, tmp_path, batch_size=32)
    x, y = next(iter(ModuleTask(ctx, backbone(small_mnist), torch.nn.Identity(), 4).train_loader.batches(0)))
    assert x.shape[:2] == (2, 16) and len(y) == 16  # [corrupted; clean] x 16 = 32 images per SGD step


def test_search_records_accuracy_standard_errors_and_the_paired_margin(small_mnist, tmp_path: Path) -> None:
    search = search_level(context(small_mnist, tmp_path), backbone(small_mnist))
    last = {row[0]: row[5] for row in search.rows}  # one search epoch: each level's logged val_acc
    assert search.accuracy == pytest.approx(last)  # scored on the same images and weights as validation
    assert search.level == max(last, key=lambda level: (last[level], -level))
    assert search.runner_up == ({3, 4} - {search.level}).pop()
    assert search.margin == pytest.approx(search.accuracy[search.level] - search.accuracy[search.runner_up])
    assert all(0 < se < 10 for se in search.se.values()) and 0 < search.margin_se < 10
    meta = search.meta()
    assert meta["level_margin_se"] == search.margin_se and meta[f"level_{search.level}_val_acc_se"] > 0


def test_one_level_has_no_margin() -> None:
    search = LevelSearch(
        level=2,
        rows=[],
        accuracy={2: 90.0},
        se={2: 1.0},
        runner_up=None,
        margin=float("nan"),
        margin_se=float("nan"),
    )
    assert search.meta() == {"level_2_val_acc": 90.0, "level_2_val_acc_se": 1.0}
