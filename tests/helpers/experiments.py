"""A small experiment YAML (ERM, a backbone and modules on mnist5k, two evaluation systems) written with changes,
and the run ids it plans: what the tests of stage parameters compare; and a sweep's stage command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from comprobust.planning import resolve

BASE: dict[str, Any] = {
    "name": "t",
    "dataset": {"name": "mnist5k"},
    "stages": {
        "erm": {"method": "erm", "lr": 0.01},
        "backbone": {"method": "backbone", "lr": 0.1},
        "modules": {"method": "modules", "backbone": "backbone", "lr": 0.01},
    },
    "evaluation": {
        "systems": {"ERM": {"classifier": "erm"}, "Modular": {"backbone": "backbone", "modules": "modules"}}
    },
}


def write_experiment(
    tmp_path: Path, erm: dict | None = None, evaluation: dict | None = None, **top: Any
) -> Path:
    """`BASE` with `erm` merged into its erm stage, `evaluation` into its evaluation block and `top` over its top
    level, as `tmp_path/exp.yaml`."""
    body = yaml.safe_load(yaml.safe_dump(BASE))
    body["stages"]["erm"].update(erm or {})
    body["evaluation"].update(evaluation or {})
    body.update(top)
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def run_ids(path: Path) -> list[str]:
    """The ids of every run the experiment at `path` plans."""
    return [run.run_id for run in resolve(path).runs]


def sweep_command(experiment: str = "experiments/demo.yaml", stage: str = "erm", *extra: str) -> list[str]:
    """A sweep's `command`: W&B's agent macros around `launch.py run-stage <experiment> --stage <stage> <extra>`."""
    return [
        "${env}",
        "${interpreter}",
        "launch.py",
        "run-stage",
        experiment,
        "--stage",
        stage,
        *extra,
        "${args}",
    ]
