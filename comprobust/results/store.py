"""`RunStore`: the runs of one experiment as tidy pandas frames, whatever backend read them (see
`comprobust.results`); a backend provides the run records, the base class builds the frames and caches
records."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comprobust.atomic import atomic_write_text
from comprobust.results.conditions import conditions_frame
from comprobust.results.records import (
    COMPOSITIONS_TABLE,
    INVARIANCE_COLUMNS,
    INVARIANCE_TABLE,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    RunRecord,
    method_order,
    sort_time,
)

log = logging.getLogger(__name__)

_CACHE_VERSION = (
    3  # 3: records hold the conditions and cue_conflict tables; 2: JSON (1 was a pickle, ignored)
)


class RunStore:
    """The runs of one experiment (a W&B project and group) as pandas frames; see the module docstring."""

    def __init__(self) -> None:
        self._records: list[RunRecord] | None = None
        self._frames: dict[str, pd.DataFrame] = {}
        self.warnings: list[str] = []

    # -- what the backends provide ----------------------------------------------------------------------
    def describe(self) -> str:
        """Where the runs come from, for messages."""
        raise NotImplementedError

    def _load_records(self) -> list[RunRecord]:
        raise NotImplementedError

    def _stats_file(self, record: RunRecord) -> Path | None:
        """The local npz of a run's activation statistics, or None."""
        raise NotImplementedError

    def _cache_file(self) -> Path | None:
        """Where this store caches its run records (None: no cache)."""
        raise NotImplementedError

    def _load_cache(self) -> dict[str, tuple[tuple, RunRecord]]:
        path = self._cache_file()
        if path is None or not path.is_file():
            return {}
        try:
            payload = json.loads(path.read_text())
            if payload.get("version") == _CACHE_VERSION:
                return {
                    key: (_tuples(entry["signature"]), _record_from_json(entry["record"]))
                    for key, entry in payload["entries"].items()
                }
        except Exception as err:  # noqa: BLE001  a damaged or foreign cache is rebuilt, never trusted
            log.warning("ignoring unreadable results cache %s (%s)", path, err)
        return {}

    def _save_cache(self, entries: dict[str, tuple[tuple, RunRecord]]) -> None:
        path = self._cache_file()
        if path is None:
            return
        payload = {
            "version": _CACHE_VERSION,
            "entries": {
                key: {"signature": signature, "record": _record_to_json(record)}
                for key, (signature, record) in entries.items()
            },
        }
        try:
            text = json.dumps(payload)
        except (TypeError, ValueError) as err:  # a value JSON cannot hold: go without the cache
            log.warning("not caching the runs in %s (%s)", path, err)
            return
        atomic_write_text(path, text)

    # -- shared ---------------------------------------------------------------------------------------------
    def records(self) -> list[RunRecord]:
        """Every run (one record per run id), oldest first."""
        if self._records is None:
            self._records = sorted(self._load_records(), key=lambda r: (sort_time(r.created), r.run_id))
        return self._records

    def refresh(self) -> None:
        """Forget what was read, so the next call reads the runs again (through the cache)."""
        self._records, self._frames, self.warnings = None, {}, []

    def runs(self) -> pd.DataFrame:
        """One row per run: identity, state, evaluation fields, `config.*` and `summary.*` (scalars)."""
        if "runs" not in self._frames:
            rows = []
            for r in self.records():
                row = {
                    "run_id": r.run_id,
                    "name": r.name,
                    "project": r.project,
                    "entity": r.entity,
                    "group": r.group,
                    "job_type": r.job_type,
                    "kind": r.config.get("kind", ""),
                    "state": r.state,
                    "method": r.method if r.is_evaluation else "",
                    "system": r.system,
                    "dataset": r.dataset,
                    "seed": r.config.get("seed"),
                    "shard": r.config.get("shard"),
                    "shards": r.config.get("shards"),
                    "created": r.created,
                    "location": r.location,
                }
                row.update(_flatten(r.config, "config.", skip=("compositions", "_wandb")))
                row.update(_flatten(r.summary, "summary."))
                rows.append(row)
            frame = pd.DataFrame(rows)
            for column in ("seed", "shard", "shards"):  # integers, with <NA> for runs without one
                values = [row[column] for row in rows]
                if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
                    frame[column] = pd.array(values, dtype="Int64")
            self._frames["runs"] = frame.reindex(
                columns=RUN_COLUMNS + [c for c in frame.columns if c not in RUN_COLUMNS]
            )
        return self._frames["runs"].copy()

    def conditions(self) -> pd.DataFrame:
        """Per-condition results of cue-dataset runs: one row per (run, condition), axes as columns
        (`comprobust.results.conditions`)."""
        if "conditions" not in self._frames:
            frame, notes = conditions_frame(self.records())
            self.warnings.extend(notes)
            self._frames["conditions"] = frame
        return self._frames["conditions"].copy()

    def evaluations(self) -> list[RunRecord]:
        """The finished evaluation runs."""
        return [r for r in self.records() if r.is_evaluation and r.state == "finished"]

    def results(self) -> pd.DataFrame:
        """Per-composition accuracy and loss of every finished evaluation run (latest run wins on repeats)."""
        if "results" not in self._frames:
            tables, meta = [], []
            for r in self.evaluations():
                table = r.tables.get(COMPOSITIONS_TABLE)
                if table is None or table.empty:
                    seed = r.config.get("seed")
                    self.warnings.append(
                        f"evaluation run {r.run_id} ({r.method}, seed {seed}) is finished "
                        f"but has no '{COMPOSITIONS_TABLE}' table: skipped"
                    )
                    continue
                tables.append(table)
                meta.append(
                    {
                        "method": r.method,
                        "system": r.system,
                        "dataset": r.dataset,
                        "seed": r.config.get("seed"),
                        "run_id": r.run_id,
                        "shard": r.config.get("shard", 0),
                        "_created": sort_time(r.created),
                    }
                )
            if tables:
                frame = pd.concat(tables, ignore_index=True).rename(columns={"accuracy (%)": "accuracy"})
                sizes = [len(t) for t in tables]
                for column in meta[0]:  # one value per run, repeated over its rows (no per-run frame copies)
                    frame[column] = [m[column] for m, n in zip(meta, sizes) for _ in range(n)]
                frame = self._latest_only(frame, "results")
            else:
                frame = pd.DataFrame(columns=RESULT_COLUMNS + ["_created"])
            for column in ("abbreviation", "loss", "images"):
                if column not in frame:
                    frame[column] = np.nan
            if "length" not in frame or frame["length"].isna().any():
                frame["length"] = frame["composition"].map(lambda c: len(str(c).split("-")))
            frame = frame.astype({"length": int, "accuracy": float, "loss": float})
            self._frames["results"] = _ordered(frame)[RESULT_COLUMNS].reset_index(drop=True)
        return self._frames["results"].copy()

    def invariance(self) -> pd.DataFrame:
        """Median elemental and composition invariance per (method, seed, composition), with its accuracy."""
        if "invariance" not in self._frames:
            parts = []
            by_pair: dict[tuple[str, Any], list[RunRecord]] = {}
            for r in self.evaluations():
                by_pair.setdefault((r.method, r.config.get("seed")), []).append(r)
            for (method, seed), records in by_pair.items():
                part = self._invariance_of(method, seed, records)
                if part is not None and not part.empty:
                    parts.append(part)
            columns = [c for c in INVARIANCE_COLUMNS if c != "accuracy"] + ["_created"]
            frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
            frame = self._latest_only(frame, "invariance")
            accuracy = self.results()[["method", "seed", "composition", "accuracy"]]
            frame = frame.merge(accuracy, on=["method", "seed", "composition"], how="left")
            frame = frame.astype(
                {
                    "length": int,
                    "elemental_invariance": float,
                    "composition_invariance": float,
                    "accuracy": float,
                }
            )
            self._frames["invariance"] = _ordered(frame)[INVARIANCE_COLUMNS].reset_index(drop=True)
        return self._frames["invariance"].copy()

    # -- helpers --------------------------------------------------------------------------------------------
    def _invariance_of(self, method: str, seed: Any, records: list[RunRecord]) -> pd.DataFrame | None:
        """Scores of one (method, seed): the logged tables of unsharded runs, else the merged shard stats."""
        parts = []
        unsharded = [r for r in records if int(r.config.get("shards", 1) or 1) == 1]
        for r in unsharded:
            table = r.tables.get(INVARIANCE_TABLE)
            if table is not None and not table.empty:
                parts.append(
                    table.assign(
                        source="table",
                        _created=sort_time(r.created),
                        run_id=r.run_id,
                        system=r.system,
                        dataset=r.dataset,
                    )
                )
        sharded = [r for r in records if int(r.config.get("shards", 1) or 1) > 1]
        if sharded:
            merged = self._merged_shards(method, seed, sharded)
            if merged is not None:
                parts.append(merged)
        if not parts:
            return None
        frame = pd.concat(parts, ignore_index=True)
        return frame.assign(method=method, seed=seed)

    def _merged_shards(self, method: str, seed: Any, records: list[RunRecord]) -> pd.DataFrame | None:
        """Invariance of a sharded evaluation: merge every shard's statistics, then score (all shards needed).

        For each shard count seen, the latest run of each shard; the latest complete set wins.
        """
        sets: dict[int, dict[int, RunRecord]] = {}
        for r in sorted(records, key=lambda r: sort_time(r.created)):
            sets.setdefault(int(r.config["shards"]), {})[int(r.config.get("shard", 0))] = r
        complete = {n: shards for n, shards in sets.items() if len(shards) == n}
        if not complete:
            n, have = next(iter(sets.items()))
            missing = sorted(set(range(n)) - set(have))
            self.warnings.append(
                f"{method} seed {seed}: shard(s) {missing} of {n} have no finished "
                "evaluation run, so its invariance scores cannot be computed"
            )
            return None
        n, shards = max(
            complete.items(), key=lambda item: max(sort_time(r.created) for r in item[1].values())
        )
        from comprobust.evaluation import load_stats  # imports torch: only for sharded evaluations
        from comprobust.invariance import invariance_scores

        means: dict[tuple[str, ...], np.ndarray] = {}
        maxima: dict[tuple[str, ...], np.ndarray] = {}
        for index in range(n):
            path = self._stats_file(shards[index])
            if path is None or not Path(path).is_file():
                self.warnings.append(
                    f"{method} seed {seed}: the activation statistics of shard {index} "
                    f"(run {shards[index].run_id}) are missing, so its invariance scores "
                    "cannot be computed"
                )
                return None
            shard_means, shard_maxima = load_stats(path)
            means.update(shard_means)
            maxima.update(shard_maxima)
        scores = invariance_scores(means, maxima)
        latest = max(shards.values(), key=lambda r: sort_time(r.created))
        return pd.DataFrame(
            {
                "composition": ["-".join(s.composition) for s in scores],
                "length": [len(s.composition) for s in scores],
                "elemental_invariance": [s.elemental for s in scores],
                "composition_invariance": [s.composition_score for s in scores],
                "units": [s.units for s in scores],
                "source": f"stats of {n} shards",
                "_created": sort_time(latest.created),
                "run_id": latest.run_id,
                "system": latest.system,
                "dataset": latest.dataset,
            }
        )

    def _latest_only(self, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        """Keep the latest run's row for each (method, seed, composition); warn about the superseded runs."""
        if frame.empty:
            return frame
        frame = frame.sort_values("_created", kind="stable")
        key = ["method", "seed", "composition"]
        duplicated = frame.duplicated(key, keep="last")
        if duplicated.any():
            old = sorted(set(frame.loc[duplicated, "run_id"]) - set(frame.loc[~duplicated, "run_id"]))
            pairs = sorted(
                {
                    f"{m} seed {s}"
                    for m, s in frame.loc[duplicated, ["method", "seed"]].itertuples(index=False)
                }
            )
            note = (
                f"{what}: {int(duplicated.sum())} rows of {', '.join(pairs)} appear in more than one "
                "run; the latest run's values are used"
            )
            if old:
                note += f" (superseded runs: {', '.join(old)})"
            self.warnings.append(note)
        return frame[~duplicated]


def _flatten(value: Mapping[str, Any], prefix: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in skip:
            continue
        if isinstance(item, Mapping):
            out.update(_flatten(item, f"{prefix}{key}."))
        elif isinstance(item, list):
            out[f"{prefix}{key}"] = json.dumps(item) if len(item) <= 20 else f"<{len(item)} items>"
        else:
            out[f"{prefix}{key}"] = item
    return out


def _record_to_json(record: RunRecord) -> dict[str, Any]:
    """A run record as plain JSON values (tables as {"columns", "data"}, the form W&B writes them in)."""
    fields = {name: getattr(record, name) for name in RunRecord.__dataclass_fields__ if name != "tables"}
    tables = {
        name: {"columns": [str(c) for c in frame.columns], "data": frame.to_numpy(dtype=object).tolist()}
        for name, frame in record.tables.items()
    }
    return {**fields, "tables": tables}


def _record_from_json(payload: Mapping[str, Any]) -> RunRecord:
    tables = {
        name: pd.DataFrame(table["data"], columns=table["columns"])
        for name, table in payload["tables"].items()
    }
    return RunRecord(**{**payload, "tables": tables})


def _tuples(value: Any) -> Any:
    """JSON lists back into the (nested) tuples the cache keys were."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by method (paper order), seed, length, composition (Identity first)."""
    if frame.empty:
        return frame
    order = {m: i for i, m in enumerate(method_order(frame["method"]))}
    frame = frame.assign(_m=frame["method"].map(order), _i=frame["composition"] != "Identity")
    frame = frame.sort_values(["_m", "seed", "length", "_i", "composition"], kind="stable")
    return frame.drop(columns=["_m", "_i"])
