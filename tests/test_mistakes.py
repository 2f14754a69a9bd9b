"""The mistake zoo: bad input a new user really types, each answered by one line, the right exit status, before
any work starts and without touching finished work; and damaged state that never traps the user.

Each `tests/mistakes/<case>.yaml` starts with comment lines naming its category, the command (`{case}` is the
file, `base.yaml` a valid experiment), the exit status and text the one-line error must contain.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from pathlib import Path

import pytest
from helpers.experiments import sweep_command

from comprobust.cli import describe_failure, main
from comprobust.errors import UserError

CASES = sorted((Path(__file__).parent / "mistakes").glob("*.yaml"))
BASE = next(c for c in CASES if c.stem == "cli-set-text").read_text()  # a valid experiment (plus comments)
FINISHED = {
    "outputs/zoo/runs/erm-s0-finished/done.json": '{"metrics": {"val_acc": 0.5}}',
    "outputs/zoo/runs/erm-s0-finished/model.pt": "weights",
    "afile": "not a folder",
}


def header(case: Path) -> dict[str, str]:
    fields = {}
    for line in case.read_text().splitlines():
        if not line.startswith("# "):
            break
        key, _, value = line[2:].partition(": ")
        fields[key] = value
    return fields


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module", autouse=True)
def imported() -> None:
    """Import the heavy modules (torch) once, so each case's time is the command's own."""
    import comprobust.models  # noqa: F401
    import comprobust.pipeline  # noqa: F401


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding base.yaml and some finished work, as the current directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "base.yaml").write_text(BASE)
    for name, text in FINISHED.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def one_line_error(capsys: pytest.CaptureFixture, argv: list[str]) -> tuple[int, str]:
    status = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return status, lines[0]


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_mistake_gets_one_line_before_any_work(
    case: Path, workdir: Path, capsys: pytest.CaptureFixture
) -> None:
    spec = header(case)
    (workdir / "case.yaml").write_text(case.read_text())
    before = snapshot(workdir)
    status, line = one_line_error(capsys, shlex.split(spec["command"].replace("{case}", "case.yaml")))
    assert spec["error"] in line
    assert status == int(spec["exit"])
    assert snapshot(workdir) == before, "finished work (or anything else) was changed"
    assert not (workdir / "outputs" / "zoo" / "wandb").exists()  # no run started (and no timing: loads vary)


def test_the_zoo_is_big_and_categorised() -> None:
    categories = {header(case)["category"] for case in CASES}
    assert (
        len(CASES) >= 40
        and {"names", "keys", "duplicates", "numbers", "folders", "command line", "sweeps"} <= categories
    )


# ------------------------------------------------------------------------------- twins: one reading everywhere


def test_overrides_read_the_same_in_run_stage_and_sweeps(workdir: Path) -> None:
    from comprobust.config import load_experiment
    from comprobust.sweeps.validate import validate_sweep
    from comprobust.validation import parse_overrides

    assert parse_overrides(["lr=1e-05", "--weight=1E3", "patience=null", "lr2=nan"]) == {
        "lr": 1e-05,
        "weight": 1000.0,
        "patience": None,
        "lr2": "nan",
    }
    experiment = load_experiment("base.yaml").with_stage_params("erm", parse_overrides(["lr=1e-05"]))
    assert experiment.stages["erm"].params["lr"] == 1e-05
    sweep = {
        "method": "grid",
        "metric": {"name": "val_acc", "goal": "maximize"},
        "parameters": {"max_epochs": {"value": 1}},
        "command": sweep_command("base.yaml", "modules", "--corruption", "CO", "--set", "lr=1e-05"),
    }
    target = validate_sweep(sweep, where="s.yaml").target
    assert target.overrides == {"lr": 1e-05} and target.corruption == "CO"


def test_a_corruption_is_matched_by_name_or_abbreviation_alike() -> None:
    from comprobust.config import load_experiment
    from comprobust.planning import plan, select_corruption

    experiment = load_experiment(Path(__file__).parent / "mistakes" / "cli-set-text.yaml")
    runs = plan(experiment, stages=["modules"])
    assert select_corruption(runs, "CO") == select_corruption(runs, "Contrast") == runs


# ------------------------------------------------------------------------------------ failures, one line each


def test_failures_map_to_one_line_and_the_right_status() -> None:
    from comprobust.errors import WorkFailed

    assert describe_failure(UserError("x.yaml: lr: bad\nmore")) == (2, "x.yaml: lr: bad")
    status, line = describe_failure(PermissionError(13, "Permission denied", "/data/out/runs"))
    assert status == 2 and line.startswith("cannot use /data/out/runs: Permission denied; make it writable")
    assert describe_failure(WorkFailed("run r failed: boom; traceback in f\ntail")) == (
        1,
        "run r failed: boom; traceback in f",
    )
    status, line = describe_failure(RuntimeError("odd"))
    assert status == 1 and "rerun with --debug" in line


def test_debug_shows_the_traceback(workdir: Path) -> None:
    with pytest.raises(UserError):
        main(["run", "nope.yaml", "--debug"])


def test_unwritable_output_folder_is_refused_before_work(workdir: Path, capsys, monkeypatch) -> None:
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode, **kw: False if mode & os.W_OK else real_access(path, mode)
    )
    before = snapshot(workdir)
    status, line = one_line_error(capsys, ["run", "base.yaml", "--dry-run"])
    assert status == 2 and "cannot write to outputs/zoo (permission denied)" in line
    assert main(["status", "base.yaml"]) == 0  # status only reads
    (workdir / "s.yaml").write_text(
        "method: grid\nmetric: {name: val_acc, goal: maximize}\nparameters: {lr: {values: [0.1]}}\n"
        "command: ['${env}', '${interpreter}', launch.py, run-stage, base.yaml, --stage, erm, '${args}']\n"
    )
    before = snapshot(workdir)
    status, line = one_line_error(capsys, ["sweep", "s.yaml", "--mode", "offline", "--executor", "inline"])
    assert status == 2 and "cannot write to outputs/zoo (permission denied)" in line
    assert snapshot(workdir) == before


def test_a_failed_run_under_the_inline_executor_is_one_line(workdir: Path, capsys, monkeypatch) -> None:
    import comprobust.pipeline as pipeline

    def explode(experiment, run, mode=None):
        raise RuntimeError("CUDA error: out of memory\nsecond line")

    monkeypatch.setattr(pipeline, "execute", explode)
    status, line = one_line_error(capsys, ["run", "base.yaml"])
    assert status == 1
    assert (
        line.startswith("error: run erm-s0-")
        and "failed: RuntimeError: CUDA error: out of memory; traceback in" in line
        and "relaunch `python launch.py run base.yaml`" in line
    )


# ------------------------------------------------------------------------------------ state that cannot trap


@pytest.mark.parametrize("content", [b"garbage\n", b"42", b'{"pid": null, "host": null}', b"\xff\xfe"])
def test_a_corrupt_or_foreign_lock_is_reported_and_broken(tmp_path: Path, content: bytes, capsys) -> None:
    from comprobust.locking import WRITE_GRACE_S, FileLock

    path = tmp_path / "running.lock"
    path.write_bytes(content)
    lock = FileLock(path, timeout_s=1.0, stale_s=600.0)
    assert not lock.try_acquire(), "a fresh record may still be being written"
    old = time.time() - WRITE_GRACE_S - 1
    os.utime(path, (old, old))
    assert not lock.held_by_live_owner()
    started = time.monotonic()
    with lock:
        assert lock.owner()["pid"] == os.getpid()
    assert time.monotonic() - started < 1
    assert "broke the damaged or foreign" in capsys.readouterr().err


def test_a_live_lock_is_never_broken(tmp_path: Path) -> None:
    from comprobust.locking import FileLock

    holder = FileLock(tmp_path / "l", stale_s=600.0)
    assert holder.try_acquire()
    old = time.time() - 60
    os.utime(holder.path, (old, old))
    assert not FileLock(tmp_path / "l", stale_s=600.0).try_acquire()
    holder.release()


def _planned(experiment_path: str = "base.yaml"):
    from comprobust.config import load_experiment
    from comprobust.planning import plan

    experiment = load_experiment(experiment_path)
    return experiment, {run.group: run for run in plan(experiment)}


def test_a_damaged_done_json_names_the_command_that_reruns_it(workdir: Path, capsys) -> None:
    experiment, runs = _planned()
    folder = experiment.output_dir / "runs" / runs["erm"].run_id
    folder.mkdir(parents=True)
    (folder / "done.json").write_text('{"metrics": {"val_')
    (folder / "model.pt").write_text("weights")
    command = "python launch.py run-stage base.yaml --stage erm --seed 0 --force"

    assert main(["status", "base.yaml"]) == 1
    out = capsys.readouterr().out
    assert f"damaged  {runs['erm'].run_id}" in out and command in out and "damaged: 1" in out
    status, line = one_line_error(capsys, ["run", "base.yaml"])
    assert status == 2 and line.endswith(
        f"done.json is damaged (JSONDecodeError); redo the run with: {command}"
    )

    from comprobust.run_state import set_aside

    aside = set_aside(experiment, runs["erm"])  # what --force does before running the stage again
    assert sorted(p.name for p in aside.iterdir()) == ["done.json", "model.pt"]
    assert not (folder / "done.json").exists() and (aside / "model.pt").read_text() == "weights"


def test_force_is_refused_while_the_run_is_running(workdir: Path) -> None:
    from comprobust.locking import FileLock
    from comprobust.run_state import set_aside

    experiment, runs = _planned()
    folder = experiment.output_dir / "runs" / runs["erm"].run_id
    folder.mkdir(parents=True)
    (folder / "done.json").write_text("{}")
    with FileLock(folder / "running.lock"):
        with pytest.raises(UserError, match=r"is running \(pid \d+ on .*\); wait for it to end"):
            set_aside(experiment, runs["erm"])
    assert (folder / "done.json").exists()


def test_a_damaged_sweep_journal_is_reported_by_sweep_status(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "sweep"
    folder.mkdir()
    (folder / "sweep.yaml").write_text(
        "method: grid\nmetric: {name: val_acc, goal: maximize}\nparameters: {lr: {values: [0.1, 0.2]}}\n"
    )
    issue = {"op": "issue", "run_id": "r1", "index": 0, "params": {"lr": 0.1}, "time": 1.0}
    (folder / "journal.jsonl").write_text(
        "\n".join(
            [
                json.dumps(issue),
                '{"op": "end", "run_id": "r1", "sta',
                json.dumps({**issue, "run_id": "r2", "index": 1}),
            ]
        )
        + "\n"
    )
    before = (folder / "journal.jsonl").read_bytes()
    status, line = one_line_error(capsys, ["sweep-status", str(folder)])
    assert status == 2 and "journal.jsonl: line 2 is corrupt" in line and "delete that line" in line
    assert (folder / "journal.jsonl").read_bytes() == before


def test_the_results_cache_never_unpickles(tmp_path: Path) -> None:
    import pickle

    from comprobust.results import OfflineRunStore

    marker = tmp_path / "pwned"

    class Planted:
        def __reduce__(self):
            return (marker.write_text, ("code ran",))

    (tmp_path / "wandb").mkdir()
    store = OfflineRunStore(tmp_path / "wandb", tmp_path / "cache")
    cache = store._cache_file()
    cache.parent.mkdir()
    for path in (cache, cache.with_suffix(".pkl")):  # the cache's name, and the old pickle's name
        path.write_bytes(pickle.dumps({"version": 2, "entries": {}, "x": Planted()}))
    assert store.runs().empty
    assert not marker.exists()


# ------------------------------------------------------------------------------- end to end, with real runs

SMALL = (
    BASE.replace("  backbone: {method: backbone, lr: 0.01}\n", "")
    .replace(
        "  modules: {method: modules, backbone: backbone, lr: 0.01, corruptions: [Contrast], levels: [0], "
        "search_epochs: 1}\n",
        "",
    )
    .replace("mode: disabled", "mode: offline")
)


@pytest.mark.slow
def test_a_damaged_model_names_a_command_that_really_reruns_its_stage(workdir: Path, capsys) -> None:
    (workdir / "small.yaml").write_text(SMALL)
    assert main(["run", "small.yaml", "--no-report"]) == 0
    experiment, runs = _planned("small.yaml")
    model = experiment.output_dir / "runs" / runs["erm"].run_id / "model.pt"
    model.write_bytes(model.read_bytes()[:100])  # truncated in place (the W&B artifact is a hard link to it)
    capsys.readouterr()

    status, line = one_line_error(capsys, ["run", "small.yaml", "--rerun", runs["ERM"].run_id, "--no-report"])
    assert status == 2 and "is marked done, so redo it with: python launch.py run-stage small.yaml" in line
    command = shlex.split(line.split("redo it with: ")[1])
    assert command[:3] == ["python", "launch.py", "run-stage"] and command[-1] == "--force"
    assert main(command[2:]) == 0
    assert main(["run", "small.yaml", "--rerun", runs["ERM"].run_id, "--no-report"]) == 0
    assert main(["status", "small.yaml"]) == 0


@pytest.mark.slow
def test_a_failed_job_under_local_processes_is_one_line(workdir: Path, capsys, importable_repo) -> None:
    (workdir / "small.yaml").write_text(
        SMALL.replace("name: mnist5k, root: data", "name: emnist, root: nodata")
    )
    raw = (
        workdir / "nodata" / "EMNIST" / "raw"
    )  # present (so the launch goes ahead) but unreadable in the job
    raw.mkdir(parents=True)
    for part in ("train", "test"):
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            (raw / f"emnist-balanced-{part}-{kind}").write_bytes(b"not an IDX file")
    status, line = one_line_error(capsys, ["run", "small.yaml", "--executor", "local", "--no-report"])
    assert status == 1 and line.startswith("error: run erm-s0-") and "; its log: " in line
    assert "relaunch `python launch.py run small.yaml`" in line


def test_a_dry_run_only_warns_about_missing_dataset_files(workdir: Path, capsys) -> None:
    """Planning on a login node without the data is fine; running is refused before any work."""
    case = Path(__file__).parent / "mistakes" / "dataset-files-missing-run.yaml"
    (workdir / "case.yaml").write_text(case.read_text())
    assert main(["run", "case.yaml", "--dry-run"]) == 0
    assert (
        "warning: case.yaml: dataset: dataset emnist not found under nowhere-emnist"
        in capsys.readouterr().out
    )
