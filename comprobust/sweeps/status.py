"""What an offline sweep has done so far: counts per state, a table of its runs, and its best run."""

from __future__ import annotations

import os
from typing import Any

from comprobust.sweeps.controller import SweepController
from comprobust.sweeps.store import CRASHED, FAILED, FINISHED, RUNNING, STOPPED, RunRecord


def summarize(folder: str | os.PathLike) -> dict[str, Any]:
    """Counts per state, the table rows and the best run of an offline sweep."""
    controller = SweepController(folder)
    controller.store.verify()  # a damaged journal is reported, not read up to the damage
    records = controller.records()
    metric = controller.metric or {}
    name, goal = str(metric.get("name")), metric.get("goal", "minimize")
    scored = [r for r in records if r.state == FINISHED and isinstance(r.summary.get(name), (int, float))]
    best = None
    if scored:
        best = (max if goal == "maximize" else min)(scored, key=lambda r: r.summary[name])
    counts = {
        state: sum(r.state == state for r in records)
        for state in (RUNNING, FINISHED, FAILED, STOPPED, CRASHED)
    }
    return {
        "sweep_id": controller.sweep_id,
        "folder": str(controller.folder),
        "method": controller.config["method"],
        "metric": metric,
        "records": records,
        "counts": counts,
        "best": best,
    }


def status_table(folder: str | os.PathLike) -> str:
    """A text table of the sweep's runs (parameters, state, metric) and its best run."""
    info = summarize(folder)
    records: list[RunRecord] = info["records"]
    name = (info["metric"] or {}).get("name")
    params = list(dict.fromkeys(k for r in records for k in r.params))
    header = ["run", "state", "try", *params, name or "metric"]
    rows = [
        [
            r.run_id,
            r.state,
            str(r.attempt),
            *(_fmt(r.params.get(p)) for p in params),
            _fmt(r.summary.get(name)) if name else "-",
        ]
        for r in records
    ]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    lines = [
        f"sweep {info['sweep_id']} ({info['method']}) in {info['folder']}: "
        + ", ".join(f"{n} {s}" for s, n in info["counts"].items() if n)
        if records
        else f"sweep {info['sweep_id']} ({info['method']}) in {info['folder']}: no runs yet"
    ]
    if records:
        lines += ["  ".join(c.ljust(w) for c, w in zip(header, widths))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    best = info["best"]
    if best is not None:
        lines.append(
            f"best: {best.run_id} {name}={_fmt(best.summary[name])} ("
            + ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
            + ")"
        )
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
