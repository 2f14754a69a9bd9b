"""Seeds that mean something: every random draw of a stage derives from (experiment seed, stage, corruption,
salt), never from the run id, so fields with no scientific effect leave trained weights bit-identical."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from comprobust.config import load_experiment
from comprobust.methods.common import Export, StageContext
from comprobust.planning import plan
from comprobust.stages import execute

BASE = {
    "name": "seeds",
    "dataset": {"name": "mnist5k", "split_sizes": {"train": 6, "valid": 2, "test": 2}},
    "architecture": "small",
    "seeds": [3],
    "compositions": ["Identity", "Invert"],
    "wandb": {"project": "comprobust-seeds", "mode": "offline"},
    "cluster": {"executor": "inline"},
    "training": {"max_epochs": 2, "batch_size": 16},
    "stages": {"erm": {"method": "erm", "lr": 0.05}},
}


def context(**changes) -> StageContext:
    fields = {
        "run_id": "erm-s1-aaaaaaaaaa",
        "stage": "erm",
        "seed": 1,
        "corruption": None,
        "params": {},
        "identity": {},
        "data": None,
        "arch": "small",
        "device": torch.device("cpu"),
        "out_dir": Path("."),
    }
    return StageContext(**{**fields, **changes})


def test_stream_seeds_ignore_the_run_id_and_follow_seed_stage_corruption_and_salt() -> None:
    base = context()
    assert base.stream_seed("init") == context(run_id="erm-s1-bbbbbbbbbb", identity={"x": 1}).stream_seed(
        "init"
    )
    others = [context(seed=2), context(stage="contrastive"), context(corruption="Invert")]
    assert all(other.stream_seed("init") != base.stream_seed("init") for other in others)
    assert base.stream_seed("init") != base.stream_seed("search", 0)
    assert base.data_seed("train") != base.data_seed("valid")
    assert 0 <= base.stream_seed("init") < 2**63


def trained_weights(folder: Path, **changes) -> dict[str, torch.Tensor]:
    """Train the one-stage experiment (with `changes` applied) and return its exported weights."""
    body = {**BASE, "output_root": str(folder / "outputs"), **changes}
    body["dataset"] = {**body["dataset"], "root": str(folder / "data")}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "seeds.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    experiment = load_experiment(path)
    [run] = plan(experiment, evaluation=False)
    return Export.load(execute(experiment, run).export).state


@pytest.mark.slow
def test_unscientific_fields_keep_weights_bit_identical_and_the_seed_changes_them(tmp_path: Path) -> None:
    base = trained_weights(tmp_path / "a")
    moved = trained_weights(
        tmp_path / "b",
        wandb={"project": "elsewhere", "mode": "offline"},
        cluster={"executor": "local", "cpus_per_task": 2},
    )
    reseeded = trained_weights(tmp_path / "c", seeds=[4])
    assert base.keys() == moved.keys() == reseeded.keys()
    assert all(torch.equal(base[k], moved[k]) for k in base)
    assert not all(torch.equal(base[k], reseeded[k]) for k in base)
