"""Pull runs back into pandas: one `RunStore` interface, two backends, the same tidy frames.

* `OfflineRunStore(wandb_dir, cache_dir)` reads offline (or online) run folders from their `run-<id>.wandb`
  transaction logs (`comprobust.wandb_offline`), the `wandb.Table` JSON files next to them and the activation
  statistics artifacts they logged. Decoded runs are cached in `cache_dir` (plain JSON, never a pickle: a cache
  file in a shared output folder must not be able to run code; keyed by every run file's
  path, size and mtime), so re-reading unchanged runs costs a few `stat` calls.
* `ApiRunStore(project, entity, group, api)` asks a W&B server through `wandb.Api()`: runs by project and
  group, their config and summary, the table files and the activation artifacts.

Both return:

* `runs()`: one row per run (the latest finished folder of a resumed run): identity, job type, state, the
  evaluation fields (method label, system, dataset, seed, shard) and the flattened `config.*` and `summary.*`;
* `results()`: one row per (method, seed, composition) of every *finished* evaluation run: method (the
  system's label), system, dataset, seed, composition, abbreviation, length, accuracy (%), loss, images,
  run_id, shard;
* `invariance()`: one row per (method, seed, composition of length >= 2): elemental_invariance,
  composition_invariance, units, accuracy. Unsharded evaluations logged an "invariance" table; for sharded
  ones the shards' activation statistics are merged and scored with `comprobust.invariance.invariance_scores`.

Failed, crashed or still-running runs are listed by `runs()` with their state but never feed `results()`. When
two finished runs give the same (method, seed, composition) (a re-run under a changed config), the latest wins
and `warnings` says so. Reports, training and sweep runs (job types other than "evaluate") are never read as
evaluations.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError

log = logging.getLogger(__name__)

EVALUATE = "evaluate"
COMPOSITIONS_TABLE = "compositions"
INVARIANCE_TABLE = "invariance"
METHOD_ORDER = ("ERM", "Contrastive", "Modular", "ImgSpace-Identity", "ImgSpace-Joint")
RESULT_COLUMNS = ["method", "system", "dataset", "seed", "composition", "abbreviation", "length", "accuracy",
                  "loss", "images", "run_id", "shard"]
INVARIANCE_COLUMNS = ["method", "system", "dataset", "seed", "composition", "length", "elemental_invariance",
                      "composition_invariance", "units", "accuracy", "source"]
RUN_COLUMNS = ["run_id", "name", "project", "entity", "group", "job_type", "kind", "state", "method",
               "system", "dataset", "seed", "shard", "shards", "created", "location"]
_CACHE_VERSION = 2  # 2: JSON (1 was a pickle, ignored)


def method_order(labels: Iterable[str]) -> list[str]:
    """Method labels in the paper's order (ERM, Contrastive, Modular, ImgSpace), others after, sorted."""
    labels = list(dict.fromkeys(labels))
    known = [m for m in METHOD_ORDER if m in labels]
    return known + sorted(m for m in labels if m not in METHOD_ORDER)


