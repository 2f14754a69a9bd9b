"""Offline sweep controller: bayes suggestion latency, and the locked store's throughput.

Run: `.venv/bin/python benchmarks/sweeps.py` (no network, a few seconds to a minute on 2 cores).

1. Suggestion latency with 100 finished runs (2 parameters: log-uniform lr, uniform weight): the `sweeps` engine's
   bayes (a Gaussian process refit per suggestion) against random search as the baseline, both through
   `comprobust.sweeps.engine.suggest_params` exactly as `SweepController.next_run` calls it under the lock.
2. Store throughput: `next_run` + `finish` pairs per second (random search, so the engine costs ~nothing) with 1
   agent and with 8 concurrent agent processes on the same sweep folder, against the bare journal transaction
   (lock + append + fsync) as the baseline. The folder is on the local disk here; on NFS each transaction costs a
   few round trips more (lock create, journal open/read/write/fsync, lock unlink).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

# replace (not prepend) this script's folder: it would shadow W&B's `sweeps` package with this very file
sys.path[0] = str(Path(__file__).resolve().parents[1])
sys.path.append(str(Path(__file__).resolve().parent))  # after site-packages, for the harness only

from harness import REPEATS, record, setup  # noqa: E402

from comprobust.sweeps.controller import Agent, SweepController  # noqa: E402
from comprobust.sweeps.engine import suggest_params, sweeps_engine  # noqa: E402
from comprobust.sweeps.folder import create_sweep  # noqa: E402
from comprobust.sweeps.store import FINISHED, HOST, RunRecord, SweepStore  # noqa: E402

PARAMETERS = {
    "lr": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1.0},
    "weight": {"distribution": "uniform", "min": 0.0, "max": 1.0},
}
METRIC = {"name": "val_acc", "goal": "maximize"}
FORK = multiprocessing.get_context("fork")


def score(params: dict) -> float:
    return 0.9 - 0.2 * (math.log10(params["lr"]) + 1.5) ** 2 - 0.1 * (params["weight"] - 0.3) ** 2


def finished_runs(n: int) -> list[RunRecord]:
    rng = random.Random(0)
    runs = []
    for i in range(n):
        params = {"lr": 10 ** rng.uniform(-3, 0), "weight": rng.uniform(0, 1)}
        runs.append(
            RunRecord(
                run_id=f"r{i}", index=i, params=params, state=FINISHED, summary={"val_acc": score(params)}
            )
        )
    return runs


def latency(method: str, runs: list[RunRecord], repeats: int) -> list[float]:
    config = sweeps_engine().SweepConfig({"method": method, "metric": METRIC, "parameters": PARAMETERS})
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        suggest_params(config, runs, f"bench{i}")
        times.append(time.perf_counter() - start)
    return times


def bare_transactions(folder: Path, n: int) -> float:
    store = SweepStore(folder)
    start = time.perf_counter()
    for i in range(n):
        with store.transaction() as s:
            s.append(
                {
                    "op": "issue",
                    "run_id": f"b{i}",
                    "index": i,
                    "params": {},
                    "agent": "x",
                    "host": HOST,
                    "pid": os.getpid(),
                }
            )
    return n / (time.perf_counter() - start)


def _agent_loop(folder: str, n: int) -> None:
    controller, agent = SweepController(folder), Agent.here()
    for _ in range(n):
        run = controller.next_run(agent)
        if run is None:
            return
        controller.finish(run, FINISHED, {"val_acc": score(run.params)})


def throughput(root: Path, agents: int, per_agent: int) -> float:
    folder = create_sweep(
        {"method": "random", "metric": METRIC, "parameters": PARAMETERS, "command": ["true"]},
        root / f"agents{agents}",
        f"tp{agents}",
    )
    start = time.perf_counter()
    if agents == 1:
        _agent_loop(str(folder), per_agent)
    else:
        procs = [FORK.Process(target=_agent_loop, args=(str(folder), per_agent)) for _ in range(agents)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join()
            assert proc.exitcode == 0
    elapsed = time.perf_counter() - start
    records = SweepController(folder).records()
    assert len(records) == agents * per_agent and all(r.state == FINISHED for r in records)
    return len(records) / elapsed


def main() -> None:
    environment = setup(1)
    runs = finished_runs(100)
    latency("random", runs, 1)  # warm-up: imports
    random_s = statistics.median(latency("random", runs, REPEATS))
    bayes_s = statistics.median(latency("bayes", runs, REPEATS))
    print(f"suggestion latency with {len(runs)} finished runs (median of {REPEATS}):")
    print(f"  random {random_s * 1e3:8.1f} ms   (baseline)")
    print(f"  bayes  {bayes_s * 1e3:8.1f} ms   = {bayes_s / random_s:.0f}x random")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bare = bare_transactions(root / "bare", 300)
        one = throughput(root, 1, 150)
        eight = throughput(root, 8, 40)
    print("store throughput (local disk):")
    print(f"  bare transaction (lock + append + fsync)  {bare:7.0f} /s   (baseline)")
    print(f"  next_run + finish, 1 agent                {one:7.0f} /s   = {one / bare:.2f}x baseline")
    print(
        f"  next_run + finish, 8 agents (processes)   {eight:7.0f} /s   = {eight / bare:.2f}x baseline, "
        f"{eight / one:.2f}x one agent"
    )
    record(
        "sweeps",
        environment,
        [
            {
                "benchmark": "`sweeps.py`: offline controller's bayes suggestion with 100 finished runs",
                "baseline": f"random suggestion: {random_s * 1e3:.1f} ms",
                "measured": f"**{bayes_s * 1e3:.0f} ms** (median of {REPEATS})",
                "goal": "-",
            },
            {
                "benchmark": "same: sweep store, `next_run` + `finish` pairs per second",
                "baseline": f"bare lock + append + fsync: {bare:,.0f}/s",
                "measured": f"{one:,.0f}/s with 1 agent, {eight:,.0f}/s with 8 concurrent agents",
                "goal": "-",
            },
        ],
        [],
        {
            "random_s": random_s,
            "bayes_s": bayes_s,
            "bare_per_s": bare,
            "one_per_s": one,
            "eight_per_s": eight,
        },
    )


if __name__ == "__main__":
    main()
