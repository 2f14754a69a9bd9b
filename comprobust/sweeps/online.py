"""The thin online path: one W&B sweep per sweep file (a relaunch continues it) and real `wandb agent` jobs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from comprobust.atomic import atomic_write_text
from comprobust.sweeps.engine import sweep_id_for
from comprobust.sweeps.folder import identity_of
from comprobust.sweeps.validate import SweepSpec


@dataclass(frozen=True)
class OnlineSweep:
    """A sweep on the W&B server: `path` (entity/project/id) is what `wandb agent` takes."""

    path: str
    url: str
    created: bool


def online_sweep(
    spec: SweepSpec,
    folder: Path,
    sweep_path: str | None = None,
    new: bool = False,
    prior_runs: Sequence[str] = (),
) -> OnlineSweep:
    """The W&B sweep of `spec`: the one given, else the one an earlier launch of the same sweep created (kept in
    `<folder>/<local id>.json`, so a relaunch continues it instead of starting over), else a new one (`new`
    always makes a new one). `prior_runs` join a new sweep as finished trials (publishing an offline sweep)."""
    import wandb
    from wandb.sdk.wandb_sweep import _get_sweep_url

    from comprobust.wandb_connection import base_url

    record_file = folder / f"{sweep_id_for(spec.config, identity_of(spec))}.json"
    entity = spec.config.get("entity") or (spec.experiment.wandb.entity if spec.experiment else None)
    project = spec.config["project"]
    created = False
    if sweep_path is None and record_file.exists() and not new:
        sweep_path = json.loads(record_file.read_text())["path"]
    if sweep_path is None:
        sweep_id = wandb.sweep(
            dict(spec.config), project=project, entity=entity, prior_runs=list(prior_runs) or None
        )
        entity = entity or wandb.Api().default_entity
        sweep_path, created = f"{entity}/{project}/{sweep_id}", True
    parts = sweep_path.split("/")
    if len(parts) == 1:
        parts = [str(entity or wandb.Api().default_entity), project, parts[0]]
    sweep_path = "/".join(parts)
    url = (
        _get_sweep_url(base_url=base_url(), entity=parts[0], project=parts[1], sweep_id=parts[2])
        or sweep_path
    )
    atomic_write_text(
        record_file, json.dumps({"path": sweep_path, "url": url, "source": str(spec.path)}, indent=1)
    )
    return OnlineSweep(sweep_path, url, created)


def wandb_agent_command(sweep_path: str, count: int | None = None) -> list[str]:
    """`wandb agent [--count K] <entity/project/sweep_id>`, run with this Python's wandb."""
    return [sys.executable, "-m", "wandb", "agent", *(["--count", str(count)] if count else []), sweep_path]


def wandb_agent_job(sweep_path: str, count: int | None, workdir: str) -> int:
    """What each array task runs online: a real `wandb agent`, with this Python first on PATH (the agent
    runs `python` for ${interpreter})."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return subprocess.run(wandb_agent_command(sweep_path, count), cwd=workdir, env=env, check=True).returncode
