"""The state of an offline sweep, shared by concurrent agents on many nodes through the sweep's folder.

Everything lives in the sweep folder on the shared filesystem (NFS, Lustre), where `flock` cannot be trusted:

* `journal.jsonl` — append-only, one JSON object per line: `issue` (a new run with its parameters), `reissue`
  (a crashed run handed to another agent, attempt + 1) and `end` (finished / failed / stopped / crashed, with
  summary metrics and the metric's history). The sweep's state is the replay of the journal, so a write never
  rewrites what others may be reading, and a run's story stays auditable.
* `journal.lock` — taken around every read-modify-append (`comprobust.locking.FileLock`): a file created with
  O_CREAT|O_EXCL (atomic on NFSv3+ and Lustre) holding its owner's host, pid and time. A lock whose owner is a
  dead process on the same host, or that is older than `lock_stale_s`, is broken (renamed away atomically, so two
  agents never both break and take it). Waits are bounded: `StoreLocked` names the owner after `lock_timeout_s`.
* `heartbeats/<run_id>.<attempt>.json` — rewritten atomically (temp + fsync + rename) by the agent running that
  attempt every few seconds, with its host and pid (and the run's metric history so far, for hyperband). A running
  run whose agent is a dead process on this host, or whose heartbeat is older than `stale_s`, has crashed.

Appends happen only under the lock, after re-reading the journal, at the offset just read (`pwrite`), followed by
`fsync` and `close` (which NFS's close-to-open consistency makes visible to the next opener). A writer killed
mid-append leaves an incomplete last line: readers ignore it, and the next lock holder truncates it away.
Readers that do not take the lock (status, an agent checking that it still owns its run) parse complete lines only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError
from comprobust.locking import FileLock, LockTimeout, pid_alive

RUNNING, FINISHED, FAILED, STOPPED, CRASHED = "running", "finished", "failed", "stopped", "crashed"
TERMINAL = frozenset({FINISHED, FAILED, STOPPED, CRASHED})
JOURNAL, LOCK, HEARTBEATS = "journal.jsonl", "journal.lock", "heartbeats"
HOST = socket.gethostname()


class StoreError(UserError):
    """The sweep's journal is damaged, or its lock could not be taken in time."""


