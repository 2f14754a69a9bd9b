"""The stage parameter `loader_workers` (0 | 1): validated like the others, never in a run's identity (the batches are
the same), carried to the stage context, and a stage trained with 1 ends with the weights of one trained with 0."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers.experiments import run_ids, sweep_command, write_experiment

from comprobust.config import load_experiment
from comprobust.data import prefetch as prefetch_module
from comprobust.errors import UserError
from comprobust.methods.common import Export, StageContext
from comprobust.methods.specs import COMMON_PARAMS, METHODS
from comprobust.planning import plan
from comprobust.stages import execute


def test_every_method_takes_it_and_it_is_off_by_default() -> None:
    assert COMMON_PARAMS["loader_workers"] == 0
    assert all("loader_workers" in spec.all_params for spec in METHODS.values())


def test_set_or_not_it_is_never_in_the_params_nor_the_run_ids(tmp_path: Path) -> None:
    plain = run_ids(write_experiment(tmp_path))
    for top in (
        {"erm": {"loader_workers": 1}},
        {"training": {"loader_workers": 1}},
        {"erm": {"loader_workers": 0}},
    ):
        assert run_ids(write_experiment(tmp_path, **top)) == plain
    experiment = load_experiment(write_experiment(tmp_path, erm={"loader_workers": 1}))
    assert experiment.stages["erm"].loader_workers == 1 and experiment.stages["backbone"].loader_workers == 0
    assert not any("loader_workers" in stage.params for stage in experiment.stages.values())
    assert all("loader_workers" not in run.config.get("params", {}) for run in plan(experiment))
    everywhere = load_experiment(write_experiment(tmp_path, training={"loader_workers": 1}))
    assert all(stage.loader_workers == 1 for stage in everywhere.stages.values())
    overridden = experiment.with_stage_params("erm", {"loader_workers": 0})
    assert (
        overridden.stages["erm"].loader_workers == 0
        and "loader_workers" not in overridden.stages["erm"].params
    )
    kept = experiment.with_stage_params("erm", {"lr": 0.02})  # another override keeps the stage's setting
    assert kept.stages["erm"].loader_workers == 1 and kept.stages["erm"].params["lr"] == 0.02


@pytest.mark.parametrize("value", ["yes", 2, -1, True, 1.0, None, [1]])
@pytest.mark.parametrize("where", ["stage", "training"])
def test_a_bad_value_is_one_error_naming_file_key_and_fix(tmp_path: Path, value: Any, where: str) -> None:
    if where == "stage":
        path, key = write_experiment(tmp_path, erm={"loader_workers": value}), r"stages\.erm\.loader_workers"
    else:
        path, key = (
            write_experiment(tmp_path, training={"loader_workers": value}),
            r"training\.loader_workers",
        )
    with pytest.raises(
        UserError, match=rf"{key}: expected 0 or 1, got .*; write loader_workers: 1 to"
    ) as caught:
        load_experiment(path)
    assert str(caught.value).startswith(str(path))


def test_a_set_override_is_checked_like_the_files_values(tmp_path: Path) -> None:
    experiment = load_experiment(write_experiment(tmp_path))
    with pytest.raises(UserError, match=r"override loader_workers='1' for stage 'erm': expected 0 or 1"):
        experiment.with_stage_params("erm", {"loader_workers": "1"})
    assert experiment.with_stage_params("erm", {"loader_workers": 1}).stages["erm"].loader_workers == 1


def test_the_stage_context_prefetches_only_when_told() -> None:
    def ctx(workers: int) -> StageContext:
        return StageContext(  # type: ignore[arg-type]
            "r", "s", 0, None, {}, {}, None, "small", None, Path("."), loader_workers=workers
        )

    batches = iter(range(4))
    assert ctx(0).prefetch(batches) is batches
    prefetched = ctx(1).prefetch(iter(range(4)))
    assert prefetched is not batches and list(prefetched) == [0, 1, 2, 3]


TINY: dict[str, Any] = {
    "name": "tiny-workers",
    "dataset": {"name": "mnist5k", "split_sizes": {"train": 8, "valid": 2, "test": 2}},
    "architecture": "small",
    "seeds": [3],
    "wandb": {"project": "comprobust-tests", "mode": "offline"},
    "cluster": {"executor": "inline"},
    "training": {"max_epochs": 2, "batch_size": 28},
    "stages": {
        "erm": {"method": "erm", "lr": 0.05},
        "contrastive": {"method": "contrastive", "lr": 0.05, "weight": 0.1},
    },
    "evaluation": {"systems": {"ERM": {"classifier": "erm"}}},
}


def trained(tmp_path: Path, name: str, workers: int) -> dict[str, tuple[str, dict[str, torch.Tensor]]]:
    """Each stage's run id and exported weights, trained with `loader_workers: workers`."""
    body = {
        **TINY,
        "output_root": str(tmp_path / name),
        "dataset": {**TINY["dataset"], "root": str(tmp_path / "data")},
        "training": {**TINY["training"], "loader_workers": workers},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(body))
    experiment = load_experiment(path)
    out = {}
    for run in plan(experiment):
        if run.kind == "train":
            done = execute(experiment, run)
            out[run.stage] = (run.run_id, dict(Export.load(Path(done.outputs["export"])).state))
    return out


def test_a_stage_trained_with_a_loader_worker_has_the_weights_of_one_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    produced: list[int] = []
    produce = prefetch_module._produce

    def counted(*args: Any) -> None:
        produced.append(1)
        produce(*args)

    monkeypatch.setattr(prefetch_module, "_produce", counted)
    plain = trained(tmp_path, "plain", 0)
    assert not produced
    workers = trained(tmp_path, "workers", 1)
    assert len(produced) == 2 * 2  # every epoch of both stages was prefetched
    assert sorted(plain) == sorted(workers) == ["contrastive", "erm"]
    for stage in plain:
        (run_id, weights), (run_id1, weights1) = plain[stage], workers[stage]
        assert run_id == run_id1  # the same run
        assert weights.keys() == weights1.keys()
        assert all(torch.equal(weights[k], weights1[k]) for k in weights), f"{stage}: weights differ"


def test_a_sweep_over_it_is_refused_since_its_values_are_one_run() -> None:
    from comprobust.sweeps.validate import validate_sweep

    config = {
        "method": "grid",
        "metric": {"name": "val_acc", "goal": "maximize"},
        "command": sweep_command(),
    }
    repo = Path(__file__).resolve().parents[1]
    validate_sweep({**config, "parameters": {"lr": {"values": [0.01, 0.1]}}}, where="s.yaml", workdir=repo)
    with pytest.raises(
        UserError, match=r"^s\.yaml: parameters\.loader_workers: loader_workers changes how a run"
    ):
        validate_sweep(
            {**config, "parameters": {"loader_workers": {"values": [0, 1]}}}, where="s.yaml", workdir=repo
        )
