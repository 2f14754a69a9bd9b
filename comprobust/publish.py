"""Publish offline W&B runs to a server with `wandb sync`, which cannot be trusted on its own:

* with a key and an unreachable server it retries silently for ever, so every call runs with bounded retries
  (`BOUNDED_RETRIES`: GraphQL, file stream and file transfers; values already in the environment win) and under
  a timeout that kills its whole process group;
* it exits 0 when the upload failed, so its output is read first: any "ERROR" line (or a Python traceback, or a
  non-zero exit) is a failure, and so is the absence of "Finished syncing" (wandb >= 0.31) or "done";
* some failures (an artifact that never committed, a file whose upload gave up) never reach its output, and it
  writes its `.synced` marker even after a fatal error. So a run counts as published only when the SERVER shows
  it (`ServerCopy.missing`): the run, in the state of its exit record, with every history row and every logged
  artifact committed. A retried `wandb sync` appends the history again to what an earlier attempt left on the
  server, so that partial copy is deleted first (`ServerCopy.discard`; artifact versions are kept). Only then is
  comprobust's own marker `run-<id>.wandb.published` written; wandb's `.synced` marker is ignored
  (`--include-synced`), so a retry really uploads again.

A resumed run has one folder per attempt; each attempt re-logs the history it restored (comprobust.training), so
the newest folder of a run holds all of it and is the only one synced ("superseded" for the others: syncing
them too would append their steps twice). Runs without an exit record (still running, or killed) are skipped
unless `include_unfinished`. Offline sweeps (`<output_dir>/sweeps/<id>`) are then created on the server with
their published trial runs as prior runs (`publish_sweeps`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError

BOUNDED_RETRIES = {
    "WANDB_X_GRAPHQL_RETRY_MAX": "1",
    "WANDB_X_GRAPHQL_RETRY_WAIT_MAX_SECONDS": "5",
    "WANDB_X_FILE_STREAM_RETRY_MAX": "1",
    "WANDB_X_FILE_TRANSFER_RETRY_MAX": "1",
    "WANDB_X_FILE_TRANSFER_RETRY_WAIT_MAX_SECONDS": "5",
    "WANDB_X_FILE_TRANSFER_TIMEOUT_SECONDS": "300",
}
PUBLISHED_SUFFIX = ".published"
_FAILURE = re.compile(r"\bERROR\b|^Traceback \(most recent call last\)|^Error: ", re.MULTILINE)
_SUCCESS = re.compile(r"Finished syncing|\bdone\.?\s*$", re.IGNORECASE | re.MULTILINE)
_ALREADY = re.compile(r"Skipped \d+ synced run")
_NOTHING = re.compile(r"No runs to sync")


@dataclass
class SyncOutcome:
    """What happened to one run folder."""

    folder: Path
    run_id: str
    status: str  # synced | failed | already-synced | unfinished | would-sync | superseded
    attempts: int = 0
    message: str = ""


def judge(output: str, returncode: int) -> tuple[str, str]:
    """("synced" | "already-synced" | "failed", reason) from one `wandb sync` call's output and exit code."""
    failure = _FAILURE.search(output)
    if failure:
        line = output[failure.start() :].splitlines()[0].strip()
        return "failed", line
    if returncode != 0:
        return "failed", f"wandb sync exited with status {returncode}"
    if _ALREADY.search(output) and _NOTHING.search(output):
        return "already-synced", "wandb says the run is already synced"
    if _NOTHING.search(output):
        return "failed", (
            "wandb found nothing to sync in this folder (an online run folder, or no .wandb file)"
        )
    if _SUCCESS.search(output):
        return "synced", ""
    return "failed", "wandb sync printed no 'Finished syncing' / 'done' line, so the upload cannot be trusted"


def published_marker(folder: Path) -> Path | None:
    """The `run-<id>.wandb.published` marker written once the server showed the whole run, if present."""
    for log in folder.glob("run-*.wandb"):
        marker = log.with_name(log.name + PUBLISHED_SUFFIX)
        if marker.exists():
            return marker
    return None


