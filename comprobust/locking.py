"""A lock file that works on shared filesystems (NFS, Lustre) where `flock` is unreliable.

The lock is a file created with O_CREAT|O_EXCL (atomic on NFSv3+ and Lustre) holding its owner's host, pid and
start time. A lock is stale when its owner is a dead process on this host, or when it is older than `stale_s`
without a refresh (`touch`) — the owner was killed on another node. A stale lock is broken by renaming it to a
unique name first (atomic), so two processes can never both break and take the same lock.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any


class LockTimeout(TimeoutError):
    """The lock stayed held by a live owner for longer than the caller wanted to wait."""


class FileLock:
    """`with FileLock(path): ...` — exclusive across processes and hosts sharing the filesystem."""

    def __init__(self, path: str | os.PathLike, timeout_s: float = 60.0, stale_s: float = 120.0,
                 poll_s: float = 0.05) -> None:
        self.path = Path(path)
        self.timeout_s, self.stale_s, self.poll_s = timeout_s, stale_s, poll_s
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"

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
                json.dump({"token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
                           "time": time.time()}, handle)
            return True
        return False

    def acquire(self) -> None:
        deadline = time.monotonic() + self.timeout_s
        while not self.try_acquire():
            if time.monotonic() > deadline:
                owner = self.owner() or {}
                raise LockTimeout(f"{self.path} is held by pid {owner.get('pid')} on {owner.get('host')} since "
                                  f"{time.ctime(owner.get('time', 0))}; waited {self.timeout_s:.0f} s")
            time.sleep(self.poll_s)

    def refresh(self) -> None:
        """Mark the lock as still in use (call more often than `stale_s`)."""
        os.utime(self.path)

    def release(self) -> None:
        owner = self.owner()
        if owner is not None and owner.get("token") == self.token:
            self.path.unlink(missing_ok=True)

    def owner(self) -> dict[str, Any] | None:
        """The lock file's content, or None when it is absent or half-written."""
        try:
            return json.loads(self.path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def held_by_live_owner(self) -> bool:
        return self.path.exists() and not self._is_stale()

    def _is_stale(self) -> bool:
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        owner = self.owner()
        if owner is None:
            return age > max(self.stale_s, 5.0)  # an owner still writing its record is not stale
        if owner.get("host") == socket.gethostname() and not pid_alive(int(owner.get("pid", -1))):
            return True
        return age > self.stale_s

    def _break_if_stale(self) -> bool:
        judged = self.owner()
        if not self._is_stale():
            return False
        broken = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, broken)
        except FileNotFoundError:
            return True  # someone else broke it first; try again
        try:
            taken = json.loads(broken.read_text())
        except (OSError, json.JSONDecodeError):
            taken = None
        if judged is not None and taken is not None and taken.get("token") != judged.get("token"):
            # Between our check and the rename another process broke the stale lock and took it: give it back.
            try:
                os.link(broken, self.path)
            except FileExistsError:
                pass
        broken.unlink(missing_ok=True)
        return True

    def __enter__(self) -> "FileLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


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
