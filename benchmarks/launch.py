"""Planning and dry-running a 1,000-run grid (goal under 5 s), measured in this process.

    .venv/bin/python benchmarks/launch.py

The grid is experiments/emnist.yaml with 27 seeds: 27 x (17 training runs + 5 systems x 4 shards) = 999 runs.
Submitting a 100-task array to the local Slurm: benchmarks/slurm_submit.py; the offline sweep controller's bayes
latency: benchmarks/sweeps.py.
"""
from __future__ import annotations

import dataclasses
import io
import tempfile
import time
from pathlib import Path

from comprobust.cluster import cluster_config
from comprobust.config import load_experiment
from comprobust.planning import plan
from comprobust.run_state import describe_plan

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    start = time.perf_counter()
    experiment = load_experiment(REPO / "experiments" / "emnist.yaml")
    load_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        grid = dataclasses.replace(experiment, seeds=tuple(range(27)), output_dir=Path(tmp) / "emnist")
        start = time.perf_counter()
        runs = plan(grid)
        plan_s = time.perf_counter() - start
        start = time.perf_counter()
        describe_plan(grid, runs, cluster_config(grid, "local"), out=io.StringIO())
        dry_s = time.perf_counter() - start
    total = load_s + plan_s + dry_s
    print(f"{len(runs)} runs: load+validate {load_s:.3f} s, plan {plan_s:.3f} s, dry-run listing {dry_s:.3f} s "
          f"(states + sbatch options), total {total:.2f} s (goal < 5 s: {'met' if total < 5 else 'NOT met'})")


if __name__ == "__main__":
    main()
