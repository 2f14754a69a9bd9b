"""The platform's W&B online path end to end, against the project's own W&B-compatible server on 127.0.0.1
(tests/wandb_server): `launch.py` in subprocesses with the real wandb client, judged by what the SERVER
recorded. Run alone with `.venv/bin/python -m pytest -m online`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from wandb_server.fixture import LocalWandb
from wandb_server.server import WandbServer

from comprobust.config import load_experiment
from comprobust.planning import plan
from comprobust.runs import method_label

pytestmark = pytest.mark.online
REPO = Path(__file__).resolve().parents[1]
PROJECT = "comprobust-online"


def _experiment_file(
    folder: Path,
    stages: dict[str, Any],
    systems: dict[str, Any] | None = None,
    max_epochs: int = 1,
    train_per_class: int = 6,
) -> Path:
    """A small mnist5k experiment writing under `folder` (the demo's shape at a test budget)."""
    body = {
        "name": "online",
        "dataset": {
            "name": "mnist5k",
            "root": str(folder / "data"),
            "split_sizes": {"train": train_per_class, "valid": 2, "test": 2},
        },
        "architecture": "small",
        "seeds": [7],
        "output_root": str(folder / "outputs"),
        "compositions": ["Identity", "Invert", "Rotate90", "Rotate90-Invert"],
        "wandb": {"project": PROJECT, "mode": "auto"},
        "cluster": {"executor": "inline"},
        "training": {"max_epochs": max_epochs, "batch_size": 16},
        "stages": stages,
        "evaluation": {"batch_size": 50, "systems": systems or {}},
    }
    if not systems:
        del body["evaluation"]
    path = folder / "online.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def _launch(env: dict[str, str], *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(REPO / "launch.py"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return result


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout + result.stderr


@pytest.fixture(scope="session")
def demo_online(tmp_path_factory) -> Iterator[tuple[LocalWandb, Path, str]]:
    """The demo's pipeline (ERM, backbone + modules, auto-encoders + image-space classifier, three evaluated
    systems) run once online through `launch.py run`, shared by the tests marked xdist_group("online-demo").
    It has a server of its own: the other tests reset the session's server between them."""
    own = WandbServer().start()
    folder = tmp_path_factory.mktemp("online-demo")
    home = folder / "wandb-home"
    home.mkdir()
    server = LocalWandb(own, home)
    experiment = _experiment_file(
        folder,
        {
            "erm": {"method": "erm", "lr": 0.01},
            "backbone": {"method": "backbone", "lr": 0.01},
            "modules": {
                "method": "modules",
                "backbone": "backbone",
                "lr": 0.01,
                "search_epochs": 1,
                "levels": [0],
            },
            "autoencoders": {"method": "autoencoders", "lr": 0.01},
        },
        systems={
            "ERM": {"classifier": "erm"},
            "Modular": {"backbone": "backbone", "modules": "modules"},
            "ImgSpace": {"autoencoders": "autoencoders", "classifier": "backbone"},
        },
    )
    env = server.subprocess_env()
    out = _ok(_launch(env, "run", str(experiment), "--no-report"))
    yield server, experiment, out
    own.stop()


@pytest.mark.xdist_group("online-demo")  # one worker runs the shared pipeline once
def test_every_planned_run_is_on_the_server_once_with_its_lineage(demo_online) -> None:
    server, experiment_path, out = demo_online
    experiment = load_experiment(experiment_path)
    planned = plan(experiment)
    state = server.state
    runs = {run.name: run for run in state.runs(project=PROJECT)}
    assert sorted(runs) == sorted(p.run_id for p in planned), "the server's runs are not the plan's"
    for p in planned:
        run = runs[p.run_id]
        assert run.state == "finished" and run.group == "online"
        assert run.job_type == p.job_type and set(p.tags) <= set(run.tags)
        assert run.config["hash"] == p.config["hash"] and method_label(run.config) == p.group
        assert not any(str(v).startswith(str(experiment_path.parent)) for v in _leaves(run.config)), (
            "an absolute path reached the dashboard"
        )
        if p.kind == "train":
            epochs = [row["epoch"] for row in state.history(run.id) if "best_epoch" in row]
            assert epochs == list(range(experiment.stages[p.stage].params.get("max_epochs", 1))), run.name
            model = state.artifact(p.artifact, "best", project=PROJECT)
            assert model.state == "COMMITTED" and {"latest", "best"} <= set(state.artifact_aliases(model))
        else:  # the server's lineage graph: exactly the plan's inputs, through use_artifact
            used = state.used_artifacts(run.id)
            expected = sorted(f"model-{rid}" for ids in p.inputs.values() for rid in ids)
            assert sorted(v.collection for v in used) == expected, run.name
            assert all("best" in state.artifact_aliases(v) for v in used), (
                "an input was not the :best version"
            )
    assert f"{server.url}/" in out, "no run URL was printed"


@pytest.mark.xdist_group("online-demo")  # one worker runs the shared pipeline once
def test_a_second_launch_creates_nothing(demo_online) -> None:
    server, experiment_path, _ = demo_online
    before = (len(server.state.runs(project=PROJECT)), len(list(server.state.iter_versions())))
    out = _ok(_launch(server.subprocess_env(), "run", str(experiment_path), "--no-report"))
    assert "already done" in out
    assert (len(server.state.runs(project=PROJECT)), len(list(server.state.iter_versions()))) == before


@pytest.mark.xdist_group("online-demo")  # one worker runs the shared pipeline once
def test_report_from_the_server_equals_the_report_from_the_local_logs(demo_online, monkeypatch) -> None:
    from comprobust.results import ApiRunStore, OfflineRunStore

    server, experiment_path, _ = demo_online
    experiment = load_experiment(experiment_path)
    server.monkeypatch_env(monkeypatch)
    online = ApiRunStore(PROJECT, entity=server.entity, group="online")
    local = OfflineRunStore(experiment.output_dir / "wandb", group="online")

    def canonical(frame):
        columns = sorted(c for c in frame.columns if c not in ("location", "created"))
        return frame[columns].sort_values(columns[:4]).reset_index(drop=True)

    for name in ("results", "runs", "invariance"):
        a, b = getattr(online, name)(), getattr(local, name)()
        assert len(a) > 0 and len(b) > 0, (name, len(a), len(b))
        import pandas.testing

        pandas.testing.assert_frame_equal(canonical(a), canonical(b), check_dtype=False, check_like=True)
    out = _ok(
        _launch(server.subprocess_env(), "report", str(experiment_path), "--source", "wandb", "--no-wandb")
    )
    assert "reading runs from W&B" in out


@pytest.mark.xdist_group("online-demo")  # one worker runs the shared pipeline once
def test_report_source_offline_never_touches_the_server(demo_online) -> None:
    server, experiment_path, _ = demo_online
    env = {**server.subprocess_env(), "WANDB_BASE_URL": "http://127.0.0.1:9"}  # nothing listens there
    started = time.monotonic()
    out = _ok(_launch(env, "report", str(experiment_path), "--source", "offline", "--no-wandb"))
    assert "reading runs from the local W&B logs" in out and time.monotonic() - started < 120


def test_an_unreachable_server_is_one_line_naming_the_url(tmp_path) -> None:
    experiment = _experiment_file(tmp_path, {"erm": {"method": "erm", "lr": 0.01}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_BASE_URL="http://127.0.0.1:9",
        WANDB_API_KEY="local-" + "ab" * 20,
        WANDB_MODE="online",
        WANDB_CONFIG_DIR=str(tmp_path / "cfg"),
    )
    started = time.monotonic()
    result = _launch(env, "run-stage", str(experiment), "--stage", "erm")
    assert time.monotonic() - started < 60
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert (
        len(lines) == 1 and "http://127.0.0.1:9 does not answer" in lines[0] and "--mode offline" in lines[0]
    )


def test_an_online_sweep_of_a_per_corruption_stage_gives_each_run_its_own_history(
    wandb_server, tmp_path
) -> None:
    """`launch.py sweep` online with a real `wandb agent`: each trial's per-corruption module runs are W&B runs
    of their own, the trial's run holds their mean as the sweep metric, and a relaunch continues the sweep."""
    experiment = _experiment_file(
        tmp_path,
        {
            "backbone": {"method": "backbone", "lr": 0.01},
            "modules": {
                "method": "modules",
                "backbone": "backbone",
                "lr": 0.01,
                "search_epochs": 1,
                "levels": [0],
                "corruptions": ["Invert", "Rotate90"],
            },
        },
    )
    sweep = tmp_path / "modules-sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "online-modules",
                "project": PROJECT,
                "method": "grid",
                "metric": {"name": "val_acc", "goal": "maximize"},
                "parameters": {"lr": {"values": [0.01, 0.05]}},
                "command": [
                    "${env}",
                    "${interpreter}",
                    "launch.py",
                    "run-stage",
                    str(experiment),
                    "--stage",
                    "modules",
                    "${args}",
                ],
            },
            sort_keys=False,
        )
    )
    env = wandb_server.subprocess_env()
    _ok(_launch(env, "run-stage", str(experiment), "--stage", "backbone"))
    first = _ok(_launch(env, "sweep", str(sweep), "--executor", "inline", "--count", "1"))
    assert "created W&B sweep" in first
    second = _ok(_launch(env, "sweep", str(sweep), "--executor", "inline", "--count", "1"))
    assert "continuing W&B sweep" in second

    state = wandb_server.state
    (sweep_id,) = list(state.sweeps)
    trials = [run for run in state.sweep_runs(sweep_id) if run.upserts]
    assert len(trials) == 2 and {run.config["lr"] for run in trials} == {0.01, 0.05}
    modules = [run for run in state.runs(project=PROJECT) if run.job_type == "modules"]
    assert len(modules) == 4, [run.name for run in modules]  # 2 trials x 2 corruptions, none shared
    for trial in trials:
        assert trial.job_type == "sweep-trial" and trial.state == "finished" and not trial.history
        mine = [run for run in modules if run.config["sweep"]["trial"] == trial.name]
        assert sorted(run.name for run in mine) == sorted(trial.summary["stage_runs"])
        values = [run.summary["val_acc"] for run in mine]
        assert trial.summary["val_acc"] == pytest.approx(sum(values) / len(values))
    for run in modules:  # no run received another's history: one row per epoch of its own training
        epochs = [row["epoch"] for row in state.history(run.name) if "best_epoch" in row]
        assert epochs == [0], run.name

    # a new sweep over the same grid: its first trial's module runs finished before, and it still reports
    third = _ok(_launch(env, "sweep", str(sweep), "--executor", "inline", "--count", "1", "--new-sweep"))
    assert "created W&B sweep" in third and "already done" in third
    (new_id,) = set(state.sweeps) - {sweep_id}
    (trial,) = [run for run in state.sweep_runs(new_id) if run.upserts]
    assert trial.state == "finished" and trial.summary["val_acc"] == pytest.approx(
        next(t for t in trials if t.config["lr"] == trial.config["lr"]).summary["val_acc"]
    )
    assert (
        len([run for run in state.runs(project=PROJECT) if run.job_type == "modules"]) == 4
    )  # none re-trained


