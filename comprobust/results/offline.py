"""`OfflineRunStore`: runs read from their local `run-<id>.wandb` logs (offline runs, and online ones too)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from comprobust.errors import UserError
from comprobust.results.records import (
    RESULT_TABLES,
    RunRecord,
    read_table,
    scalars,
    sort_time,
)
from comprobust.results.store import RunStore
from comprobust.runs import activations_artifact


class OfflineRunStore(RunStore):
    """Runs from W&B run folders under `wandb_dir` (a WANDB_DIR or its `wandb/` sub-folder).

    `group` / `project` keep only runs of that W&B group / project (None: all). `cache_dir` holds the decoded
    runs (None: no cache).
    """

    def __init__(
        self,
        wandb_dir: str | os.PathLike,
        cache_dir: str | os.PathLike | None = None,
        group: str | None = None,
        project: str | None = None,
    ) -> None:
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
            raise UserError(
                f"{self.wandb_dir}: no such folder, so no W&B runs were written there yet: run "
                "the experiment first, or point at the WANDB_DIR its runs were written to"
            )
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
        return (self.group is None or record.group == self.group) and (
            self.project is None or record.project == self.project
        )

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
    for key in RESULT_TABLES:
        if key in run.tables:
            tables[key] = read_table(run.tables[key])
    stats = ""
    for artifact in run.artifacts:
        if artifact.name == activations_artifact(run.id) and artifact.files:
            stats = artifact.files[0].location
    return RunRecord(
        run_id=run.id,
        name=run.name,
        project=run.project,
        entity=run.entity,
        group=run.group,
        job_type=run.job_type,
        state=run.state,
        created=run.start_time if run.start_time else float("nan"),
        location=str(folder),
        config=run.config,
        summary=scalars(run.summary),
        tables=tables,
        stats=stats,
    )


def _latest_attempts(records: list[RunRecord]) -> list[RunRecord]:
    """One record per run id: a resumed run has one folder per attempt; keep the latest finished one (or the
    latest attempt when none finished)."""
    by_id: dict[str, list[RunRecord]] = {}
    for record in records:
        by_id.setdefault(record.run_id, []).append(record)
    chosen = []
    for attempts in by_id.values():
        attempts.sort(key=lambda r: (sort_time(r.created), Path(r.location).name.removeprefix("offline-")))
        finished = [r for r in attempts if r.state == "finished"]
        chosen.append((finished or attempts)[-1])
    return chosen