@dataclass
class RunRecord:
    """One run of the sweep as the journal tells it."""

    run_id: str
    index: int  # order of creation, from 0
    params: dict[str, Any]
    state: str = RUNNING
    attempt: int = 1
    agent: str = ""
    host: str = ""
    pid: int = 0
    issued_at: float = 0.0
    ended_at: float | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SweepStore:
    """Journal + lock + heartbeats of one sweep folder. Not thread-safe; one instance per agent process."""

    def __init__(
        self,
        folder: str | os.PathLike,
        lock_timeout_s: float = 120.0,
        lock_stale_s: float = 60.0,
        lock_poll_s: float = 0.005,
    ) -> None:
        self.folder = Path(folder)
        self.journal = self.folder / JOURNAL
        self.lock_timeout_s, self.lock_stale_s, self.lock_poll_s = lock_timeout_s, lock_stale_s, lock_poll_s
        self.runs: dict[str, RunRecord] = {}
        self._offset = 0  # bytes of the journal applied so far (always at a line end)
        self._lines = 0
        self._pending: list[dict[str, Any]] | None = None

    # ------------------------------------------------------------------------------------------- reading

    def refresh(self, locked: bool = False) -> None:
        """Apply the journal lines written since the last call (complete lines only)."""
        try:
            with open(self.journal, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        start = 0
        while start < end:
            stop = data.index(b"\n", start)
            line = data[start:stop]
            try:
                op = json.loads(line)
                if not isinstance(op, dict):
                    raise ValueError("not an object")
                self._apply(op)
            except (ValueError, KeyError, TypeError) as err:
                if not locked:  # maybe a half-visible write on NFS: read it again later, under the lock
                    break
                raise StoreError(
                    f"{self.journal}: line {self._lines + 1} is corrupt ({type(err).__name__}: {err}); "
                    "move the file away to start the sweep over, or delete that line"
                ) from None
            start = stop + 1
            self._offset += len(line) + 1
            self._lines += 1

    def verify(self) -> None:
        """Read the whole journal under the lock, as status commands do: a damaged line is then a `StoreError`
        naming it, never taken for a write still in flight and silently skipped. A sweep folder this user may not
        write (no lock possible) is read without the lock."""
        try:
            with self.transaction():
                pass
        except PermissionError:
            self._reload()
            self.refresh()

    def _apply(self, op: Mapping[str, Any]) -> None:
        kind, run_id = op.get("op"), str(op.get("run_id"))
        if kind == "issue":
            self.runs[run_id] = RunRecord(
                run_id=run_id,
                index=int(op["index"]),
                params=dict(op["params"]),
                agent=op.get("agent", ""),
                host=op.get("host", ""),
                pid=int(op.get("pid", 0)),
                issued_at=float(op.get("time", 0.0)),
            )
            return
        record = self.runs.get(run_id)
        if record is None:
            return  # an op about a run this journal never issued: ignore rather than fail every reader
        if kind == "reissue" and record.state == RUNNING:
            record.attempt, record.agent = int(op["attempt"]), op.get("agent", "")
            record.host, record.pid, record.issued_at = (
                op.get("host", ""),
                int(op.get("pid", 0)),
                float(op["time"]),
            )
        elif kind == "end" and record.state == RUNNING:  # the first end wins, even from an older attempt
            record.state = op["state"]
            record.ended_at = float(op.get("time", 0.0))
            record.summary = dict(op.get("summary") or {})
            record.history = list(op.get("history") or [])
            record.exit_code = op.get("exit_code")
            record.error = op.get("error")

    # ------------------------------------------------------------------------------------------- writing

    @contextlib.contextmanager
    def transaction(self) -> Iterator[SweepStore]:
        """Hold the lock, bring `runs` up to date, and append the ops given to `append` on success."""
        lock = FileLock(
            self.folder / LOCK,
            timeout_s=self.lock_timeout_s,
            stale_s=self.lock_stale_s,
            poll_s=self.lock_poll_s,
        )
        try:
            lock.acquire()
        except LockTimeout as err:
            raise StoreError(
                f"sweep store {self.folder}: {err}. If that agent is gone for good, delete {lock.path}"
            ) from None
        try:
            self.refresh(locked=True)
            self._drop_partial_tail()
            self._pending = []
            yield self
            if self._pending:
                self._write(self._pending)
        except BaseException:
            self._reload()  # ops applied in memory but maybe not written: start from the file again
            raise
        finally:
            self._pending = None
            lock.release()

    def append(self, op: dict[str, Any]) -> None:
        """Record `op` (applied at once in memory, written when the transaction ends)."""
        if self._pending is None:
            raise RuntimeError("SweepStore.append outside a transaction")
        op = {**op, "time": op.get("time", time.time())}
        self._apply(op)
        self._pending.append(op)

    def _write(self, ops: list[dict[str, Any]]) -> None:
        data = b"".join(json.dumps(op, sort_keys=True, default=_plain).encode() + b"\n" for op in ops)
        fd = os.open(self.journal, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size != self._offset:
                raise StoreError(
                    f"{self.journal} changed while locked (size {size}, expected {self._offset}): "
                    "another program writes it without the lock"
                )
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, size)
                view, size = view[written:], size + written
            os.fsync(fd)
        finally:
            os.close(fd)
        self._offset += len(data)
        self._lines += len(ops)

    def _drop_partial_tail(self) -> None:
        """Under the lock: cut an incomplete last line left by a writer killed mid-append."""
        try:
            size = self.journal.stat().st_size
        except FileNotFoundError:
            return
        if size > self._offset:
            print(
                f"comprobust: {self.journal}: dropping {size - self._offset} bytes of an interrupted write",
                file=sys.stderr,
            )
            os.truncate(self.journal, self._offset)

    def _reload(self) -> None:
        self.runs, self._offset, self._lines = {}, 0, 0

    # ----------------------------------------------------------------------------------------- heartbeats

    def heartbeat_path(self, run_id: str, attempt: int) -> Path:
        return self.folder / HEARTBEATS / f"{run_id}.{attempt}.json"

    def write_heartbeat(self, run_id: str, attempt: int, agent: str, **extra: Any) -> None:
        """Tell the others that this attempt of `run_id` is alive (atomic rewrite)."""
        payload = {
            "run_id": run_id,
            "attempt": attempt,
            "agent": agent,
            "host": HOST,
            "pid": os.getpid(),
            "time": time.time(),
            **extra,
        }
        atomic_write_text(self.heartbeat_path(run_id, attempt), json.dumps(payload, default=_plain))

    def read_heartbeat(self, run_id: str, attempt: int) -> dict[str, Any] | None:
        try:
            return json.loads(self.heartbeat_path(run_id, attempt).read_text())
        except (FileNotFoundError, ValueError):
            return None

    def is_stale(self, record: RunRecord, stale_s: float, now: float | None = None) -> bool:
        """Whether a running run's agent is gone: a dead process on this host, or no heartbeat for `stale_s`."""
        if record.state != RUNNING:
            return False
        beat = self.read_heartbeat(record.run_id, record.attempt)
        host, pid, seen = record.host, record.pid, record.issued_at
        if beat is not None:
            host, pid, seen = (
                beat.get("host", host),
                int(beat.get("pid", pid)),
                max(seen, float(beat["time"])),
            )
        if host == HOST and not pid_alive(pid):
            return True
        return (time.time() if now is None else now) - seen > stale_s


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars and arrays."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
