"""Reading offline runs into pandas (issue 6): 100 evaluation runs, each with a 167-row "compositions" table (and
a 160-row "invariance" table, as real evaluations log), read by `OfflineRunStore` into the tidy frames.

Setup (not timed): the runs are written once with the real wandb client in offline mode through
`comprobust.tracking.start_run`, like `comprobust.evaluation.evaluate_run` writes them (about 0.2-1 s per run;
pass --dir to keep them for the next time). Timed, in this process:

* baseline: decode every run log and table JSON with `wandb_offline.read_run` + `json`, no pandas, no cache;
* cold: `OfflineRunStore(...).runs()/.results()` with an empty cache folder;
* warm: the same with the cache the cold read wrote (unchanged runs: a few `stat` calls each).

Each timing is the median of --repeat interleaved rounds (imports excluded).

    .venv/bin/python benchmarks/results.py [--runs 100] [--dir /tmp/comprobust-bench-runs] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from harness import REPEATS, Goal, record, setup

GOAL_S = 10.0


def write_runs(out: Path, count: int) -> Path:
    """`count` evaluation runs under `out` (skipped when they are already there); returns the WANDB_DIR."""
    from comprobust.compositions import paper_compositions
    from comprobust.corruptions import abbreviate
    from comprobust.tracking import start_run
    from comprobust.wandb_offline import find_runs

    wandb_dir = out / "wandb"
    if wandb_dir.is_dir() and len(find_runs(wandb_dir)) >= count:
        return wandb_dir
    os.environ.setdefault("WANDB_SILENT", "true")
    compositions = paper_compositions()
    methods = ["ERM", "Contrastive", "Modular", "ImgSpace-Identity", "ImgSpace-Joint"]
    started = time.perf_counter()
    for index in range(count):
        method, seed = methods[index % len(methods)], index // len(methods)
        run_id = f"eval-{method.lower()}-s{seed}-{index:010d}"
        config = {
            "system": "monolithic",
            "label": method,
            "seed": seed,
            "dataset": {"name": "mnist5k"},
            "compositions": ["-".join(c) for c in compositions],
            "shard": 0,
            "shards": 1,
            "kind": "evaluate",
            "experiment": "bench",
            "run_id": run_id,
            "stage": method,
        }
        rows = [
            [
                "-".join(c),
                abbreviate(c),
                len(c),
                " ".join(c),
                90.0 - 10 * len(c) + (i % 7),
                0.5 + i / 1000,
                1000,
            ]
            for i, c in enumerate(compositions)
        ]
        invariance = [
            ["-".join(c), len(c), 0.5 + (i % 11) / 30, 0.6 + (i % 13) / 40, 512]
            for i, c in enumerate(compositions)
            if len(c) >= 2
        ]
        with start_run(
            out_dir=out,
            project="comprobust-bench",
            group="bench",
            job_type="evaluate",
            name=run_id,
            run_id=run_id,
            config=config,
            tags=["bench"],
            mode="offline",
        ) as run:
            run.log_table(
                "compositions",
                ["composition", "abbreviation", "length", "elements", "accuracy", "loss", "images"],
                rows,
            )
            run.log_table(
                "invariance",
                ["composition", "length", "elemental_invariance", "composition_invariance", "units"],
                invariance,
            )
            run.summary_update({"acc/mean": sum(r[4] for r in rows) / len(rows), "label": method})
        if index % 20 == 19:
            print(f"  setup: {index + 1}/{count} runs written ({time.perf_counter() - started:.0f} s)")
    return wandb_dir


def baseline(wandb_dir: Path) -> tuple[float, int]:
    """Decode every log and table file, nothing else (the floor for any reader)."""
    from comprobust.wandb_offline import find_runs, read_run

    start = time.perf_counter()
    rows = 0
    for folder in find_runs(wandb_dir):
        run = read_run(folder)
        for path in run.tables.values():
            rows += len(json.loads(Path(path).read_text())["data"])
    return time.perf_counter() - start, rows


def store_read(wandb_dir: Path, cache: Path) -> tuple[float, int, int]:
    from comprobust.results import OfflineRunStore

    start = time.perf_counter()
    store = OfflineRunStore(wandb_dir, cache, group="bench")
    runs, results = store.runs(), store.results()
    elapsed = time.perf_counter() - start
    return elapsed, len(runs), len(results)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--dir", help="keep the generated runs here (reused when present)")
    parser.add_argument("--repeat", type=int, default=REPEATS, help="timings: min and median of this many")
    args = parser.parse_args()
    environment = setup(1)
    os.environ.setdefault("WANDB_MODE", "offline")
    scratch = Path(tempfile.mkdtemp(prefix="comprobust-bench-"))
    try:
        out = Path(args.dir) if args.dir else scratch / "runs"
        started = time.perf_counter()
        wandb_dir = write_runs(out, args.runs)
        took = time.perf_counter() - started
        print(f"setup: {args.runs} offline runs in {wandb_dir} ({took:.1f} s, not timed)")
        import pandas  # noqa: F401  (imports are not part of the measurement)

        import comprobust.results  # noqa: F401
        from comprobust.wandb_offline import find_runs, read_run

        read_run(find_runs(wandb_dir)[0])  # imports wandb's protobuf classes outside the timings
        base, cold, warm = [], [], []
        for i in range(args.repeat):  # interleaved: baseline, cold read (a new cache each), warm read
            base.append(baseline(wandb_dir))
            cold.append(store_read(wandb_dir, scratch / f"cache-{i}"))
            warm.append(store_read(wandb_dir, scratch / "cache-0"))
        base_s, table_rows = statistics.median(b[0] for b in base), base[0][1]
        (_, runs, rows), (_, runs_warm, rows_warm) = cold[0], warm[-1]
        cold_s, warm_s = statistics.median(c[0] for c in cold), statistics.median(w[0] for w in warm)
        assert (runs, rows) == (runs_warm, rows_warm) and rows == 167 * args.runs, (runs, rows)
        print(f"baseline (decode logs + {table_rows} table rows, no pandas): {base_s:6.2f} s")
        print(
            f"cold read into pandas ({runs} runs, {rows} result rows, no cache): {cold_s:6.2f} s "
            f"= {cold_s / base_s:.2f}x the baseline, {cold_s / GOAL_S:.3f} of the {GOAL_S:.0f} s goal"
        )
        print(
            f"warm read (cache of unchanged runs):                      {warm_s:6.2f} s "
            f"= {warm_s / base_s:.2f}x the baseline, {warm_s / GOAL_S:.3f} of the goal, "
            f"{cold_s / warm_s:.1f}x faster than cold"
        )
        row = {
            "benchmark": f"`results.py`: {runs} offline runs, each with a 167-row table, into pandas",
            "baseline": f"decoding the logs alone: {base_s:.2f} s",
            "measured": f"**{cold_s:.2f} s** cold, {warm_s:.2f} s from the cache (medians of {args.repeat})",
            "goal": f"< {GOAL_S:.0f} s",
        }
        record(
            "results",
            environment,
            [row],
            [Goal("results: cold read of 100 runs (median)", cold_s, "<", GOAL_S, " s")],
            {"baseline_s": base_s, "cold_s": cold_s, "warm_s": warm_s},
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
