"""The benchmark harness, the README table generated from its results file, and the paired benchmarks run at a
toy size (so that their pairing code cannot rot between `make bench` runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
sys.path.insert(0, str(REPO / "scripts"))

import bench_table  # noqa: E402
import harness  # noqa: E402


def test_interleave_alternates_the_order_of_every_round() -> None:
    calls: list[str] = []
    timings = harness.interleave({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    assert [len(timings.wall[n]) for n in "ab"] == [3, 3] and [len(timings.cpu[n]) for n in "ab"] == [3, 3]
    assert all(s >= 0 for s in timings.wall["a"] + timings.cpu["b"])


def test_spread_ratio_and_goals() -> None:
    assert harness.spread([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3}
    assert harness.ratio([2.0, 6.0], [1.0, 2.0])["median"] == 2.5
    assert harness.Goal("g", 150.0, ">=", 150.0).met and not harness.Goal("g", 149.9, ">=", 150.0).met
    assert harness.Goal("g", 2.0, "<=", 2.0).met and not harness.Goal("g", 0.5, "<", 0.5).met
    assert harness.Goal("speed", 90.0, ">=", 150.0, "x").line() == "speed: 90x (goal >= 150x): NOT met"


def _section(value: float) -> dict:
    environment = {
        "threads": 1,
        "load_before": [1.0, 2.0, 3.0],
        **{
            k: "v"
            for k in (
                "python",
                "torch",
                "numpy",
                "scipy",
                "scikit-image",
                "opencv",
                "machine",
                "commit",
                "date",
            )
        },
        "cpus": 2,
    }
    return {
        "environment": environment,
        "rows": [{"benchmark": "b", "baseline": "base", "measured": f"{value}x", "goal": ">= 2x"}],
        "goals": [harness.Goal("thing: speed", value, ">=", 2.0, "x")],
    }


def test_record_merges_sections_into_one_results_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(harness, "RESULTS", tmp_path / "results.json")
    for name, value in (("corruptions", 3.0), ("training", 1.0), ("corruptions", 4.0)):
        section = _section(value)
        harness.record(name, section["environment"], section["rows"], section["goals"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results) == {"corruptions", "training"}
    assert results["corruptions"]["goals"][0]["value"] == 4.0 and results["corruptions"]["goals"][0]["met"]
    assert not results["training"]["goals"][0]["met"]
    assert len(results["training"]["environment"]["load_after"]) == 3
    assert not list(tmp_path.glob(".*tmp"))


def test_table_is_rewritten_between_its_markers_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(harness, "RESULTS", tmp_path / "results.json")
    for name, value in (("training", 1.0), ("corruptions", 3.0)):
        section = _section(value)
        harness.record(name, section["environment"], section["rows"], section["goals"])
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{bench_table.START}\nstale table\n{bench_table.END}\noutro\n")
    args = ["--results", str(tmp_path / "results.json"), "--readme", str(readme)]
    assert bench_table.main([*args, "--check"]) == 1
    capsys.readouterr()
    assert bench_table.main(args) == 0
    assert capsys.readouterr().out.splitlines() == [
        "met      thing: speed: 3x (goal >= 2x)",
        "NOT met  thing: speed: 1x (goal >= 2x)",
    ]
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "stale table" not in text
    assert text.index("| 3.0x |") < text.index(
        "| 1.0x |"
    )  # corruptions before training, whatever the file order
    assert "| **no** |" in text and "- NOT met  thing: speed: 1x (goal >= 2x)" in text
    assert bench_table.main([*args, "--check"]) == 0


def test_readme_table_is_generated_from_the_committed_results() -> None:
    """The README's performance figures are the results file's, never hand-copied."""
    assert bench_table.main(["--check"]) == 0


@pytest.mark.parametrize(
    "script, args, goals",
    [
        ("training.py", ["--runs", "2", "--epochs", "2"], 2),
        ("evaluation.py", ["--images", "10", "--shards", "2", "--repeats", "1", "--arch", "small"], 1),
    ],
)
def test_paired_benchmarks_run_and_record_every_pair(
    tmp_path: Path, script: str, args: list[str], goals: int
) -> None:
    results = tmp_path / "results.json"
    env = {**os.environ, "COMPROBUST_BENCH_RESULTS": str(results), "WANDB_MODE": "offline"}
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    [section] = json.loads(results.read_text()).values()
    assert len(section["goals"]) == goals and all(
        g["value"] == g["value"] for g in section["goals"]
    )  # not NaN
    ratio = section["figures"].get("stage_over_bare") or section["figures"]["ratio"]
    assert ratio["n"] == 2  # training: 2 runs x (2 - 1) epoch pairs; evaluation: 1 repeat x 2 shards


class RecordingBareLoop:
    """A bare loop for the training benchmark whose steps record themselves in `events` and take 5 ms each."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.model = SimpleNamespace(train=lambda: events.append("bare train mode"), eval=lambda: None)
        self.scheduler = SimpleNamespace(step=lambda: events.append("bare schedule"))

    def train_step(self, x: int, y: int) -> None:
        self.events.append(f"bare train {x}")
        time.sleep(0.005)

    def valid_step(self, x: int, y: int) -> None:
        self.events.append(f"bare valid {x}")
        time.sleep(0.005)


