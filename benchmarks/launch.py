"""Planning and dry-running a 999-run grid in a fresh interpreter (goal under 0.5 s, interpreter start included).

    .venv/bin/python benchmarks/launch.py [--repeats 5]

The grid is experiments/emnist.yaml with 27 seeds: 27 x (17 training runs + 5 systems x 4 shards) = 999 runs.
Each round starts a new interpreter that loads, plans and lists the grid (as `launch.py run --dry-run` would),
alternating with a bare interpreter start (the baseline) so load hits both. Submitting a 100-task array to the
local Slurm: benchmarks/slurm_submit.py; the offline sweep controller's latency: benchmarks/sweeps.py.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

from harness import REPEATS, REPO, Goal, interleave, record, setup, spread

PLAN_AND_LIST = textwrap.dedent(f"""
    import dataclasses, io, tempfile
    from pathlib import Path
    from comprobust.config import load_experiment
    from comprobust.run_state import describe_plan
    from comprobust.planning import plan
    experiment = load_experiment(Path({str(REPO)!r}) / "experiments" / "emnist.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        grid = dataclasses.replace(experiment, seeds=tuple(range(27)), output_dir=Path(tmp) / "emnist")
        runs = plan(grid)
        describe_plan(grid, runs, grid.cluster.with_executor("local"), out=io.StringIO())
    assert len(runs) == 999, len(runs)
""")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    environment = setup(1)
    timings = interleave(
        {
            "interpreter": lambda: subprocess.run([sys.executable, "-c", "pass"], check=True),
            "plan": lambda: subprocess.run([sys.executable, "-c", PLAN_AND_LIST], check=True),
        },
        args.repeats,
    )
    start, total = spread(timings.wall["interpreter"]), spread(timings.wall["plan"])
    print(
        f"999 runs: load + validate + plan + dry-run listing in a fresh interpreter {total['min']:.3f} / "
        f"{total['median']:.3f} s (min / median of {args.repeats}); bare interpreter start {start['median']:.3f} s"
    )
    row = {
        "benchmark": "`launch.py`: plan and dry-run a 999-run grid (emnist.yaml, 27 seeds), fresh interpreter",
        "baseline": f"bare interpreter start: {start['median']:.2f} s",
        "measured": f"**{total['median']:.2f} s** (min {total['min']:.2f} s) including interpreter start",
        "goal": "< 0.5 s",
    }
    goal = Goal(
        "launch: plan + dry-run of 999 runs incl. interpreter start (median)", total["median"], "<", 0.5, " s"
    )
    record("launch", environment, [row], [goal], {"interpreter_s": start, "plan_s": total})


if __name__ == "__main__":
    main()