@dataclass
class RunRecord:
    """What both backends know about one run, before it becomes frame rows."""

    run_id: str
    name: str
    project: str
    entity: str
    group: str
    job_type: str
    state: str  # finished | failed | crashed | killed | running | ...
    created: float  # seconds since the epoch (NaN when unknown)
    location: str  # run folder or run URL
    config: dict[str, Any]
    summary: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    stats: str = ""  # local path (offline) or artifact name (online) of the activation statistics

    @property
    def is_evaluation(self) -> bool:
        return self.job_type == EVALUATE and self.config.get("kind", EVALUATE) == EVALUATE

    @property
    def method(self) -> str:
        return str(self.config.get("label") or self.summary.get("label") or self.config.get("stage") or "")

    @property
    def system(self) -> str:
        return str(self.config.get("system") or self.summary.get("system") or "")

    @property
    def dataset(self) -> str:
        dataset = self.config.get("dataset")
        return str(dataset.get("name", "")) if isinstance(dataset, dict) else str(dataset or "")


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
                return {key: (_tuples(entry["signature"]), _record_from_json(entry["record"]))
                        for key, entry in payload["entries"].items()}
        except Exception as err:  # noqa: BLE001  a damaged or foreign cache is rebuilt, never trusted
            log.warning("ignoring unreadable results cache %s (%s)", path, err)
        return {}

    def _save_cache(self, entries: dict[str, tuple[tuple, RunRecord]]) -> None:
        path = self._cache_file()
        if path is None:
            return
        payload = {"version": _CACHE_VERSION,
                   "entries": {key: {"signature": signature, "record": _record_to_json(record)}
                               for key, (signature, record) in entries.items()}}
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
            self._records = sorted(self._load_records(), key=lambda r: (_sort_time(r.created), r.run_id))
        return self._records

    def refresh(self) -> None:
        """Forget what was read, so the next call reads the runs again (through the cache)."""
        self._records, self._frames, self.warnings = None, {}, []

    def runs(self) -> pd.DataFrame:
        """One row per run: identity, state, evaluation fields, `config.*` and `summary.*` (scalars)."""
        if "runs" not in self._frames:
            rows = []
            for r in self.records():
                row = {"run_id": r.run_id, "name": r.name, "project": r.project, "entity": r.entity,
                       "group": r.group, "job_type": r.job_type, "kind": r.config.get("kind", ""),
                       "state": r.state, "method": r.method if r.is_evaluation else "", "system": r.system,
                       "dataset": r.dataset, "seed": r.config.get("seed"), "shard": r.config.get("shard"),
                       "shards": r.config.get("shards"), "created": r.created, "location": r.location}
                row.update(_flatten(r.config, "config.", skip=("compositions", "_wandb")))
                row.update(_flatten(r.summary, "summary."))
                rows.append(row)
            frame = pd.DataFrame(rows)
            for column in ("seed", "shard", "shards"):  # integers, with <NA> for runs without one
                values = [row[column] for row in rows]
                if all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in values):
                    frame[column] = pd.array(values, dtype="Int64")
            self._frames["runs"] = frame.reindex(columns=RUN_COLUMNS + [c for c in frame.columns
                                                                       if c not in RUN_COLUMNS])
        return self._frames["runs"].copy()

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
                    self.warnings.append(f"evaluation run {r.run_id} ({r.method}, seed {seed}) is finished "
                                         f"but has no '{COMPOSITIONS_TABLE}' table: skipped")
                    continue
                tables.append(table)
                meta.append({"method": r.method, "system": r.system, "dataset": r.dataset,
                             "seed": r.config.get("seed"), "run_id": r.run_id,
                             "shard": r.config.get("shard", 0), "_created": _sort_time(r.created)})
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
            frame = frame.astype({"length": int, "elemental_invariance": float,
                                  "composition_invariance": float, "accuracy": float})
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
                parts.append(table.assign(source="table", _created=_sort_time(r.created), run_id=r.run_id,
                                          system=r.system, dataset=r.dataset))
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
        for r in sorted(records, key=lambda r: _sort_time(r.created)):
            sets.setdefault(int(r.config["shards"]), {})[int(r.config.get("shard", 0))] = r
        complete = {n: shards for n, shards in sets.items() if len(shards) == n}
        if not complete:
            n, have = next(iter(sets.items()))
            missing = sorted(set(range(n)) - set(have))
            self.warnings.append(f"{method} seed {seed}: shard(s) {missing} of {n} have no finished "
                                 "evaluation run, so its invariance scores cannot be computed")
            return None
        n, shards = max(complete.items(),
                        key=lambda item: max(_sort_time(r.created) for r in item[1].values()))
        from comprobust.evaluation import load_stats  # imports torch: only for sharded evaluations
        from comprobust.invariance import invariance_scores

        means: dict[tuple[str, ...], np.ndarray] = {}
        maxima: dict[tuple[str, ...], np.ndarray] = {}
        for index in range(n):
            path = self._stats_file(shards[index])
            if path is None or not Path(path).is_file():
                self.warnings.append(f"{method} seed {seed}: the activation statistics of shard {index} "
                                     f"(run {shards[index].run_id}) are missing, so its invariance scores "
                                     "cannot be computed")
                return None
            shard_means, shard_maxima = load_stats(path)
            means.update(shard_means)
            maxima.update(shard_maxima)
        scores = invariance_scores(means, maxima)
        latest = max(shards.values(), key=lambda r: _sort_time(r.created))
        return pd.DataFrame({
            "composition": ["-".join(s.composition) for s in scores],
            "length": [len(s.composition) for s in scores],
            "elemental_invariance": [s.elemental for s in scores],
            "composition_invariance": [s.composition_score for s in scores],
            "units": [s.units for s in scores],
            "source": f"stats of {n} shards",
            "_created": _sort_time(latest.created),
            "run_id": latest.run_id, "system": latest.system, "dataset": latest.dataset,
        })

    def _latest_only(self, frame: pd.DataFrame, what: str) -> pd.DataFrame:
        """Keep the latest run's row for each (method, seed, composition); warn about the superseded runs."""
        if frame.empty:
            return frame
        frame = frame.sort_values("_created", kind="stable")
        key = ["method", "seed", "composition"]
        duplicated = frame.duplicated(key, keep="last")
        if duplicated.any():
            old = sorted(set(frame.loc[duplicated, "run_id"]) - set(frame.loc[~duplicated, "run_id"]))
            pairs = sorted({f"{m} seed {s}" for m, s in frame.loc[duplicated, ["method", "seed"]].itertuples(
                index=False)})
            note = f"{what}: {int(duplicated.sum())} rows of {', '.join(pairs)} appear in more than one " \
                   "run; the latest run's values are used"
            if old:
                note += f" (superseded runs: {', '.join(old)})"
            self.warnings.append(note)
        return frame[~duplicated]


