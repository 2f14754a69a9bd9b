"""Read W&B run folders (offline or online) back from their `run-<id>.wandb` transaction log.

wandb 0.31 no longer writes `files/config.yaml` or `files/wandb-summary.json` for offline runs and ships no
Python reader, so this module decodes the log itself, record by record (`comprobust.wandb_log` reads the
framing; payloads are `wandb_internal_pb2.Record` protobufs, decoded with wandb's own classes).

Decoded values are plain Python (dict, list, str, int, float, bool, None), taken from each item's `value_json`
(or its typed `HistoryItem` value). `nested_key` paths become nested dicts, as wandb's own summary does.

Config: the log stores each config key with its *plain* value (`{"lr": 0.1}`), not the `{"lr": {"value": 0.1,
"desc": ...}}` form of an online run's `config.yaml`, a sweep's parameter file or the public API's
`json_config`. `OfflineRun.config` is always the plain form, without wandb's internal `_wandb` key;
`plain_config()` turns the wrapped form into the same shape, so readers of either source compare equal.

A live run's log ends mid-record: reading stops cleanly at the last complete record (`OfflineRun.truncated`).
A damaged record before the end raises `wandb_log.CorruptRunFileError` naming the file and the byte offset.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from comprobust.errors import UserError
from comprobust.wandb_log import BLOCK_SIZE, Tail, iter_payloads, parse_record

_RUN_FOLDER = re.compile(r"^(offline-)?run-\d{8}_\d{6}-.+$")


class ArtifactFile(NamedTuple):
    """One file of a logged artifact: its path inside the artifact, and where its bytes are (a local path, or
    the reference URI for reference entries, or "" when neither was recorded)."""

    path: str
    location: str


@dataclass
class OfflineArtifact:
    """An artifact the run logged (`log_artifact`, `wandb.Table`): no version number exists offline."""

    name: str
    type: str
    aliases: list[str]
    digest: str
    metadata: dict[str, Any]
    files: list[ArtifactFile]


@dataclass
class OfflineRun:
    """Everything a run folder's transaction log says about one run.

    `summary` is wandb's run summary without its internal `_wandb` key; `history` holds one dict per logged
    step (including wandb's `_step`, `_runtime`, `_timestamp`); `tables` maps each logged `wandb.Table` key
    (nested keys joined by ".") to its JSON file under `files/media/table/`; `exit_code` is None while the run
    is still running (or was killed without finishing); `truncated` is True when the log ended inside a record
    (a live run). wandb-core flushes a live run's log only every 15 s, so a young run may have nothing but its
    id (taken from the file name) yet.
    """

    path: Path
    id: str
    name: str
    project: str
    entity: str
    group: str
    job_type: str
    tags: list[str]
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]]
    artifacts: list[OfflineArtifact]
    tables: dict[str, Path]
    exit_code: int | None
    sweep_id: str | None
    start_time: float | None = None
    truncated: bool = False
    record_counts: dict[str, int] = field(default_factory=dict)

    @property
    def state(self) -> str:
        """ "running" (no exit record yet), "finished" (exit code 0) or "failed"."""
        if self.exit_code is None:
            return "running"
        return "finished" if self.exit_code == 0 else "failed"


# -------------------------------------------------------------------------------------------------- decoding


def _json(text: str) -> Any:
    # wandb writes NaN/Infinity as bare words, which Python's json accepts
    return json.loads(text) if text else None


def _item_path(item: Any) -> tuple[str, ...]:
    nested = item.nested_key
    return tuple(nested) if nested else (item.key,)


class _Updates:
    """Config/summary updates and removals in log order, keeping only each path's last raw JSON (decoded once
    at the end: a long run rewrites its summary after every step)."""

    def __init__(self) -> None:
        self.raw: dict[tuple[str, ...], str] = {}
        self.parents: set[tuple[str, ...]] = set()  # every proper prefix of a nested path seen so far

    def apply(self, update: Any, remove: Any = ()) -> None:
        raw, parents = self.raw, self.parents
        for item in update:
            path = _item_path(item)
            if path in parents:  # a value replaces a whole sub-dict
                self._drop(path)
            for i in range(1, len(path)):  # a nested value punches into (replaces) a leaf parent
                prefix = path[:i]
                raw.pop(prefix, None)
                parents.add(prefix)
            raw[path] = item.value_json
        for item in remove:
            self._drop(_item_path(item))

    def _drop(self, path: tuple[str, ...]) -> None:
        """Forget `path` and everything under it."""
        n = len(path)
        for key in [k for k in self.raw if k[:n] == path]:
            del self.raw[key]

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for path, text in self.raw.items():
            _set_path(out, path, _json(text))
        return out


def _set_path(target: dict, keys: tuple[str, ...], value: Any) -> None:
    for key in keys[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = target[key] = {}
        target = child
    target[keys[-1]] = value


def _history_value(item: Any) -> Any:
    kind = item.WhichOneof("value")
    if kind is None:
        return _json(item.value_json)
    if kind == "none":
        return None
    if kind == "json":
        return _json(item.json)
    return getattr(item, kind)


def _artifact(record: Any) -> OfflineArtifact:
    manifest = record.manifest
    files = [ArtifactFile(e.path, e.local_path or e.ref) for e in manifest.contents]
    if not files and manifest.manifest_file_path:
        files = _manifest_file(Path(manifest.manifest_file_path))
    return OfflineArtifact(
        name=record.name,
        type=record.type,
        aliases=list(record.aliases),
        digest=record.digest,
        metadata=_json(record.metadata) or {},
        files=files,
    )


def _manifest_file(path: Path) -> list[ArtifactFile]:
    """Very large manifests live in a gzipped JSON-lines file in the staging folder (gone after a sync)."""
    if not path.is_file():
        return []
    with gzip.open(path, "rt") as handle:
        entries = [json.loads(line) for line in handle if line.strip()]
    return [ArtifactFile(e.get("path", ""), e.get("local_path") or e.get("ref") or "") for e in entries]


def _find_tables(value: Any, prefix: str, out: dict[str, str]) -> None:
    if not isinstance(value, dict):
        return
    if value.get("_type") == "table-file" and isinstance(value.get("path"), str):
        out[prefix] = value["path"]
        return
    for key, child in value.items():
        _find_tables(child, f"{prefix}.{key}" if prefix else key, out)


def tail_exit_code(run_dir: Path) -> int | None:
    """The run's exit code when its log already ends with the exit record, else None. Reads only the last two
    blocks, so it is cheap to poll (wandb-core writes the log asynchronously, even after `finish` returns)."""
    path = log_file(run_dir)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return None
    code = None
    for offset, payload in iter_payloads(path, Tail(), from_block=max(0, size // BLOCK_SIZE - 1)):
        record = parse_record(path, offset, payload)
        if record.WhichOneof("record_type") == "exit":
            code = int(record.exit.exit_code)
    return code


def wait_for_exit_record(run_dir: Path, timeout_s: float) -> bool:
    """Wait until the run's log ends with its exit record (wandb-core writes the log asynchronously: `finish`
    returns before the last records are on disk); False if it has not after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(UserError):
            if tail_exit_code(run_dir) is not None:
                return True
        time.sleep(0.02)
    return False


