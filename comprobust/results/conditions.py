"""The per-condition results of cue-dataset runs (`supervised` teachers and baselines, `distill` students): one row
per (run, test condition), with the run's stage, method, seed and axis values as columns, so a frame answers
"which teacher mechanisms, transfer set and loss gave which fidelity under which condition"."""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from comprobust.results.records import CONDITIONS_TABLE, RunRecord, sort_time

IDENTITY_COLUMNS = ["stage", "method", "dataset", "seed", "run_id"]
TABLE_RENAMES = {"loss": "cross_entropy"}  # the table's loss column, apart from a student's `loss` axis


def conditions_frame(records: Iterable[RunRecord]) -> tuple[pd.DataFrame, list[str]]:
    """The finished runs' `conditions` tables stacked, each row with its run's identity and axis values (the
    latest run wins when a stage, seed, axis values and condition repeat), and notes on what was superseded."""
    parts = []
    axis_columns: dict[str, None] = {}  # in the order first met
    for record in records:
        table = record.tables.get(CONDITIONS_TABLE)
        if record.state != "finished" or table is None or table.empty:
            continue
        axes = dict(record.config.get("axes") or {})
        axis_columns.update(dict.fromkeys(axes))
        identity = {
            "stage": record.config.get("stage", ""),
            "method": record.config.get("method", ""),
            "dataset": record.dataset,
            "seed": record.config.get("seed"),
            "run_id": record.run_id,
            **axes,
            "_created": sort_time(record.created),
        }
        table = table.rename(columns=TABLE_RENAMES)
        parts.append(table.assign(**{k: [v] * len(table) for k, v in identity.items()}))
    if not parts:
        return pd.DataFrame(columns=[*IDENTITY_COLUMNS, "condition"]), []
    frame = pd.concat(parts, ignore_index=True).sort_values("_created", kind="stable")
    key = ["stage", "seed", *axis_columns, "condition"]
    repeated = frame.astype({c: str for c in axis_columns}).duplicated(key, keep="last")
    notes = []
    if repeated.any():
        old = sorted(set(frame.loc[repeated, "run_id"]) - set(frame.loc[~repeated, "run_id"]))
        notes.append(
            f"conditions: {len(old)} superseded runs ({', '.join(old)}); the latest runs' values are used"
        )
    frame = frame[~repeated].drop(columns="_created")
    leading = [*IDENTITY_COLUMNS, *axis_columns]
    return frame[leading + [c for c in frame.columns if c not in leading]].reset_index(drop=True), notes