# ------------------------------------------------------------------------------------------------ offline


class OfflineRunStore(RunStore):
    """Runs from W&B run folders under `wandb_dir` (a WANDB_DIR or its `wandb/` sub-folder).

    `group` / `project` keep only runs of that W&B group / project (None: all). `cache_dir` holds the decoded
    runs (None: no cache).
    """

    def __init__(self, wandb_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None,
                 group: str | None = None, project: str | None = None) -> None:
        super().__init__()
        self.wandb_dir = Path(wandb_dir)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.group, self.project = group, project
        self.cache_hits = 0
        self.cache_misses = 0

    def describe(self) -> str:
        where = f"W&B run folders under {self.wandb_dir}"
        return where + (f" (group {self.group!r})" if self.group else "")

    def _cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(str(self.wandb_dir.resolve()).encode()).hexdigest()[:12]
        return self.cache_dir / f"offline-runs-{digest}.json"

    def _load_records(self) -> list[RunRecord]:
        from comprobust.wandb_offline import find_runs

        if not self.wandb_dir.is_dir():
            raise UserError(f"{self.wandb_dir}: no such folder, so no W&B runs were written there yet: run "
                            "the experiment first, or point at the WANDB_DIR its runs were written to")
        cached = self._load_cache()
        entries: dict[str, tuple[tuple, RunRecord]] = {}
        for folder in find_runs(self.wandb_dir):
            key = str(folder.resolve())
            signature = _folder_signature(folder)
            hit = cached.get(key)
            if hit is not None and hit[0] == signature:
                self.cache_hits += 1
                entries[key] = hit
                continue
            self.cache_misses += 1
            try:
                entries[key] = (signature, _offline_record(folder))
            except UserError as err:  # a damaged log: report it, keep the others
                self.warnings.append(str(err))
        if self.cache_misses or len(entries) != len(cached):
            self._save_cache(entries)
        records = [record for _, record in entries.values()]
        return _latest_attempts([r for r in records if self._wanted(r)])

    def _wanted(self, record: RunRecord) -> bool:
        return (self.group is None or record.group == self.group) and \
            (self.project is None or record.project == self.project)

    def _stats_file(self, record: RunRecord) -> Path | None:
        return Path(record.stats) if record.stats else None


