"""The environment is pinned whole: requirements.lock lists every installed package, and the check that `make`
runs after installing catches a missing, extra or drifted package."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
check_lock = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_lock)


def test_this_environment_is_exactly_the_lock(capsys):
    assert check_lock.main([str(ROOT / "requirements.lock")]) == 0, capsys.readouterr().err
    locked = check_lock.read_pins(ROOT / "requirements.lock")
    assert {"cloudpickle", "protobuf", "pydantic", "wandb", "torch"} <= set(locked), "transitive pins missing"


def test_every_difference_is_named():
    lock = {"a": "1.0", "b": "2.0", "c": "3.0"}
    env = {"a": ("A", "1.0"), "b": ("b", "2.1"), "d": ("D", "0.1")}
    assert check_lock.differences(lock, env) == [
        "version: b is 2.1, the lock says 2.0",
        "missing: c==3.0 is locked but not installed",
        "extra: D==0.1 is installed but not in the lock",
    ]


def test_requirements_txt_cannot_drift_from_the_lock(tmp_path):
    (tmp_path / "requirements.txt").write_text("# top level\nwandb[sweeps]==0.31.0\nTorch==2.0\n")
    lock = {"wandb": "0.31.0", "torch": "2.14.1"}
    assert check_lock.top_level_drift(tmp_path / "requirements.txt", lock) == [
        "requirements.txt pins torch==2.0, the lock has 2.14.1"
    ]


def test_a_loose_line_in_the_lock_is_refused(tmp_path):
    (tmp_path / "requirements.lock").write_text("numpy>=1\n")
    try:
        check_lock.read_pins(tmp_path / "requirements.lock")
    except SystemExit as stop:
        assert "requirements.lock:1: 'numpy>=1' is not an exact pin" in str(stop)
    else:
        raise AssertionError("a range was accepted as a pin")
