"""The offline sweep store: append-only journal under an O_EXCL lock file, stale-lock recovery, heartbeats."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path

import pytest

from comprobust.locking import pid_alive
from comprobust.sweeps.store import FINISHED, HOST, RUNNING, StoreError, SweepStore

FORK = multiprocessing.get_context("fork")


def _issue(store: SweepStore, run_id: str, index: int, **extra) -> None:
    store.append(
        {
            "op": "issue",
            "run_id": run_id,
            "index": index,
            "params": {"a": index},
            "agent": "t",
            "host": HOST,
            "pid": os.getpid(),
            **extra,
        }
    )


def test_journal_replays_into_the_same_state(tmp_path: Path) -> None:
    store = SweepStore(tmp_path)
    with store.transaction() as s:
        _issue(s, "r0", 0)
        _issue(s, "r1", 1)
    with store.transaction() as s:
        s.append({"op": "end", "run_id": "r0", "attempt": 1, "state": FINISHED, "summary": {"val_acc": 0.5}})
        s.append({"op": "end", "run_id": "r0", "attempt": 1, "state": "failed"})  # a second end is ignored
    fresh = SweepStore(tmp_path)
    fresh.refresh()
    assert [(r.run_id, r.state) for r in fresh.runs.values()] == [("r0", FINISHED), ("r1", RUNNING)]
    assert fresh.runs["r0"].summary == {"val_acc": 0.5}
    assert len((tmp_path / "journal.jsonl").read_text().splitlines()) == 4
    assert not (tmp_path / "journal.lock").exists()  # released


def test_interrupted_append_is_ignored_by_readers_and_cut_by_the_next_writer(tmp_path: Path) -> None:
    store = SweepStore(tmp_path)
    with store.transaction() as s:
        _issue(s, "r0", 0)
    with open(tmp_path / "journal.jsonl", "ab") as handle:  # a writer killed mid-line
        handle.write(b'{"op": "issue", "run_id": "r1", "ind')
    reader = SweepStore(tmp_path)
    reader.refresh()
    assert list(reader.runs) == ["r0"]
    with reader.transaction() as s:
        _issue(s, "r1", 1)
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert [json.loads(line)["run_id"] for line in lines] == ["r0", "r1"]


def test_a_corrupt_complete_line_is_reported_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "journal.jsonl").write_text(
        '{"op": "issue", "run_id": "r0", "index": 0, "params": {}}\nnot json\n'
    )
    with pytest.raises(StoreError, match=r"journal.jsonl: line 2 is corrupt"):
        with SweepStore(tmp_path).transaction():
            pass


def _hold_lock_forever(folder: str, ready: str) -> None:
    with SweepStore(folder).transaction():
        Path(ready).touch()
        time.sleep(600)


def test_lock_of_a_killed_agent_is_recovered_at_once_on_the_same_host(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    holder = FORK.Process(target=_hold_lock_forever, args=(str(tmp_path), str(ready)))
    holder.start()
    while not ready.exists():
        time.sleep(0.01)
    owner = json.loads((tmp_path / "journal.lock").read_text())
    assert owner["pid"] == holder.pid and owner["host"] == HOST
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    start = time.monotonic()
    with SweepStore(tmp_path, lock_timeout_s=5, lock_stale_s=300).transaction() as s:
        _issue(s, "r0", 0)
    assert time.monotonic() - start < 2  # dead pid on this host: not waiting for lock_stale_s


def test_lock_from_another_node_is_broken_only_once_stale(tmp_path: Path) -> None:
    lock = tmp_path / "journal.lock"
    lock.write_text(json.dumps({"token": "x", "host": "some-other-node", "pid": 1, "time": time.time()}))
    with pytest.raises(StoreError, match=r"held by pid 1 on some-other-node.*delete .*journal.lock"):
        with SweepStore(tmp_path, lock_timeout_s=0.3, lock_stale_s=60).transaction():
            pass
    old = time.time() - 120
    os.utime(lock, (old, old))  # its owner stopped refreshing it two minutes ago: killed on that node
    with SweepStore(tmp_path, lock_timeout_s=2, lock_stale_s=60).transaction() as s:
        _issue(s, "r0", 0)
    assert not lock.exists()
    assert not list(tmp_path.glob("journal.lock.stale-*"))


def _issue_many(folder: str, n: int) -> None:
    store = SweepStore(folder, lock_poll_s=0.001)
    for _ in range(n):
        with store.transaction() as s:
            index = len(s.runs)  # read-modify-append: loses updates unless the lock excludes the others
            _issue(s, f"r{index}", index)


def test_concurrent_writers_never_interleave(tmp_path: Path) -> None:
    workers = [FORK.Process(target=_issue_many, args=(str(tmp_path), 25)) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    store = SweepStore(tmp_path)
    store.refresh()
    assert sorted(r.index for r in store.runs.values()) == list(range(200))
    assert len((tmp_path / "journal.jsonl").read_text().splitlines()) == 200


def test_heartbeats_decide_whether_a_running_run_crashed(tmp_path: Path) -> None:
    store = SweepStore(tmp_path)
    dead = FORK.Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    assert not pid_alive(dead.pid)
    with store.transaction() as s:
        _issue(s, "here-alive", 0)
        _issue(s, "here-dead", 1, pid=dead.pid)
        _issue(s, "elsewhere", 2, host="some-other-node", pid=1)
    runs = store.runs
    assert not store.is_stale(runs["here-alive"], stale_s=60)
    assert store.is_stale(runs["here-dead"], stale_s=60)  # dead agent process on this host
    assert not store.is_stale(runs["elsewhere"], stale_s=60)  # just issued on another node
    assert store.is_stale(runs["elsewhere"], stale_s=60, now=time.time() + 61)  # no heartbeat for 61 s
    # a heartbeat written on that node keeps it alive
    (tmp_path / "heartbeats").mkdir()
    (tmp_path / "heartbeats" / "elsewhere.1.json").write_text(
        json.dumps({"host": "some-other-node", "pid": 1, "time": time.time() + 50})
    )
    assert not store.is_stale(runs["elsewhere"], stale_s=60, now=time.time() + 61)
    store.write_heartbeat("here-alive", 1, "t")
    assert store.read_heartbeat("here-alive", 1)["pid"] == os.getpid()