def test_publish_of_an_offline_sweep_lands_its_runs_and_the_sweep(wandb_server, tmp_path) -> None:
    """An offline sweep run by the local controller (no server), then `launch.py publish`: the runs land with
    their history, and the sweep is created on the server with them as its runs; a second publish adds nothing."""
    experiment = _experiment_file(tmp_path, {"erm": {"method": "erm", "lr": 0.01}}, max_epochs=2)
    sweep = tmp_path / "erm-sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "name": "offline-erm",
                "method": "grid",
                "metric": {"name": "val_acc", "goal": "maximize"},
                "parameters": {"lr": {"values": [0.01, 0.05]}},
                "command": [
                    "${env}",
                    "${interpreter}",
                    "launch.py",
                    "run-stage",
                    str(experiment),
                    "--stage",
                    "erm",
                    "${args}",
                ],
            },
            sort_keys=False,
        )
    )
    env = wandb_server.subprocess_env()
    _ok(_launch(env, "sweep", str(sweep), "--mode", "offline", "--executor", "inline"))
    assert wandb_server.state.runs() == [], "an offline sweep talked to the server"
    out = _ok(_launch(env, "publish", str(experiment), "--backoff", "0"))
    state = wandb_server.state
    (sweep_id,) = list(state.sweeps)
    members = state.sweep_runs(sweep_id)
    assert len(members) == 2 and {run.config["lr"] for run in members} == {0.01, 0.05}, out
    for run in members:
        assert run.state == "finished" and [r["epoch"] for r in run.history if "best_epoch" in r] == [0, 1]
    _ok(_launch(env, "publish", str(experiment), "--backoff", "0"))
    assert list(state.sweeps) == [sweep_id] and len(state.runs()) == 2


