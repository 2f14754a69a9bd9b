"""The W&B run of one stage run: `start_run` opens it; `StageRun` logs metrics, tables and checkpoint
artifacts, resolves inputs (W&B `use_artifact` online, the lineage store offline) and finishes it."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from comprobust.errors import UserError, first_line
from comprobust.tracking.client import environment, forget_inherited_service, init_wandb, restore
from comprobust.tracking.credentials import configured_api_keys, resolve_mode
from comprobust.tracking.lineage import ArtifactRef, LineageRecord, LineageStore, file_digest
from comprobust.tracking.scrub import scrub

log = logging.getLogger(__name__)

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

FINISH_FLUSH_TIMEOUT_S = 20.0

_active: StageRun | None = None


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """{"git_commit": sha, "git_dirty": bool} of the repository holding comprobust, or {} outside git."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": bool(dirty)} if commit else {}


class StageRun:
    """One W&B run of one stage run. Create with `start_run`; use as a context manager or call `finish`."""

    def __init__(
        self,
        *,
        wandb_run: Any,
        mode: str,
        run_id: str,
        out_dir: Path,
        config: dict[str, Any],
        secrets: list[str],
        saved_env: dict[str, str | None],
    ) -> None:
        self._run = wandb_run
        self._secrets = secrets
        self._saved_env = saved_env
        self._config = config
        self._finished = False
        self.mode = mode
        self.out_dir = out_dir
        self.lineage = LineageStore(out_dir / "lineage")
        self.data_dir = out_dir / "wandb-data"
        self.id: str = wandb_run.id if wandb_run is not None else run_id

    # -- identity ------------------------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        """wandb's `run.dir` (the run's `files/` folder); in disabled mode a scratch folder under out_dir."""
        if self._run is not None:
            return Path(self._run.dir)
        folder = self.out_dir / "wandb" / f"disabled-run-{self.id}" / "files"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def run_folder(self) -> Path | None:
        """The folder holding `run-<id>.wandb` (what `wandb_offline.read_run` and `wandb sync` take)."""
        if self._run is None:
            return None
        return Path(self._run.settings.sync_dir)

    @property
    def config(self) -> dict[str, Any]:
        """The run's config as plain values (includes sweep parameters when a W&B agent started the run)."""
        if self._run is None:
            return dict(self._config)
        return dict(self._run.config.as_dict())

    # -- metrics -------------------------------------------------------------------------------------------
    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log one history row (e.g. one epoch); cheap (no flush per call)."""
        if self._run is not None:
            self._run.log(dict(metrics), step=step)

    def summary_update(self, values: Mapping[str, Any]) -> None:
        """Set summary values (final/best metrics) on the run."""
        if self._run is not None:
            self._run.summary.update(dict(values))

    def log_table(self, key: str, columns: list[str], rows: list[list], step: int | None = None) -> None:
        """Log a `wandb.Table` under `key` (offline its JSON lands in files/media/table/)."""
        if self._run is None:
            return
        import wandb

        self._run.log({key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])}, step=step)

    # -- artifacts -----------------------------------------------------------------------------------------
    def log_checkpoint(
        self,
        path: Path,
        artifact_name: str,
        metadata: Mapping[str, Any],
        aliases: Sequence[str] = ("latest",),
        is_best: bool = False,
        artifact_type: str = "model",
    ) -> Path:
        """Log a checkpoint file as an artifact (type "model" unless `artifact_type` says otherwise; the
        aliases, plus "best" when `is_best`) and record its lineage.

        The bytes are kept without a copy: a hard link
        `<out_dir>/wandb-data/checkpoints/<name>/<unique>-<file>` (a copy only where the filesystem refuses
        links) is added with policy "immutable", so replacing `path` atomically later (the next epoch) never
        changes what this version points to; an in-place overwrite would, and `use_input` then refuses the
        file (digest mismatch). Each call keeps its version until it is published and deleted, as W&B keeps
        every version: log when the checkpoint matters. Returns the kept file, which the lineage records of
        every alias point to.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist; save it before log_checkpoint")
        ArtifactRef.parse(artifact_name)
        all_aliases = list(dict.fromkeys([*aliases, *(["best"] if is_best else [])]))
        for alias in all_aliases:
            ArtifactRef.parse(f"{artifact_name}:{alias}")
        meta = scrub(dict(metadata), self._secrets)
        unique = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}-{path.name}"
        kept = self.data_dir / "checkpoints" / artifact_name / unique
        kept.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, kept)
        except OSError:
            shutil.copy2(path, kept)
        if self._run is not None:
            import wandb

            artifact = wandb.Artifact(artifact_name, type=artifact_type, metadata=meta)
            entry = artifact.add_file(str(kept), name=path.name, policy="immutable")
            self._run.log_artifact(artifact, aliases=all_aliases)
            digest = entry.digest
        else:
            digest = file_digest(kept)
        for alias in all_aliases:
            self.lineage.record(artifact_name, alias, kept, self.id, meta, digest)
        return kept

    def use_input(self, ref: str, required_by: str, produced_by_stage: str) -> Path:
        """The local file of an upstream artifact `name:alias`, recorded as an input of this run.

        Online: `use_artifact` (W&B lineage), then the local lineage file when its digest matches the
        server's, else a download. Offline/disabled: the LineageStore record, checked against its digest. A
        missing artifact is a `UserError` naming the stage to run first. The config gets `inputs` (names) and
        `input_lineage` (the resolved records) either way.
        """
        parsed = ArtifactRef.parse(ref)
        record = self.lineage.resolve(parsed)
        missing = UserError(
            f"{required_by} needs artifact {str(parsed)!r}, which does not exist yet: "
            f"run stage {produced_by_stage!r} first"
        )
        if self.mode == "online":
            path, record = self._use_online(parsed, record, missing)
        else:
            if record is None:
                raise missing
            local = self._check_local(record, produced_by_stage)
            if local is None:
                raise UserError(
                    f"{required_by} needs artifact {str(parsed)!r}, recorded in "
                    f"{self.lineage._file(parsed)}, but its file {record.path} is missing: "
                    f"re-run stage {produced_by_stage!r}"
                )
            path = local
        self._record_input(str(parsed), record, path)
        return path

    def _check_local(self, record: LineageRecord, produced_by_stage: str) -> Path | None:
        path = Path(record.path)
        if not path.is_file():
            return None
        if record.digest and file_digest(path) != record.digest:
            raise UserError(
                f"artifact {record.ref!r}: file {path} no longer matches its recorded digest "
                f"(changed or corrupt); re-run stage {produced_by_stage!r}"
            )
        return path

    def _use_online(
        self, ref: ArtifactRef, record: LineageRecord | None, missing: UserError
    ) -> tuple[Path, LineageRecord | None]:
        from comprobust.wandb_connection import is_not_found

        try:
            artifact = self._run.use_artifact(str(ref))
        except Exception as err:  # wandb.errors.CommError and friends
            if not is_not_found(err):
                raise UserError(
                    f"W&B server error while resolving input {str(ref)!r} of run {self.id}: "
                    f"{first_line(err)}; retry, or run "
                    "with --mode offline"
                ) from err
            if record is None or not Path(record.path).is_file():
                raise missing from err
            log.warning(
                "artifact %s is not on the W&B server (%s); using the local file %s. Publish the "
                "producing run with `wandb sync` to get the lineage on the server.",
                ref,
                err,
                record.path,
            )
            return Path(record.path), record
        entries = list(artifact.manifest.entries.values())
        if (
            record is not None
            and len(entries) == 1
            and entries[0].digest == record.digest
            and Path(record.path).is_file()
        ):
            return Path(record.path), record
        root = Path(artifact.download(root=str(self.data_dir / "downloads" / ref.name / ref.alias)))
        files = [p for p in root.rglob("*") if p.is_file()]
        path = files[0] if len(files) == 1 else root
        return path, LineageRecord(
            ref.name,
            ref.alias,
            str(path),
            "",
            dict(artifact.metadata or {}),
            entries[0].digest if len(entries) == 1 else "",
        )

    def _record_input(self, ref: str, record: LineageRecord | None, path: Path) -> None:
        inputs = list(self._config.get("inputs") or [])
        if ref not in inputs:
            inputs.append(ref)
        lineage = dict(self._config.get("input_lineage") or {})
        # no file path: it means nothing on another machine or the dashboard (the LineageStore keeps it)
        lineage[ref] = {"run_id": record.run_id if record else "", "digest": record.digest if record else ""}
        update = scrub({"inputs": inputs, "input_lineage": lineage}, self._secrets)
        self._config.update(update)
        if self._run is not None:
            self._run.config.update(update, allow_val_change=True)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def finish(self, exit_code: int = 0) -> None:
        """Finish the run (idempotent) and restore the caller's WANDB_* environment."""
        global _active
        if self._finished:
            return
        self._finished = True
        try:
            if self._run is not None:
                folder = self.run_folder
                self._run.finish(exit_code=exit_code)
                self._wait_for_log(folder)
        finally:
            restore(self._saved_env)
            if _active is self:
                _active = None

    @staticmethod
    def _wait_for_log(folder: Path | None, timeout_s: float = FINISH_FLUSH_TIMEOUT_S) -> None:
        """Wait until wandb-core has written the exit record: `finish` returns before the log is on disk,
        and a reader (the next stage, the results table) must see the finished run."""
        from comprobust.wandb_offline import wait_for_exit_record

        if folder is not None and not wait_for_exit_record(folder, timeout_s):
            log.warning("W&B run log in %s still has no exit record %.0f s after finish", folder, timeout_s)

    def __enter__(self) -> StageRun:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Literal[False]:
        if exc_type is None:
            self.finish(exit_code=0)
            return False
        # Leaving on an error or a termination (e.g. submitit's SystemExit after requeueing a preempted job,
        # while the W&B service is being killed too): record what we can, but never mask the original exception.
        try:
            if exc_type in (SystemExit, KeyboardInterrupt) and self._run is not None:
                self._run.mark_preempting()
            self.finish(exit_code=1)
        except Exception as err:  # the service may already be gone; `finish` restored the environment anyway
            log.warning("could not finish W&B run %s cleanly: %s", self.id, err)
        return False


