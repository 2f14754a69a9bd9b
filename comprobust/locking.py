"""A lock file that works on shared filesystems (NFS, Lustre) where `flock` is unreliable.

The lock is a file created with O_CREAT|O_EXCL (atomic on NFSv3+ and Lustre) holding its owner's host, pid and
start time. A lock is stale when its owner is a dead process on this host, or when it is older than `stale_s`
without a refresh (`touch`) — the owner was killed on another node. A lock file whose content is not such a record
(damaged, or written by another program) is stale once its owner had `WRITE_GRACE_S` to write the record. A stale
lock is reported on stderr and broken by renaming it to a unique name first (atomic), so two processes can never
both break and take the same lock.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Any

WRITE_GRACE_S = (
    5.0  # an owner writes its record right after creating the file; later, an unreadable one is junk
)


class LockTimeout(TimeoutError):
    """The lock stayed held by a live owner for longer than the caller wanted to wait."""


class FileLock:
    """`with FileLock(path): ...` — exclusive across processes and hosts sharing the filesystem."""

    def __init__(
        self, path: str | os.PathLike, timeout_s: float = 60.0, stale_s: float = 120.0, poll_s: float = 0.05
    ) -> None:
        self.path = Path(path)
        self.timeout_s, self.stale_s, self.poll_s = timeout_s, stale_s, poll_s

    @functools.cached_property
    def token(self) -> str:
        """Who holds the lock when this object takes it (made on first use: a status check needs none)."""
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"

    def try_acquire(self) -> bool:
        """Take the lock if it is free or stale; never blocks."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._break_if_stale():
                    return False
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump(
                    {
                        "token": self.token,
                        "host": socket.gethostname(),
                        "pid": os.getpid(),
                        "time": time.time(),
                    },
                    handle,
                )
            return True
        return False

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self.try_acquire():
            if time.monotonic() > deadline:
                raise LockTimeout(
                    f"{self.path} is held by {self.describe_owner()}; waited {self.timeout_s:.0f} s"
                )
            time.sleep(self.poll_s)

    def refresh(self) -> None:
        """Mark the lock as still in use (call more often than `stale_s`)."""
        os.utime(self.path)

    def release(self) -> None:
        owner = self.owner()
        if owner is not None and owner.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def owner(self) -> dict[str, Any] | None:
        """The lock file's owner record, or None when it is absent, half-written, damaged or foreign."""
        return _read_record(self.path)

    def describe_owner(self) -> str:
        """ "pid P on HOST since TIME", for messages."""
        owner = self.owner()
        if owner is None:
            return "an owner whose record is not readable yet"
        return f"pid {owner['pid']} on {owner['host']} since {time.ctime(owner['time'])}"

    def held_by_live_owner(self) -> bool:
        return self.path.exists() and not self._is_stale()

    def _is_stale(self) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        return self._staleness(age) is not None

    def _staleness(self, age: float) -> str | None:
        """Why a lock file of this age is stale, or None when it is not."""
        owner = self.owner()
        if owner is None:  # an owner still writing its record is not stale; junk after the grace time is
            return (
                f"damaged or foreign (not a lock record after {age:.0f} s)" if age > WRITE_GRACE_S else None
            )
        if owner["host"] == socket.gethostname() and not pid_alive(owner["pid"]):
            return f"stale (its owner, pid {owner['pid']} on this host, is dead)"
        return f"stale (not refreshed for {age:.0f} s)" if age > self.stale_s else None

    def _break_if_stale(self) -> bool:
        judged = self.owner()
        try:
            reason = self._staleness(time.time() - self.path.stat().st_mtime)
        except FileNotFoundError:
            return True  # released meanwhile; try again
        if reason is None:
            return False
        broken = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, broken)
        except FileNotFoundError:
            return True  # someone else broke it first; try again
        taken = _read_record(broken)
        if taken is not None and (judged is None or taken.get("token") != judged.get("token")):
            # Between our check and the rename another process broke the stale lock and took it: give it back.
            try:
                os.link(broken, self.path)
            except FileExistsError:
                pass
        else:
            print(f"comprobust: broke the {reason} lock file {self.path}", file=sys.stderr)
        broken.unlink(missing_ok=True)
        return True

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_record(path: Path) -> dict[str, Any] | None:
    """A lock file's owner record (host, pid, time, token), or None when absent or not such a record."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):  # ValueError: bad JSON or bad UTF-8
        return None
    valid = (
        isinstance(record, dict)
        and isinstance(record.get("host"), str)
        and isinstance(record.get("pid"), int)
        and isinstance(record.get("time"), (int, float))
    )
    return record if valid else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