@pytest.mark.parametrize("first", [False, True])
def test_the_training_benchmark_steps_the_bare_loop_beside_every_batch_in_either_order(first: bool) -> None:
    """The training benchmark's bare loop takes one timed step on each batch the stage takes, right after the
    stage's step or right before it, and each epoch's bare steps are summed into that epoch alone."""
    import training as training_benchmark

    events: list[str] = []
    inner = training_benchmark.InnerLoop(RecordingBareLoop(events), [(1, 0), (2, 0)], [(3, 0)], first)
    for _ in range(2):
        for x, _ in inner.train_batches():
            events.append(f"stage train {x}")
        for x, _ in inner.valid_batches():
            events.append(f"stage valid {x}")
    pairs = [
        ("stage train 1", "bare train 1"),
        ("stage train 2", "bare train 2"),
        ("stage valid 3", "bare valid 3"),
    ]
    steps = [event for pair in pairs for event in (pair[::-1] if first else pair)]
    assert events == ["bare train mode", *steps, "bare schedule"] * 2
    assert len(inner.epochs) == 2 and all(e.wall >= 0.015 for e in inner.epochs)  # three 5-ms steps each


def test_each_row_shows_the_verdict_of_its_own_goals() -> None:
    """A section with several rows (grey and colour, EMNIST and CIFAR) judges each row by the goals that name
    it; a goal without a qualifier belongs to the first row, and a section without goals shows a dash."""

    def row(text: str) -> dict[str, str]:
        return {"benchmark": text, "baseline": "b", "measured": "m", "goal": "g"}

    def goal(name: str, met: bool) -> dict:
        return {"name": name, "value": 1.0, "op": ">=", "target": 1.0, "unit": "x", "met": met}

    section = {
        "rows": [row("on 2,000 grey 28x28 images"), row("on 500 colour 32x32 images"), row("a second view")],
        "goals": [
            goal("corruptions grey 28x28: speed", True),
            goal("corruptions colour 32x32: speed", False),
            goal("corruptions: overall", True),
        ],
    }
    grey, colour, other = bench_table._goals_by_row("corruptions", section)
    assert [g["name"] for g in grey] == ["corruptions grey 28x28: speed", "corruptions: overall"]
    assert [g["name"] for g in colour] == ["corruptions colour 32x32: speed"] and other == []
    environment = {
        "threads": 1,
        "load_before": [1, 1, 1],
        "load_after": [1, 1, 1],
        "date": "d",
        "commit": "c",
    }
    environment |= {
        k: "v" for k in ("cpus", "machine", "python", "torch", "numpy", "scipy", "scikit-image", "opencv")
    }
    results = {
        "corruptions": {**section, "environment": environment},
        "sweeps": {"rows": [row("no goal here")], "goals": [], "environment": environment},
    }
    cells = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in bench_table.render(results).splitlines()
        if line.startswith("| ") and "(`make bench`)" not in line
    ]
    verdicts = {row[0]: row[-1] for row in cells}
    assert verdicts == {
        "on 2,000 grey 28x28 images": "yes",
        "on 500 colour 32x32 images": "**no**",
        "a second view": "",
        "no goal here": "–",
    }