def start_run(
    *,
    out_dir: Path,
    project: str,
    group: str,
    job_type: str,
    name: str,
    run_id: str,
    config: Mapping[str, Any],
    tags: Iterable[str],
    mode: str = "auto",
    inputs: Iterable[str] = (),
    resume: bool = True,
    mode_override: str | None = None,
) -> StageRun:
    """Start the W&B run of one stage run and return its `StageRun`.

    `out_dir` is the experiment's output folder: WANDB_DIR=out_dir/wandb, WANDB_DATA_DIR=out_dir/wandb-data,
    WANDB_CACHE_DIR=out_dir/wandb-cache while the run is open (restored by `finish`); lineage in
    out_dir/lineage. `run_id` is the stable, hash-based id; with `resume` a restarted job continues the same
    id (resume="allow"). Under a W&B sweep agent, wandb takes the id and project from the agent's environment
    (WANDB_RUN_ID, WANDB_PROJECT) instead. The config is scrubbed of secrets and gets `git_commit`/`git_dirty`
    and `inputs` (the input artifact names).
    """
    global _active
    if _active is not None:
        raise RuntimeError(
            f"W&B run {_active.id} is still open in this process: finish it before starting another"
        )
    for label, value in (("project", project), ("group", group), ("job_type", job_type), ("name", name)):
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"the W&B {label} must be a non-empty string, got {value!r}")
    if not _RUN_ID_RE.match(str(run_id)):
        raise UserError(f"run id {run_id!r} must be 1-64 letters, digits, '-' or '_'")
    tags = [str(t) for t in tags]
    for tag in tags:
        if not 0 < len(tag) <= 64:
            raise UserError(f"W&B tag {tag!r} must have 1 to 64 characters")
    input_refs = [str(ArtifactRef.parse(r)) for r in inputs]
    forget_inherited_service()
    resolved = resolve_mode(mode, mode_override)
    secrets = configured_api_keys()
    full = {**git_state(), **dict(config)}
    full["inputs"] = list(dict.fromkeys([*(full.get("inputs") or []), *input_refs]))
    clean = scrub(full, secrets)

    out_dir = Path(out_dir).resolve()
    env = {
        "WANDB_DIR": str(out_dir / "wandb"),
        "WANDB_DATA_DIR": str(out_dir / "wandb-data"),
        "WANDB_CACHE_DIR": str(out_dir / "wandb-cache"),
    }
    for folder in env.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    if resolved == "online":
        from comprobust.wandb_connection import require_reachable

        require_reachable(f"run {name}")
    with environment(env) as saved:
        wandb_run = init_wandb(
            resolved,
            env["WANDB_DIR"],
            project=project,
            group=group,
            job_type=job_type,
            name=name,
            id=run_id,
            config=clean,
            tags=tags,
            resume="allow" if resume else None,
        )
        run = StageRun(
            wandb_run=wandb_run,
            mode=resolved,
            run_id=run_id,
            out_dir=out_dir,
            config=clean,
            secrets=secrets,
            saved_env=saved,
        )
    _active = run
    return run