class ServerCopy:
    """The server's copy of the run logged in one offline folder."""

    def __init__(self, folder: Path, entity: str | None, project: str | None) -> None:
        import wandb

        from comprobust.wandb_offline import read_run

        self.local = read_run(folder)
        self.api = wandb.Api(timeout=30)
        self.path = (
            f"{entity or self.local.entity or self.api.default_entity}/{project or self.local.project}/"
            f"{self.local.id}"
        )

    def fetch(self) -> Any:
        """The server's run, or None when it has none under this path."""
        try:
            return self.api.run(self.path)
        except Exception:  # wandb.errors.CommError, ValueError: not there
            return None

    def discard(self) -> bool:
        """Delete what an earlier, failed upload left on the server (its artifact versions stay): a retried
        `wandb sync` would append the run's history to it again. True when there was something to delete."""
        remote = self.fetch()
        if remote is None:
            return False
        remote.delete(delete_artifacts=False)
        return True

    def missing(self) -> str | None:
        """None when the server holds the whole run, else what is missing (one line)."""
        local, remote = self.local, self.fetch()
        if remote is None:
            return f"the server has no run {self.path}"
        if remote.state != local.state:
            return f"the server says run {self.path} is {remote.state}, its log says {local.state}"
        rows = int(remote._attrs.get("historyLineCount") or 0)
        if rows != len(local.history):
            return f"the server has {rows} history rows of run {self.path}, its log {len(local.history)}"
        try:
            committed = [a for a in remote.logged_artifacts() if a.state == "COMMITTED"]
        except Exception as err:  # a half-uploaded artifact the client cannot even describe
            return f"the artifacts of run {self.path} cannot be listed on the server ({type(err).__name__}: {err})"
        if len(committed) < len(local.artifacts):
            return (
                f"the server has {len(committed)} of the {len(local.artifacts)} artifacts of run {self.path} "
                "committed"
            )
        return None


def wandb_executable() -> str:
    """`wandb` on PATH, else the one next to this Python (a venv used without activating it)."""
    found = shutil.which("wandb")
    if found:
        return found
    beside = Path(sys.executable).parent / "wandb"
    if beside.is_file():
        return str(beside)
    raise UserError(
        "the `wandb` command was not found on PATH or next to this Python; install the pinned "
        "requirements (pip install -r requirements.txt) in the environment you run from"
    )


def newest_attempts(folders: list[Path]) -> tuple[list[Path], list[Path]]:
    """(newest folder of each run, older attempts), both in the given order (folders sort oldest first)."""
    newest = {_run_id(folder): folder for folder in folders}
    keep = set(newest.values())
    return [f for f in folders if f in keep], [f for f in folders if f not in keep]


def offline_run_folders(target: Path) -> list[Path]:
    """The offline run folders of a WANDB_DIR (or its wandb/ folder), or the one run folder given."""
    from comprobust.wandb_offline import find_runs

    target = Path(target)
    if not target.exists():
        raise UserError(
            f"{target}: no such folder; give an experiment YAML or its W&B folder (<output_dir>/wandb)"
        )
    if any(target.glob("run-*.wandb")):
        folders = [target]
    else:
        folders = find_runs(target)
    return [f for f in folders if f.name.startswith("offline-run-")]


