"""The paper-scale experiments at their `--smoke` budget on fixture data in the real on-disk formats: every stage
of EMNIST (the paper's 4-conv network) and CIFAR-10 (ResNet-18) trains and every system is evaluated, on CPU."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from helpers.dataset_files import write_fake_cifar, write_fake_emnist

from comprobust.config import load_experiment
from comprobust.pipeline import launch
from comprobust.planning import plan
from comprobust.run_state import status_table

REPO = Path(__file__).resolve().parents[1]


def smoke_experiment(name: str, root: Path, out: Path):
    experiment = load_experiment(REPO / "experiments" / f"{name}.yaml", smoke_budget=True)
    return dataclasses.replace(
        experiment,
        dataset=dataclasses.replace(experiment.dataset, root=str(root)),
        output_dir=out / experiment.name,
        wandb=dataclasses.replace(experiment.wandb, mode="offline"),
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["emnist", "cifar10"])
def test_paper_experiment_runs_end_to_end_at_the_smoke_budget(
    name: str, tmp_path: Path, cifar_md5_bypass
) -> None:
    root = tmp_path / "data"
    if name == "emnist":
        write_fake_emnist(root, train_per_class=10, test_per_class=2)
    else:
        write_fake_cifar(root, per_class_per_batch=2, test_per_class=2)
    experiment = smoke_experiment(name, root, tmp_path / "outputs")
    runs = [r for r in plan(experiment, seeds=[experiment.seeds[0]])]
    launch(experiment, runs, experiment.cluster.with_executor("inline"))
    rows = status_table(experiment, runs)
    assert [r["run_id"] for r in rows if r["state"] != "done"] == []
    evaluations = [r for r in rows if r["kind"] == "evaluate"]
    assert len(evaluations) == len(experiment.evaluation.systems) * experiment.evaluation.shards
