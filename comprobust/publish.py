"""Publish offline W&B runs to a server with `wandb sync`, which cannot be trusted on its own:

* with a key and an unreachable server it retries silently for ever, so every call runs with bounded retries
  (WANDB_X_GRAPHQL_RETRY_MAX, WANDB_X_GRAPHQL_RETRY_WAIT_MAX_SECONDS, WANDB_X_FILE_STREAM_RETRY_MAX; values
  already in the environment win) and under a timeout that kills its whole process group;
* it exits 0 when the upload failed, so success is judged from its output: any "ERROR" line (or a Python
  traceback, or a non-zero exit) is a failure, and a run counts as synced only when wandb says
  "Finished syncing" (wandb >= 0.31) or "done" (older clients);
* it skips folders not named `offline-run-*` ("Skipped 1 online run(s)") and runs already marked synced.

One `wandb sync` per run folder, oldest first (a resumed run's folders in order; a later folder waits for an
earlier one that failed), each retried up to `attempts` times with exponential backoff. A run is already
synced when wandb left its marker `run-<id>.wandb.synced` next to the log (wandb-core writes it after a
successful upload; `run-<id>.wandb.syncstate` is wandb's progress file and says nothing about success). Runs
without an exit record (still running, or killed) are skipped unless `include_unfinished`.
"""
from __future__ import annotations

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

from comprobust.errors import UserError

BOUNDED_RETRIES = {
    "WANDB_X_GRAPHQL_RETRY_MAX": "1",
    "WANDB_X_GRAPHQL_RETRY_WAIT_MAX_SECONDS": "5",
    "WANDB_X_FILE_STREAM_RETRY_MAX": "1",
}
_FAILURE = re.compile(r"\bERROR\b|^Traceback \(most recent call last\)|^Error: ", re.MULTILINE)
_SUCCESS = re.compile(r"Finished syncing|\bdone\.?\s*$", re.IGNORECASE | re.MULTILINE)
_ALREADY = re.compile(r"Skipped \d+ synced run")
_NOTHING = re.compile(r"No runs to sync")


@dataclass
class SyncOutcome:
    """What happened to one run folder."""

    folder: Path
    run_id: str
    status: str  # synced | failed | already-synced | unfinished | would-sync | blocked
    attempts: int = 0
    message: str = ""


def judge(output: str, returncode: int) -> tuple[str, str]:
    """("synced" | "already-synced" | "failed", reason) from one `wandb sync` call's output and exit code."""
    failure = _FAILURE.search(output)
    if failure:
        line = output[failure.start():].splitlines()[0].strip()
        return "failed", line
    if returncode != 0:
        return "failed", f"wandb sync exited with status {returncode}"
    if _ALREADY.search(output) and _NOTHING.search(output):
        return "already-synced", "wandb says the run is already synced"
    if _NOTHING.search(output):
        return "failed", ("wandb found nothing to sync in this folder (an online run folder, or no "
                          ".wandb file)")
    if _SUCCESS.search(output):
        return "synced", ""
    return "failed", "wandb sync printed no 'Finished syncing' / 'done' line, so the upload cannot be trusted"


def synced_marker(folder: Path) -> Path | None:
    """The `run-<id>.wandb.synced` marker wandb writes after a successful sync, if present."""
    for log in folder.glob("run-*.wandb"):
        marker = log.with_name(log.name + ".synced")
        if marker.exists():
            return marker
    return None


def wandb_executable() -> str:
    """`wandb` on PATH, else the one next to this Python (a venv used without activating it)."""
    found = shutil.which("wandb")
    if found:
        return found
    beside = Path(sys.executable).parent / "wandb"
    if beside.is_file():
        return str(beside)
    raise UserError("the `wandb` command was not found on PATH or next to this Python; install the pinned "
                    "requirements (pip install -r requirements.txt) in the environment you run from")


def offline_run_folders(target: Path) -> list[Path]:
    """The offline run folders of a WANDB_DIR (or its wandb/ folder), or the one run folder given."""
    from comprobust.wandb_offline import find_runs

    target = Path(target)
    if not target.exists():
        raise UserError(f"{target}: no such folder; give an experiment YAML or its W&B folder "
                        "(<output_dir>/wandb)")
    if any(target.glob("run-*.wandb")):
        folders = [target]
    else:
        folders = find_runs(target)
    return [f for f in folders if f.name.startswith("offline-run-")]