def _folder_signature(folder: Path) -> tuple:
    """(name, size, mtime_ns) of the run log and of every table file: changes whenever the run changes."""
    items = []
    for path in [*folder.glob("run-*.wandb"), *(folder / "files" / "media" / "table").glob("*.json")]:
        stat = path.stat()
        items.append((path.name, stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(items))


def _offline_record(folder: Path) -> RunRecord:
    from comprobust.wandb_offline import read_run

    run = read_run(folder)
    tables = {}
    for key in (COMPOSITIONS_TABLE, INVARIANCE_TABLE):
        if key in run.tables:
            tables[key] = _read_table(run.tables[key])
    stats = ""
    for artifact in run.artifacts:
        if artifact.name == f"activations-{run.id}" and artifact.files:
            stats = artifact.files[0].location
    return RunRecord(
        run_id=run.id, name=run.name, project=run.project, entity=run.entity, group=run.group,
        job_type=run.job_type, state=run.state, created=run.start_time if run.start_time else float("nan"),
        location=str(folder), config=run.config, summary=_scalars(run.summary), tables=tables, stats=stats,
    )


def _read_table(path: Path) -> pd.DataFrame:
    """A `wandb.Table` JSON file ({"columns": [...], "data": [[...], ...]}) as a DataFrame."""
    try:
        payload = json.loads(Path(path).read_text())
        return pd.DataFrame(payload["data"], columns=payload["columns"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path}: unreadable W&B table file ({err}); re-run the evaluation that wrote it") \
            from err


def _latest_attempts(records: list[RunRecord]) -> list[RunRecord]:
    """One record per run id: a resumed run has one folder per attempt; keep the latest finished one (or the
    latest attempt when none finished)."""
    by_id: dict[str, list[RunRecord]] = {}
    for record in records:
        by_id.setdefault(record.run_id, []).append(record)
    chosen = []
    for attempts in by_id.values():
        attempts.sort(key=lambda r: (_sort_time(r.created), Path(r.location).name.removeprefix("offline-")))
        finished = [r for r in attempts if r.state == "finished"]
        chosen.append((finished or attempts)[-1])
    return chosen


# ------------------------------------------------------------------------------------------------- online


class ApiRunStore(RunStore):
    """Runs of a W&B project (and group) read through `wandb.Api()` (or `api`, any object with the same
    surface: `runs(path, filters=)`, `artifact(name, type=)`; runs with id, name, group, job_type, state,
    config, summary_metrics, created_at, file(name).download(root, replace=))."""

    _scratch: Path | None = None  # downloads when there is no cache_dir, removed with the store

    def __init__(self, project: str, entity: str | None = None, group: str | None = None, api: Any = None,
                 cache_dir: str | os.PathLike | None = None,
                 filters: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if not project:
            raise UserError("reading runs from W&B needs a project name (--project)")
        self.project, self.entity, self.group = project, entity, group
        self.extra_filters = dict(filters or {})
        if api is None:
            api = _public_api()
        self.api = api
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}" if self.entity else self.project

    def describe(self) -> str:
        return f"W&B project {self.path}" + (f", group {self.group!r}" if self.group else "")

    def _download_root(self) -> Path:
        if self.cache_dir is not None:
            return self.cache_dir / "api"
        if self._scratch is None:
            self._scratch = Path(tempfile.mkdtemp(prefix="comprobust-api-"))
        return self._scratch

    def _load_records(self) -> list[RunRecord]:
        filters = dict(self.extra_filters)
        if self.group:
            filters["group"] = self.group
        try:
            # lazy=False: config and summary come with the listing, not one query per run
            runs = list(self.api.runs(self.path, filters=filters, per_page=200, lazy=False))
        except Exception as err:  # wandb.errors.CommError and friends
            raise UserError(f"could not list the runs of {self.describe()} ({type(err).__name__}: {err}); "
                            "check the project/entity names and `wandb login`") from err
        cache = self._load_cache()
        records = []
        for run in runs:
            key = (str(run.id), str(getattr(run, "state", "")), str(getattr(run, "heartbeat_at", "") or ""))
            hit = cache.get(str(run.id))
            if hit is not None and hit[0] == key:
                records.append(hit[1])
                continue
            record = self._record(run)
            cache[str(run.id)] = (key, record)
            records.append(record)
        self._save_cache(cache)
        return records

    def _cache_file(self) -> Path | None:
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(f"{self.path}|{self.group}".encode()).hexdigest()[:12]
        return self.cache_dir / f"api-runs-{digest}.json"

    def _record(self, run: Any) -> RunRecord:
        from comprobust.wandb_offline import plain_config

        config = plain_config(dict(run.config or {}))
        summary = dict(getattr(run, "summary_metrics", None) or {})
        record = RunRecord(
            run_id=str(run.id), name=str(getattr(run, "name", "") or ""), project=self.project,
            entity=str(getattr(run, "entity", "") or self.entity or ""),
            group=str(getattr(run, "group", "") or ""),
            job_type=str(getattr(run, "job_type", "") or ""), state=str(getattr(run, "state", "")).lower(),
            created=_timestamp(getattr(run, "created_at", None)), location=str(getattr(run, "url", "") or ""),
            config=config, summary=_scalars(summary),
        )
        if record.is_evaluation and record.state == "finished":
            for key in (COMPOSITIONS_TABLE, INVARIANCE_TABLE):
                ref = summary.get(key)
                if isinstance(ref, dict) and ref.get("_type") == "table-file" and ref.get("path"):
                    record.tables[key] = self._download_table(run, ref["path"])
            record.stats = f"{self.path}/activations-{record.run_id}:latest"
        return record

    def _download_table(self, run: Any, name: str) -> pd.DataFrame:
        root = self._download_root() / "runs" / str(run.id)
        try:
            handle = run.file(name).download(root=str(root), replace=True)
            handle.close()
        except Exception as err:
            raise UserError(f"could not download table {name} of run {run.id} from {self.describe()} "
                            f"({type(err).__name__}: {err})") from err
        return _read_table(root / name)

    def _stats_file(self, record: RunRecord) -> Path | None:
        root = self._download_root() / "artifacts" / record.run_id
        try:
            artifact = self.api.artifact(record.stats, type="stats")
            folder = Path(artifact.download(root=str(root)))
        except Exception as err:  # noqa: BLE001  any download failure is a warning
            self.warnings.append(f"could not download {record.stats} ({type(err).__name__}: {err})")
            return None
        files = sorted(p for p in folder.rglob("*.npz") if p.is_file())
        return files[0] if files else None

    def __del__(self) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


def _public_api() -> Any:
    from comprobust.tracking import has_credentials

    if not has_credentials():
        raise UserError("reading runs from a W&B server needs credentials, and none are configured: run "
                        "`wandb login` (or export WANDB_API_KEY, plus WANDB_BASE_URL for a self-hosted "
                        "server), or read the offline run folders: `launch.py report experiments/X.yaml`")
    import wandb

    try:
        return wandb.Api(timeout=60)
    except Exception as err:
        raise UserError(f"could not connect to the W&B server ({type(err).__name__}: {err}); check "
                        "WANDB_BASE_URL and `wandb login`") from err


# ------------------------------------------------------------------------------------------------- choice


SOURCES = ("auto", "offline", "wandb")


def open_store(experiment: Any, cache_dir: str | os.PathLike | None = None, source: str = "auto") -> RunStore:
    """The store of an experiment's runs, and a line saying which was chosen (printed to stderr).

    `source` "offline" reads the local W&B logs under `<output_dir>/wandb` (written online too), "wandb" the
    server's API, "auto" the API when the experiment runs online (mode, WANDB_MODE and credentials) else the logs.
    """
    from comprobust.tracking import resolve_mode

    if source not in SOURCES:
        raise UserError(f"--source {source!r}: use one of {', '.join(SOURCES)}")
    cache = Path(cache_dir) if cache_dir is not None else experiment.output_dir / "cache" / "results"
    if source == "auto":
        mode = resolve_mode(experiment.wandb["mode"])
        if mode == "disabled":
            raise UserError(f"{experiment.path}: W&B mode is disabled (wandb.mode or WANDB_MODE), so no runs "
                            "were recorded to read back; use mode auto or offline")
        source = "wandb" if mode == "online" else "offline"
    if source == "wandb":
        from comprobust.wandb_connection import require_reachable

        url = require_reachable(f"report {experiment.path}")
        store: RunStore = ApiRunStore(experiment.wandb["project"], entity=experiment.wandb.get("entity"),
                                      group=experiment.name, cache_dir=cache)
        print(f"reading runs from W&B at {url} (project {experiment.wandb['project']}, group {experiment.name}); "
              "--source offline reads the local logs instead", file=sys.stderr)
        return store
    # by group only: a sweep agent may have put runs in the project its environment named
    store = OfflineRunStore(experiment.output_dir / "wandb", cache_dir=cache, group=experiment.name)
    print(f"reading runs from the local W&B logs in {experiment.output_dir / 'wandb'}; --source wandb reads the "
          "server instead", file=sys.stderr)
    return store


# ------------------------------------------------------------------------------------------------ helpers


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


def _scalars(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The summary without media references (tables, images): numbers, strings and plain nested values."""
    out = {}
    for key, value in summary.items():
        if key.startswith("_") or (isinstance(value, Mapping) and "_type" in value):
            continue
        out[key] = _scalars(value) if isinstance(value, Mapping) else value
    return out


def _record_to_json(record: RunRecord) -> dict[str, Any]:
    """A run record as plain JSON values (tables as {"columns", "data"}, the form W&B writes them in)."""
    fields = {name: getattr(record, name) for name in RunRecord.__dataclass_fields__ if name != "tables"}
    tables = {name: {"columns": [str(c) for c in frame.columns], "data": frame.to_numpy(dtype=object).tolist()}
              for name, frame in record.tables.items()}
    return {**fields, "tables": tables}


def _record_from_json(payload: Mapping[str, Any]) -> RunRecord:
    tables = {name: pd.DataFrame(table["data"], columns=table["columns"])
              for name, table in payload["tables"].items()}
    return RunRecord(**{**payload, "tables": tables})


def _tuples(value: Any) -> Any:
    """JSON lists back into the (nested) tuples the cache keys were."""
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def _sort_time(created: float) -> float:
    return 0.0 if math.isnan(created) else created  # unknown times sort first


def _timestamp(value: Any) -> float:
    if value in (None, ""):
        return float("nan")
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError):
        return float("nan")
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return stamp.timestamp()


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows by method (paper order), seed, length, composition (Identity first)."""
    if frame.empty:
        return frame
    order = {m: i for i, m in enumerate(method_order(frame["method"]))}
    frame = frame.assign(_m=frame["method"].map(order), _i=frame["composition"] != "Identity")
    frame = frame.sort_values(["_m", "seed", "length", "_i", "composition"], kind="stable")
    return frame.drop(columns=["_m", "_i"])