def test_kill_9_mid_training_then_resume_keeps_every_epoch_once(wandb_server, tmp_path) -> None:
    experiment = _experiment_file(
        tmp_path, {"erm": {"method": "erm", "lr": 0.01}}, max_epochs=6, train_per_class=80
    )  # epochs of about a second: time to kill one mid-way
    loaded = load_experiment(experiment)
    (run,) = plan(loaded, stages=["erm"])
    env = wandb_server.subprocess_env()
    process = subprocess.Popen(
        [sys.executable, str(REPO / "launch.py"), "run-stage", str(experiment), "--stage", "erm"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    checkpoint = loaded.output_dir / "runs" / run.run_id
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and _epochs_checkpointed(checkpoint) < 2 and process.poll() is None:
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert 2 <= _epochs_checkpointed(checkpoint) < 6, "the stage was not killed mid-way"
    _ok(_launch(wandb_server.subprocess_env(), "run-stage", str(experiment), "--stage", "erm"))
    epochs = [row["epoch"] for row in wandb_server.state.history(run.run_id) if "best_epoch" in row]
    assert epochs == list(range(6)), f"the server's history has epochs {epochs}"


def _epochs_checkpointed(folder: Path) -> int:
    import torch

    last = next(folder.rglob("last.pt"), None)
    if last is None:
        return 0
    try:
        return int(torch.load(last, weights_only=False)["epoch"]) + 1
    except Exception:  # being replaced right now
        return 0


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value