def run_sync(folder: Path, *, wandb_bin: str, timeout_s: float,
             extra_args: Iterable[str] = ()) -> tuple[str, int]:
    """One `wandb sync FOLDER` with bounded retries; (output, exit code), exit code 124 on timeout."""
    env = dict(os.environ)
    for key, value in BOUNDED_RETRIES.items():
        env.setdefault(key, value)
    env.pop("WANDB_MODE", None)  # an inherited WANDB_MODE=offline must not reach the uploader
    command = [wandb_bin, "sync", *extra_args, str(folder)]
    # run in WANDB_DIR, where wandb keeps its logs; output to a file, not a pipe, so that helpers of a killed
    # child (wandb-core) cannot block the read
    cwd = folder.parent.parent if folder.parent.name == "wandb" else folder.parent
    with tempfile.TemporaryFile("w+b") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=env, cwd=cwd, start_new_session=True)
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


def publish(target: Path, *, entity: str | None = None, project: str | None = None, dry_run: bool = False,
            attempts: int = 3, timeout_s: float = 1800.0, backoff_s: float = 5.0,
            include_unfinished: bool = False, wandb_bin: str | None = None,
            echo: Callable[[str], None] = print) -> list[SyncOutcome]:
    """Sync every offline run folder under `target`; returns one outcome per folder (see the module doc)."""
    from comprobust.tracking import has_credentials
    from comprobust.wandb_offline import tail_exit_code

    if attempts < 1 or timeout_s <= 0 or backoff_s < 0:
        raise UserError("--attempts must be >= 1, --timeout > 0 and --backoff >= 0")
    folders = offline_run_folders(target)
    if not folders:
        echo(f"no offline runs under {target}")
        return []
    if not dry_run and not has_credentials():
        raise UserError("publishing needs W&B credentials and none are configured: run `wandb login` "
                        "(or export WANDB_API_KEY; for a self-hosted server also WANDB_BASE_URL), then run "
                        "publish again. `--dry-run` lists what would be synced without credentials.")
    wandb_bin = wandb_bin or ("" if dry_run else wandb_executable())
    extra = [*(["--entity", entity] if entity else []), *(["--project", project] if project else [])]
    outcomes: list[SyncOutcome] = []
    failed_ids: set[str] = set()
    for folder in folders:
        run_id = _run_id(folder)
        outcome = SyncOutcome(folder, run_id, "")
        if synced_marker(folder) is not None:
            outcome.status, outcome.message = "already-synced", "marked synced by wandb"
        elif tail_exit_code(folder) is None and not include_unfinished:
            outcome.status = "unfinished"
            outcome.message = "no exit record (still running, or killed): --include-unfinished syncs it"
        elif run_id in failed_ids:
            outcome.status = "blocked"
            outcome.message = "an earlier folder of this resumed run failed to sync"
        elif dry_run:
            outcome.status = "would-sync"
        else:
            _sync_with_retries(outcome, wandb_bin, timeout_s, extra, attempts, backoff_s, echo)
            if outcome.status == "failed":
                failed_ids.add(run_id)
        outcomes.append(outcome)
        echo(f"{outcome.status:14s} {folder.name}" + (f"  ({outcome.message})" if outcome.message else ""))
    echo(summary_line(outcomes))
    return outcomes


def _sync_with_retries(outcome: SyncOutcome, wandb_bin: str, timeout_s: float, extra: list[str],
                       attempts: int, backoff_s: float, echo: Callable[[str], None]) -> None:
    for attempt in range(1, attempts + 1):
        output, code = run_sync(outcome.folder, wandb_bin=wandb_bin, timeout_s=timeout_s, extra_args=extra)
        status, reason = judge(output, code)
        outcome.attempts, outcome.status, outcome.message = attempt, status, reason
        if status != "failed":
            return
        if attempt < attempts:
            wait = backoff_s * 2 ** (attempt - 1)
            echo(f"retry          {outcome.folder.name}: attempt {attempt} of {attempts} failed ({reason}); "
                 f"again in {wait:g} s")
            time.sleep(wait)


def summary_line(outcomes: list[SyncOutcome]) -> str:
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    order = ("synced", "would-sync", "already-synced", "unfinished", "failed", "blocked")
    return "summary: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in order if counts.get(s) or s in
                                   ("synced", "failed"))


def _run_id(folder: Path) -> str:
    logs = sorted(folder.glob("run-*.wandb"))
    return logs[0].stem.removeprefix("run-") if logs else folder.name