def log_file(run_dir: Path) -> Path:
    """The `run-<id>.wandb` file of a run folder (or the file itself when given one)."""
    run_dir = Path(run_dir)
    if run_dir.is_file():
        return run_dir
    found = sorted(run_dir.glob("run-*.wandb"))
    if len(found) != 1:
        raise UserError(
            f"{run_dir}: expected one run-<id>.wandb file in this W&B run folder, found {len(found)}; "
            "pass a folder like <WANDB_DIR>/wandb/offline-run-<date>_<time>-<id>"
        )
    return found[0]


def read_run(run_dir: Path) -> OfflineRun:
    """Decode a W&B run folder (offline or online) from its `run-<id>.wandb` transaction log.

    Config and summary updates and removals are applied in log order; history rows keep their logged order.
    """
    path = log_file(run_dir)
    folder = path.parent
    tail = Tail()
    run = OfflineRun(
        path=folder,
        id="",
        name="",
        project="",
        entity="",
        group="",
        job_type="",
        tags=[],
        config={},
        summary={},
        history=[],
        artifacts=[],
        tables={},
        exit_code=None,
        sweep_id=None,
    )
    counts: dict[str, int] = {}
    config, summary = _Updates(), _Updates()
    for offset, payload in iter_payloads(path, tail):
        record = parse_record(path, offset, payload)
        kind = record.WhichOneof("record_type")
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _set_path(row, _item_path(item), _history_value(item))
            run.history.append(row)
        elif kind == "summary":
            summary.apply(record.summary.update, record.summary.remove)
        elif kind == "config":
            config.apply(record.config.update, record.config.remove)
        elif kind == "run":
            r = record.run
            run.id, run.project, run.entity = r.run_id, r.project, r.entity
            run.name, run.group, run.job_type = r.display_name, r.run_group, r.job_type
            run.tags = list(r.tags)
            run.sweep_id = r.sweep_id or None
            if r.HasField("start_time"):
                run.start_time = r.start_time.seconds + r.start_time.nanos / 1e9
            config.apply(r.config.update, r.config.remove)
            summary.apply(r.summary.update, r.summary.remove)
        elif kind == "artifact":
            run.artifacts.append(_artifact(record.artifact))
        elif kind == "exit":
            run.exit_code = int(record.exit.exit_code)
    run.config, run.summary = config.result(), summary.result()
    run.config.pop("_wandb", None)
    run.summary.pop("_wandb", None)
    run.truncated = tail.truncated
    run.record_counts = counts
    tables: dict[str, str] = {}
    for row in run.history:
        _find_tables(row, "", tables)
    _find_tables(run.summary, "", tables)
    run.tables = {key: folder / "files" / rel for key, rel in tables.items()}
    if not run.id:  # a live run whose writer has not flushed its run record yet
        run.id = path.stem.removeprefix("run-")
    return run


def find_runs(wandb_dir: Path) -> list[Path]:
    """Every run folder (`offline-run-*` and `run-*`) under a WANDB_DIR, oldest first.

    Accepts either WANDB_DIR itself (runs live in its `wandb/` sub-folder) or that `wandb/` folder. The
    `latest-run` link is skipped, so each run folder appears once; a resumed run has one folder per attempt.
    """
    wandb_dir = Path(wandb_dir)
    found: set[Path] = set()
    for base in (wandb_dir, wandb_dir / "wandb"):
        if not base.is_dir():
            continue
        for child in base.iterdir():
            if (
                _RUN_FOLDER.match(child.name)
                and not child.is_symlink()
                and child.is_dir()
                and any(child.glob("run-*.wandb"))
            ):
                found.add(child)
    return sorted(found, key=lambda p: (p.name.removeprefix("offline-"), str(p)))


def plain_config(config: dict[str, Any]) -> dict[str, Any]:
    """Unwrap wandb's `{"key": {"value": v, "desc": ...}}` config form to `{"key": v}` (drops `_wandb`).

    Only top-level entries whose dict has a "value" key and nothing but "value"/"desc" are unwrapped, so an
    already plain config comes back unchanged.
    """
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key == "_wandb":
            continue
        if isinstance(value, dict) and "value" in value and set(value) <= {"value", "desc"}:
            value = value["value"]
        out[key] = value
    return out
