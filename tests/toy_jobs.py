"""Toy job bodies shared by the cluster tests. Job processes import this module by reference (conftest's
`importable_repo` puts tests/ on their PYTHONPATH), so a failing job's traceback shows this file's source lines."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from comprobust.atomic import atomic_write_text
from comprobust.cluster.submit import Requeueable


def read_state(path: Path) -> dict:
    """The toy run's state file: finished epochs and how often the job started."""
    return json.loads(path.read_text()) if path.exists() else {"done": [], "starts": 0}


class Epochs(Requeueable):
    """A toy training run: one 'epoch' per `epoch_s`, its progress in an atomically written state file, resumed
    after the last finished epoch when the job is requeued."""

    def __init__(self, state_file: str, epochs: int, epoch_s: float) -> None:
        self.state_file, self.epochs, self.epoch_s = state_file, epochs, epoch_s

    def __call__(self) -> dict:
        path = Path(self.state_file)
        state = read_state(path)
        state["starts"] += 1
        state["pid"] = os.getpid()
        atomic_write_text(path, json.dumps(state))
        for epoch in range(len(state["done"]), self.epochs):
            time.sleep(self.epoch_s)
            state["done"].append(epoch)
            atomic_write_text(path, json.dumps(state))
        return state


def stamp(folder: str, name: str, seconds: float) -> dict:
    """Sleep, then record when this job started and ended in `<folder>/<name>.json`."""
    start = time.time()
    time.sleep(seconds)
    record = {"name": name, "start": start, "end": time.time()}
    atomic_write_text(Path(folder) / f"{name}.json", json.dumps(record))
    return record


def explode(x: int) -> None:
    """A job that fails with a recognisable message."""
    print("about to fail", file=sys.stderr)
    raise ValueError(f"boom {x}")
