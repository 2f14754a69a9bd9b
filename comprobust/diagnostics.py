"""Diagnostics of the runs behind a report's results (written beside the statistics, `comprobust.statistics`):

* `training_diagnostics`: per training run that fed the results, its best epoch against its last ("not
  converged" when equal) and, for modules, the chosen level and its search margin against its standard error;
* `commuting_diagnostics`: |A(AB) - A(BA)| per system and seed on `EXACTLY_COMMUTING` pairs, whose two orders
  give identical images (checked against the corruption engine by the tests): 0 for any monolithic system.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from comprobust.corruption_names import exactly_commuting_pairs
from comprobust.runs import run_id_of_model

RESOLVED_SE = 2.0  # a module level is "resolved" when its search margin exceeds this many standard errors
EXACTLY_COMMUTING = exactly_commuting_pairs()
"""Pairs whose two orders give identical images: they commute in exact arithmetic, and the corruption engine
computes both orders the same way (`corruption_names.MOVES_AFTER`), so no rounding tells them apart."""


def commuting_diagnostics(results: pd.DataFrame) -> pd.DataFrame:
    """|A(AB) - A(BA)| per method, seed and `EXACTLY_COMMUTING` pair whose two orders were both evaluated."""
    accuracy = results.set_index(["method", "seed", "composition"])["accuracy"]
    rows = []
    for (method, seed), _ in results.groupby(["method", "seed"], sort=False):
        for a, b in EXACTLY_COMMUTING:
            ab, ba = accuracy.get((method, seed, f"{a}-{b}")), accuracy.get((method, seed, f"{b}-{a}"))
            if ab is not None and ba is not None:
                rows.append(
                    {
                        "method": method,
                        "seed": seed,
                        "pair": f"{a}-{b}",
                        "accuracy_ab": ab,
                        "accuracy_ba": ba,
                        "abs_diff": abs(ab - ba),
                    }
                )
    return pd.DataFrame(rows, columns=["method", "seed", "pair", "accuracy_ab", "accuracy_ba", "abs_diff"])


def training_diagnostics(runs: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Per finished training run that fed `results` (through evaluation inputs, transitively): best and last
    epoch, `converged` (best before last), and for modules the chosen level, the runner-up, the search margin
    (pp of validation accuracy over the runner-up level), its paired standard error, and `level_resolved`:
    the margin exceeds `RESOLVED_SE` standard errors."""
    columns = [
        "run_id",
        "stage",
        "seed",
        "corruption",
        "architecture",
        "best_epoch",
        "last_epoch",
        "converged",
        "level",
        "runner_up",
        "level_margin",
        "margin_se",
        "level_resolved",
    ]
    if runs.empty or "summary.best_epoch" not in runs:
        return pd.DataFrame(columns=columns)
    training = runs[(runs["kind"] == "train") & (runs["state"] == "finished")]
    fed = _upstream(runs, set(results["run_id"]))
    training = training[training["run_id"].isin(fed)]
    rows = [_training_row(row) for _, row in training.iterrows()]
    return pd.DataFrame(rows, columns=columns)


def _upstream(runs: pd.DataFrame, run_ids: set[str]) -> set[str]:
    """Every run reachable from `run_ids` through `config.inputs` ("model-<run id>:best" references)."""
    inputs = {}
    if "config.inputs" in runs:
        for run_id, value in zip(runs["run_id"], runs["config.inputs"]):
            refs = (
                json.loads(value)
                if isinstance(value, str)
                else list(value)
                if isinstance(value, list)
                else []
            )
            inputs[run_id] = [run_id_of_model(ref) for ref in refs]
    seen, todo = set(), list(run_ids)
    while todo:
        run_id = todo.pop()
        if run_id not in seen:
            seen.add(run_id)
            todo.extend(inputs.get(run_id, []))
    return seen


def _training_row(row: pd.Series) -> dict[str, Any]:
    best = row.get("summary.best_epoch", np.nan)
    last = row.get("summary.epoch", np.nan)
    if not np.isfinite(last):
        last = row.get("config.params.max_epochs", np.nan) - 1
    margin, margin_se = _number(row, "summary.level_margin"), _number(row, "summary.level_margin_se")
    if not np.isfinite(margin):  # runs from before the search recorded its margin
        searched = sorted(
            (
                v
                for k, v in row.items()
                if k.startswith("summary.level_") and k.endswith("_val_acc") and np.isfinite(v)
            ),
            reverse=True,
        )
        margin = searched[0] - searched[1] if len(searched) > 1 else np.nan  # accuracies are in percent
    converged = bool(best < last) if np.isfinite(best) and np.isfinite(last) else None
    resolved = bool(margin > RESOLVED_SE * margin_se) if np.isfinite(margin_se) else None
    return {
        "run_id": row["run_id"],
        "stage": row.get("config.stage", row["job_type"]),
        "seed": row["seed"],
        "corruption": row.get("config.corruption"),
        "architecture": row.get("config.architecture") or "",
        "best_epoch": best,
        "last_epoch": last,
        "converged": converged,
        "level": _number(row, "summary.level"),
        "runner_up": _number(row, "summary.level_runner_up"),
        "level_margin": margin,
        "margin_se": margin_se,
        "level_resolved": resolved,
    }


def _number(row: pd.Series, key: str) -> float:
    value = row.get(key, np.nan)
    return float(value) if isinstance(value, (int, float, np.number)) else np.nan
