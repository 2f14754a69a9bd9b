"""An offline sweep whose agents are a Slurm job array on the real local Slurm (`make test-slurm`): every grid
point runs exactly once, through the real `launch.py run-stage`, and lands as an offline W&B run of the sweep."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers.experiments import sweep_command

from comprobust.cli import main
from comprobust.sweeps.controller import SweepController
from comprobust.sweeps.store import FINISHED

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slurm, pytest.mark.slow]


@pytest.fixture(scope="module", autouse=True)
def _live_slurm(live_slurm):
    """Every test here needs the cluster (see conftest.live_slurm)."""


def test_offline_sweep_agents_run_as_a_slurm_array(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    experiment = yaml.safe_load((REPO / "experiments" / "demo.yaml").read_text())
    experiment.update(output_root=str(tmp_path / "outputs"), training={"max_epochs": 1, "batch_size": 32})
    experiment["dataset"].update(
        root=str(tmp_path / "data"), split_sizes={"train": 10, "valid": 5, "test": 5}
    )
    experiment["cluster"] = {"executor": "slurm", "mem_gb": 2, "timeout_min": 10, "signal_delay_s": 30}
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(experiment))
    sweep = {
        "method": "grid",
        "metric": {"name": "val_acc", "goal": "maximize"},
        "parameters": {"lr": {"values": [0.01, 0.05, 0.1]}},
        "command": sweep_command(str(tmp_path / "demo.yaml"), "backbone"),
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    assert main(["sweep", str(tmp_path / "sweep.yaml"), "--agents", "2", "--executor", "slurm"]) == 0
    assert "best:" in capsys.readouterr().out
    folder = next((tmp_path / "outputs" / "demo" / "sweeps").iterdir())
    records = SweepController(folder).records()
    assert sorted(r.params["lr"] for r in records) == [0.01, 0.05, 0.1]
    assert all(r.state == FINISHED for r in records), records
    wandb_runs = list((tmp_path / "outputs" / "demo" / "wandb" / "wandb").glob("offline-run-*"))
    assert {p.name.rsplit("-", 1)[1] for p in wandb_runs} == {r.run_id for r in records}
