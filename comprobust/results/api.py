"""`ApiRunStore`: runs read from a W&B server through `wandb.Api()`."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from comprobust.errors import UserError
from comprobust.results.records import (
    RESULT_TABLES,
    RunRecord,
    read_table,
    scalars,
    timestamp,
)
from comprobust.results.store import RunStore
from comprobust.runs import activations_artifact


class ApiRunStore(RunStore):
    """Runs of a W&B project (and group) read through `wandb.Api()` (or `api`, any object with the same
    surface: `runs(path, filters=)`, `artifact(name, type=)`; runs with id, name, group, job_type, state,
    config, summary_metrics, created_at, file(name).download(root, replace=))."""

    _scratch: Path | None = None  # downloads when there is no cache_dir, removed with the store

    def __init__(
        self,
        project: str,
        entity: str | None = None,
        group: str | None = None,
        api: Any = None,
        cache_dir: str | os.PathLike | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> None:
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
            raise UserError(
                f"could not list the runs of {self.describe()} ({type(err).__name__}: {err}); "
                "check the project/entity names and `wandb login`"
            ) from err
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
            run_id=str(run.id),
            name=str(getattr(run, "name", "") or ""),
            project=self.project,
            entity=str(getattr(run, "entity", "") or self.entity or ""),
            group=str(getattr(run, "group", "") or ""),
            job_type=str(getattr(run, "job_type", "") or ""),
            state=str(getattr(run, "state", "")).lower(),
            created=timestamp(getattr(run, "created_at", None)),
            location=str(getattr(run, "url", "") or ""),
            config=config,
            summary=scalars(summary),
        )
        if record.state == "finished":  # evaluations, and the runs of cue-dataset stages (their conditions)
            for key in RESULT_TABLES:
                ref = summary.get(key)
                if isinstance(ref, dict) and ref.get("_type") == "table-file" and ref.get("path"):
                    record.tables[key] = self._download_table(run, ref["path"])
        if record.is_evaluation and record.state == "finished":
            record.stats = f"{self.path}/{activations_artifact(record.run_id)}:latest"
        return record

    def _download_table(self, run: Any, name: str) -> pd.DataFrame:
        root = self._download_root() / "runs" / str(run.id)
        try:
            handle = run.file(name).download(root=str(root), replace=True)
            handle.close()
        except Exception as err:
            raise UserError(
                f"could not download table {name} of run {run.id} from {self.describe()} "
                f"({type(err).__name__}: {err})"
            ) from err
        return read_table(root / name)

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
        raise UserError(
            "reading runs from a W&B server needs credentials, and none are configured: run "
            "`wandb login` (or export WANDB_API_KEY, plus WANDB_BASE_URL for a self-hosted "
            "server), or read the offline run folders: `launch.py report experiments/X.yaml`"
        )
    import wandb

    try:
        return wandb.Api(timeout=60)
    except Exception as err:
        raise UserError(
            f"could not connect to the W&B server ({type(err).__name__}: {err}); check "
            "WANDB_BASE_URL and `wandb login`"
        ) from err
