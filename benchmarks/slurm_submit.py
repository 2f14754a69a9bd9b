"""Submitting a 100-task array to the local Slurm vs submitting one single job (same process, same executor).

Prints the submission times, their ratio and the per-task cost, then the time until all 100 tasks finished.
Needs a live controller (`bash scripts/local_slurm.sh start`); prints a message and exits 0 when none answers.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import REPEATS, record, setup

from comprobust.cluster import ClusterConfig, slurm_is_up
from comprobust.cluster.submit import make_executor, submit_array
from comprobust.cluster.wait import wait_for_jobs

N_TASKS = 100


def noop(i: int) -> int:
    return i


def main() -> int:
    if not slurm_is_up():
        print(
            "slurm_submit: skipped, no Slurm controller answers `scontrol ping` "
            "(start one with: bash scripts/local_slurm.sh start)"
        )
        return 0
    environment = setup(1)
    config = ClusterConfig.from_dict(
        {
            "executor": "slurm",
            "cpus_per_task": 1,
            "mem_gb": 0.25,
            "timeout_min": 10,
            "signal_delay_s": 30,
            "array_parallelism": 100,
        },
        source="benchmark",
    )
    with tempfile.TemporaryDirectory(prefix="slurm-bench-", dir=Path.cwd()) as folder:
        executor = make_executor(config, folder)
        single_s, array_s, all_jobs = [], [], []
        for repeat in range(REPEATS):
            time.sleep(0.25)  # submitit waits until 0.2 s passed since its previous submission: keep that out
            start = time.perf_counter()
            all_jobs += submit_array(executor, noop, [(0,)], name="bench1")
            single_s.append(time.perf_counter() - start)
            time.sleep(0.25)
            start = time.perf_counter()
            jobs = submit_array(executor, noop, [(i,) for i in range(N_TASKS)], name="bench100")
            array_s.append(time.perf_counter() - start)
            all_jobs += jobs
            if repeat < REPEATS - 1:  # only the last array runs, so that it has the CPUs to itself
                subprocess.run(["scancel", jobs[0].job_id.split("_")[0]], check=False, capture_output=True)
        one, hundred = statistics.median(single_s), statistics.median(array_s)
        print(f"submit 1 job:            {one * 1000:8.1f} ms (median of {REPEATS})")
        print(
            f"submit {N_TASKS}-task array:   {hundred * 1000:8.1f} ms (median of {REPEATS}); "
            f"{hundred / one:.1f}x one job, {hundred / N_TASKS * 1000:.1f} ms per task "
            f"(vs {one * 1000:.1f} ms + submitit's 200 ms throttle for each of {N_TASKS} single jobs)"
        )
        start = time.perf_counter()
        try:
            results = wait_for_jobs(
                jobs, label="array", poll_s=0.5, sacct_every_s=5, timeout_s=600, progress=None
            )
        finally:
            ids = sorted({job.job_id.split("_")[0] for job in all_jobs})
            subprocess.run(["scancel", *ids], check=False, capture_output=True)
        assert results == list(range(N_TASKS))
        done_s = time.perf_counter() - start
        print(
            f"last {N_TASKS}-task array ran to completion {done_s:.1f} s after submission "
            "(array_parallelism 100 on the 8 declared CPUs)"
        )
    record(
        "slurm_submit",
        environment,
        [
            {
                "benchmark": f"`slurm_submit.py`: a {N_TASKS}-task array to the local Slurm",
                "baseline": f"one single job: {one * 1e3:.1f} ms",
                "goal": "-",
                "measured": f"**{hundred * 1e3:.0f} ms** ({hundred / N_TASKS * 1e3:.1f} ms per task, medians of {REPEATS}); "
                f"all {N_TASKS} done {done_s:.0f} s after submission",
            }
        ],
        [],
        {"single_s": single_s, "array_s": array_s, "done_s": done_s},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
