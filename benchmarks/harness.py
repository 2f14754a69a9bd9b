"""What makes a benchmark a figure: pinned threads, repeats, interleaving, machine load, versions, one JSON.

Every benchmark script calls `setup()` first, measures with `interleave` (baseline and candidate alternate, in
alternating order, so load hits both alike) and ends with `record()`, which merges its section into the one
results file (`benchmarks/results.json`, written atomically). `scripts/bench_table.py` turns that file into the
README's performance table and prints every goal as met / not met.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(os.environ.get("COMPROBUST_BENCH_RESULTS", REPO / "benchmarks" / "results.json"))
REPEATS = 5


@dataclass(frozen=True)
class Goal:
    """One target: `value` compared with `target` by `op` ('<=', '>=', '<')."""

    name: str
    value: float
    op: str
    target: float
    unit: str = ""

    @property
    def met(self) -> bool:
        return {
            "<=": self.value <= self.target,
            ">=": self.value >= self.target,
            "<": self.value < self.target,
        }[self.op]

    def line(self) -> str:
        return (
            f"{self.name}: {self.value:.4g}{self.unit} (goal {self.op} {self.target:g}{self.unit}): "
            f"{'met' if self.met else 'NOT met'}"
        )


def setup(threads: int) -> dict[str, Any]:
    """Pin torch (and OpenCV) to `threads` CPU threads; return the environment to record with the results."""
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    return {"threads": threads, "load_before": os.getloadavg(), **versions()}


def versions() -> dict[str, Any]:
    """Interpreter, library versions, CPU count, machine, git commit and date."""
    import cv2
    import numba
    import numpy
    import scipy
    import skimage
    import torch

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-image": skimage.__version__,
        "opencv": cv2.__version__,
        "numba": numba.__version__,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "commit": commit.stdout.strip() or "unknown",
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


@dataclass
class Timings:
    """Seconds per round of each candidate: wall clock, and CPU time of this process (all its threads), which a
    busy machine disturbs far less."""

    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]


def interleave(candidates: Mapping[str, Callable[[], Any]], repeats: int = REPEATS) -> Timings:
    """Time each callable over `repeats` rounds; each round runs them all, in alternating order."""
    names = list(candidates)
    timings = Timings({name: [] for name in names}, {name: [] for name in names})
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            wall, cpu = time.perf_counter(), time.process_time()
            candidates[name]()
            timings.cpu[name].append(time.process_time() - cpu)
            timings.wall[name].append(time.perf_counter() - wall)
    return timings


def spread(samples: list[float]) -> dict[str, float]:
    """min, median and max of repeated measurements, plus the count."""
    return {"min": min(samples), "median": statistics.median(samples), "max": max(samples), "n": len(samples)}


def ratio(numerator: list[float], denominator: list[float]) -> dict[str, float]:
    """Ratios of paired samples (same round): their min, median and max."""
    return spread([a / b for a, b in zip(numerator, denominator)])


def record(
    name: str,
    environment: Mapping[str, Any],
    rows: list[dict[str, Any]],
    goals: list[Goal],
    figures: Mapping[str, Any] | None = None,
) -> None:
    """Merge benchmark `name` into the results file: its rows (README table), goals, raw figures, load."""
    section = {
        "environment": {**environment, "load_after": os.getloadavg()},
        "rows": rows,
        "goals": [{**asdict(goal), "met": goal.met} for goal in goals],
        "figures": dict(figures or {}),
    }
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[name] = section
    tmp = RESULTS.with_name(f".{RESULTS.name}.tmp")
    tmp.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, RESULTS)
    load = ", ".join(f"{value:.2f}" for value in section["environment"]["load_after"])
    print(
        f"[{name}] {environment['threads']} thread(s), load average {load} on {os.cpu_count()} CPUs; "
        f"written to {RESULTS}",
        file=sys.stderr,
    )
    for goal in goals:
        print(f"  {goal.line()}")