def run_sync(
    folder: Path, *, wandb_bin: str, timeout_s: float, extra_args: Iterable[str] = ()
) -> tuple[str, int]:
    """One `wandb sync FOLDER` with bounded retries; (output, exit code), exit code 124 on timeout."""
    env = dict(os.environ)
    for key, value in BOUNDED_RETRIES.items():
        env.setdefault(key, value)
    env.pop("WANDB_MODE", None)  # an inherited WANDB_MODE=offline must not reach the uploader
    env["WANDB_SILENT"] = "false"  # its output is read: a silenced sync never says "Finished syncing"
    command = [wandb_bin, "sync", "--include-synced", *extra_args, str(folder)]
    # run in WANDB_DIR, where wandb keeps its logs; output to a file, not a pipe, so that helpers of a killed
    # child (wandb-core) cannot block the read
    cwd = folder.parent.parent if folder.parent.name == "wandb" else folder.parent
    with tempfile.TemporaryFile("w+b") as sink:
        process = subprocess.Popen(
            command,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
        try:
            code = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            code = 124
        sink.seek(0)
        output = sink.read().decode("utf-8", "replace")
    if code == 124:
        output += f"\nERROR wandb sync did not finish within {timeout_s:g} s (killed)"
    return output, code


def _kill_group(process: subprocess.Popen) -> None:
    """Stop the `wandb sync` we started and its helpers (wandb-core), which share its process group."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def publish(
    target: Path,
    *,
    entity: str | None = None,
    project: str | None = None,
    dry_run: bool = False,
    attempts: int = 3,
    timeout_s: float = 1800.0,
    backoff_s: float = 5.0,
    include_unfinished: bool = False,
    wandb_bin: str | None = None,
    echo: Callable[[str], None] = print,
) -> list[SyncOutcome]:
    """Sync every offline run folder under `target`; returns one outcome per folder (see the module doc)."""
    from comprobust.tracking import has_credentials
    from comprobust.wandb_offline import tail_exit_code

    if attempts < 1 or timeout_s <= 0 or backoff_s < 0:
        raise UserError("--attempts must be >= 1, --timeout > 0 and --backoff >= 0")
    folders, superseded = newest_attempts(offline_run_folders(target))
    if not folders:
        echo(f"no offline runs under {target}")
        return []
    if not dry_run:
        if not has_credentials():
            raise UserError(
                "publishing needs W&B credentials and none are configured: run `wandb login` "
                "(or export WANDB_API_KEY; for a self-hosted server also WANDB_BASE_URL), then run "
                "publish again. `--dry-run` lists what would be synced without credentials."
            )
        from comprobust.wandb_connection import require_reachable

        require_reachable(f"publish {target}")
    wandb_bin = wandb_bin or ("" if dry_run else wandb_executable())
    extra = [*(["--entity", entity] if entity else []), *(["--project", project] if project else [])]
    outcomes = [
        SyncOutcome(
            folder,
            _run_id(folder),
            "superseded",
            message="a newer attempt of this run holds its whole history",
        )
        for folder in superseded
    ]
    for folder in folders:
        outcome = SyncOutcome(folder, _run_id(folder), "")
        if published_marker(folder) is not None:
            outcome.status, outcome.message = "already-synced", "published and checked on the server before"
        elif tail_exit_code(folder) is None and not include_unfinished:
            outcome.status = "unfinished"
            outcome.message = "no exit record (still running, or killed): --include-unfinished syncs it"
        elif dry_run:
            outcome.status = "would-sync"
        else:
            _sync_with_retries(
                outcome,
                wandb_bin,
                timeout_s,
                extra,
                attempts,
                backoff_s,
                echo,
                ServerCopy(folder, entity, project),
            )
        outcomes.append(outcome)
        echo(f"{outcome.status:14s} {folder.name}" + (f"  ({outcome.message})" if outcome.message else ""))
    echo(summary_line(outcomes))
    return outcomes


def _sync_with_retries(
    outcome: SyncOutcome,
    wandb_bin: str,
    timeout_s: float,
    extra: list[str],
    attempts: int,
    backoff_s: float,
    echo: Callable[[str], None],
    server: ServerCopy,
) -> None:
    for attempt in range(1, attempts + 1):
        if server.discard():
            echo(
                f"discarded      {server.path}: the partial copy an earlier failed upload left on the server"
            )
        output, code = run_sync(outcome.folder, wandb_bin=wandb_bin, timeout_s=timeout_s, extra_args=extra)
        status, reason = judge(output, code)
        if status != "failed":
            missing = server.missing()
            if missing is None:
                status, reason = "synced", ""
                log = next(outcome.folder.glob("run-*.wandb"))
                atomic_write_text(log.with_name(log.name + PUBLISHED_SUFFIX), f"{time.time():.0f}\n")
            else:
                status, reason = "failed", f"wandb sync reported success, but {missing}"
        outcome.attempts, outcome.status, outcome.message = attempt, status, reason
        if status != "failed":
            return
        if attempt < attempts:
            wait = backoff_s * 2 ** (attempt - 1)
            echo(
                f"retry          {outcome.folder.name}: attempt {attempt} of {attempts} failed ({reason}); "
                f"again in {wait:g} s"
            )
            time.sleep(wait)


def summary_line(outcomes: list[SyncOutcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    order = ("synced", "would-sync", "already-synced", "unfinished", "superseded", "failed")
    return "summary: " + ", ".join(
        f"{counts.get(s, 0)} {s}" for s in order if counts.get(s) or s in ("synced", "failed")
    )


def _run_id(folder: Path) -> str:
    logs = sorted(folder.glob("run-*.wandb"))
    return logs[0].stem.removeprefix("run-") if logs else folder.name


SWEEP_PUBLISHED_FILE = "published.json"


def publish_sweeps(
    sweeps_dir: Path,
    outcomes: list[SyncOutcome],
    *,
    entity: str | None,
    project: str | None,
    echo: Callable[[str], None] = print,
) -> None:
    """Create each offline sweep under `sweeps_dir` on the server, its published trial runs as prior runs (the
    W&B way to attach existing runs to a sweep). A sweep published before is left as it is
    (`<sweep folder>/published.json` says where it went)."""
    import wandb

    from comprobust.sweeps.controller import SweepController
    from comprobust.sweeps.folder import SWEEP_FILE

    published = {o.run_id for o in outcomes if o.status in ("synced", "already-synced")}
    for folder in sorted(p.parent for p in Path(sweeps_dir).glob(f"*/{SWEEP_FILE}")):
        record_file = folder / SWEEP_PUBLISHED_FILE
        if record_file.exists():
            continue
        controller = SweepController(folder)
        trials = [r.run_id for r in controller.records() if r.run_id in published]
        if not trials:
            continue
        config = {k: v for k, v in controller.config.items() if k not in ("entity",)}
        sweep_project = project or controller.config.get("project") or controller.meta.get("project")
        sweep_entity = (
            entity
            or controller.config.get("entity")
            or controller.meta.get("entity")
            or wandb.Api().default_entity
        )
        sweep_id = wandb.sweep(config, entity=sweep_entity, project=sweep_project, prior_runs=trials)
        path = f"{sweep_entity}/{sweep_project}/{sweep_id}"
        atomic_write_text(
            record_file,
            json.dumps({"path": path, "offline_id": controller.sweep_id, "runs": trials}, indent=1),
        )
        echo(f"sweep          {controller.sweep_id} -> {path} ({len(trials)} trial runs)")
