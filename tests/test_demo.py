"""`launch.py demo`, the newcomer's first command, runs an experiment end to end through `run`'s own options."""

from __future__ import annotations

from pathlib import Path

import yaml

from comprobust.cli import main


def test_demo_runs_an_experiment_to_its_report(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    experiment = tmp_path / "tiny.yaml"
    experiment.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "dataset": {
                    "name": "mnist5k",
                    "root": str(tmp_path / "data"),
                    "split_sizes": {"train": 6, "valid": 2, "test": 2},
                },
                "seeds": [1],
                "output_root": str(tmp_path / "outputs"),
                "compositions": ["Identity", "Invert"],
                "training": {"max_epochs": 1, "batch_size": 16},
                "stages": {"erm": {"method": "erm", "lr": 0.01}},
                "evaluation": {"systems": {"ERM": {"classifier": "erm"}}},
            }
        )
    )
    assert main(["demo", "--experiment", str(experiment)]) == 0
    assert (tmp_path / "outputs" / "tiny" / "report" / "index.html").is_file()
    assert "report:" in capsys.readouterr().out
