"""The offline sweep folder `<experiment output>/sweeps/<sweep_id>/`: creating (or reopening) it, its id, and
the upstream stage runs a sweep needs before it can start."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError
from comprobust.runs import RunPaths
from comprobust.sweeps.engine import plain, sweep_id_for
from comprobust.sweeps.validate import SweepSpec

SWEEP_FILE, META_FILE = "sweep.yaml", "sweep-meta.json"


def create_sweep(
    config: Mapping[str, Any], folder: str | os.PathLike, sweep_id: str, meta: Mapping[str, Any] | None = None
) -> Path:
    """Create (or reopen) the offline sweep folder: `sweep.yaml` + `sweep-meta.json`. Reopening a sweep with a
    different config under the same folder is an error; the same config continues the sweep."""
    folder = Path(folder)
    config = plain(dict(config))
    existing = folder / SWEEP_FILE
    if existing.exists():
        if yaml.safe_load(existing.read_text()) != config:
            raise UserError(
                f"{folder}: holds sweep {sweep_id} with a different config; give another --sweep-id "
                "or move the folder away"
            )
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    full_meta = {"sweep_id": sweep_id, "created": time.time(), "workdir": os.getcwd(), **dict(meta or {})}
    atomic_write_text(folder / META_FILE, json.dumps(full_meta, indent=2, default=str))
    atomic_write_text(existing, yaml.safe_dump(config, sort_keys=False))
    return folder


def sweep_folder(spec: SweepSpec, sweep_id: str) -> Path:
    """`<experiment output>/sweeps/<sweep_id>` (absolute)."""
    return (Path(spec.experiment.output_dir) / "sweeps" / sweep_id).resolve()


def identity_of(spec: SweepSpec) -> dict[str, Any]:
    """What besides the sweep config decides its runs: the experiment file and its stage's resolved config."""
    if spec.target is None:
        return {}
    from comprobust.planning import plan

    runs = plan(spec.experiment, stages=[spec.target.stage])
    return {
        "experiment": spec.target.experiment,
        "stage": spec.target.stage,
        "stage_config": runs[0].config["hash"] if runs else None,
    }


def prepare_offline(spec: SweepSpec, sweep_id: str | None = None, create: bool = True) -> tuple[str, Path]:
    """The sweep id and folder of a validated spec, creating the folder unless `create` is False."""
    sweep_id = sweep_id or sweep_id_for(spec.config, identity_of(spec))
    folder = sweep_folder(spec, sweep_id)
    if create:
        wandb_cfg = spec.experiment.wandb if spec.experiment is not None else None
        create_sweep(
            spec.config,
            folder,
            sweep_id,
            {
                "source": str(spec.path),
                "target": asdict(spec.target) if spec.target else None,
                "output_dir": str(Path(spec.experiment.output_dir).resolve())
                if spec.experiment is not None
                else None,
                "project": spec.config.get("project") or (wandb_cfg.project if wandb_cfg else None),
                "entity": spec.config.get("entity") or (wandb_cfg.entity if wandb_cfg else None),
            },
        )
    return sweep_id, folder


def upstream_missing(spec: SweepSpec) -> list[str]:
    """Runs of upstream stages (e.g. the backbone of a modules sweep) that have not finished yet."""
    if spec.target is None:
        return []
    from comprobust.planning import plan

    experiment = spec.experiment
    seed = spec.target.seed if spec.target.seed is not None else experiment.seeds[0]
    needs = set(experiment.stages[spec.target.stage].needs)
    if not needs:
        return []
    runs = plan(experiment, seeds=[seed], evaluation=False)
    return [
        r.run_id for r in runs if r.group in needs and not RunPaths.of(experiment.output_dir, r).done.exists()
    ]
