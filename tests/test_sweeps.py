"""Sweeps: validation of W&B sweep files, the offline controller (grid/random/bayes, run_cap, hyperband), agents
running concurrently and crashing, the W&B agent contract, the CLI, and the shipped sweeps."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers.experiments import sweep_command

from comprobust.errors import UserError
from comprobust.sweeps.agent import run_agent
from comprobust.sweeps.controller import Agent, SweepController
from comprobust.sweeps.engine import preview, sweep_id_for
from comprobust.sweeps.folder import create_sweep
from comprobust.sweeps.online import wandb_agent_command
from comprobust.sweeps.status import status_table
from comprobust.sweeps.store import FINISHED, RUNNING, STOPPED
from comprobust.sweeps.validate import load_sweep, validate_sweep

REPO = Path(__file__).resolve().parents[1]
FORK = multiprocessing.get_context("fork")
STAGE_COMMAND = sweep_command()
# A trivial "training" command: records the agent contract it sees, then exits.
RECORD = """
import json, os, sys, pathlib
out = pathlib.Path(os.environ["OUT_DIR"])
keys = ("WANDB_SWEEP_ID", "COMPROBUST_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH", "WANDB_PROJECT", "WANDB_MODE")
(out / f"{os.environ['WANDB_RUN_ID']}-{os.getpid()}.json").write_text(json.dumps({
    "argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keys},
    "param_file": open(os.environ["WANDB_SWEEP_PARAM_PATH"]).read()}))
"""


def _sweep(
    tmp_path: Path,
    parameters: dict,
    method: str = "grid",
    script: str = RECORD,
    sweep_id: str = "testswp",
    name: str = "sweep",
    **extra,
) -> Path:
    config = {
        "method": method,
        "parameters": parameters,
        "command": ["${env}", "${interpreter}", "-c", script, "${args}"],
        **extra,
    }
    return create_sweep(config, tmp_path / name, sweep_id, {"workdir": str(tmp_path), "project": "tests"})


@pytest.fixture(autouse=True)
def _out_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("OUT_DIR", str(out))
    return out


def _records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


# ------------------------------------------------------------------------------------------- validation


def _config(**changes) -> dict:
    config = {
        "method": "grid",
        "metric": {"name": "val_acc", "goal": "maximize"},
        "parameters": {"lr": {"values": [0.01, 0.1]}},
        "command": STAGE_COMMAND,
    }
    config.update(changes)
    return config


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"method": "grdi"}, r"s\.yaml: invalid W&B sweep config at method: 'grdi' is not one of"),
        ({"parameterz": {}}, r"s\.yaml: unknown key 'parameterz'; did you mean 'parameters'\?"),
        (
            {"parameters": {"lr": {"distribution": "log_unifrom_values", "min": 0.1, "max": 1}}},
            r"s\.yaml: parameters\.lr\.distribution: unknown distribution 'log_unifrom_values'; did you mean "
            r"'log_uniform_values'\?",
        ),
        (
            {"parameters": {"lr": {"distribution": "log_uniform_values", "min": 0.1}}},
            r"s\.yaml: parameters\.lr: 'max' is a required property",
        ),
        ({"method": "bayes", "metric": None}, r"s\.yaml: bayes needs a metric: add metric: \{name: val_acc"),
        (
            {"parameters": {"lr": {"distribution": "uniform", "min": 0.1, "max": 1.0}}},
            r"s\.yaml: the W&B sweep engine rejects this config: Parameter lr is a disallowed type with grid search",
        ),
        ({"early_terminate": {"type": "hyperband"}}, r"s\.yaml: early_terminate: hyperband needs min_iter"),
        ({"run_cap": -1}, r"s\.yaml: invalid W&B sweep config at run_cap"),
        (
            {"metric": {"name": "val_accuracy", "goal": "maximize"}},
            r"s\.yaml: metric\.name 'val_accuracy' is not reported by stage 'erm' \(erm\); did you mean 'val_acc'\?",
        ),
        ({"command": ["python", "train.py", "${args}"]}, r"s\.yaml: command must call `launch\.py run-stage"),
        ({"command": STAGE_COMMAND[:-1]}, r"s\.yaml: command must end with \$\{args\}"),
        (
            {"command": STAGE_COMMAND[:6] + ["ermm", "${args}"]},
            r"s\.yaml: command runs stage 'ermm', which experiments/demo\.yaml does not define; did you mean 'erm'\?",
        ),
        (
            {"parameters": {"lr": {"values": [0.1, -1]}}},
            r"s\.yaml: parameters\.lr: value -1 is refused: must be positive",
        ),
        (
            {
                "parameters": {"max_epochs": {"distribution": "uniform", "min": 1, "max": 3}},
                "method": "random",
            },
            r"s\.yaml: parameters\.max_epochs: value .* is refused: expected int",
        ),
    ],
)
def test_invalid_sweep_configs_are_one_line_errors_naming_file_and_key(changes: dict, message: str) -> None:
    config = {k: v for k, v in _config(**changes).items() if v is not None}
    with pytest.raises(UserError, match=message) as err:
        validate_sweep(config, where="sweeps/s.yaml", workdir=REPO)
    assert "\n" not in str(err.value)


def test_unknown_parameter_names_the_stage_and_the_closest_valid_one() -> None:
    expected = (
        r"^sweeps/s\.yaml: parameters\.wieght: not a parameter of stage 'contrastive' \(method contrastive\) "
        r"in experiments/demo\.yaml; did you mean 'weight'\?$"
    )
    with pytest.raises(UserError, match=expected):
        validate_sweep(
            _config(
                parameters={"wieght": {"values": [0.1]}},
                command=STAGE_COMMAND[:6] + ["contrastive", "${args}"],
            ),
            where="sweeps/s.yaml",
            workdir=REPO,
        )


def test_values_that_run_stage_would_misread_are_refused_before_submission() -> None:
    from comprobust.validation import parse_overrides

    config = _config(parameters={"lr": {"values": [0.1, 1e-5]}})  # the agent passes --lr=1e-05
    if parse_overrides(["--lr=1e-05"], where="argument")["lr"] == 1e-5:
        validate_sweep(config, where="sweeps/s.yaml", workdir=REPO)  # run-stage reads it right: accepted
        return
    with pytest.raises(
        UserError,
        match=r"^sweeps/s\.yaml: parameters\.lr: value 1e-05 reaches run-stage as "
        r"--lr=1e-05, which it reads as '1e-05'",
    ):
        validate_sweep(config, where="sweeps/s.yaml", workdir=REPO)


SHIPPED = sorted((REPO / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_sweep_validates(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    target = yaml.safe_load(path.read_text())["command"]
    experiment = next(w for w in target if str(w).endswith(".yaml"))
    if not (REPO / experiment).exists():
        pytest.skip(f"{experiment} is not written yet")
    spec = load_sweep(path.relative_to(REPO))
    assert spec.target.stage in spec.experiment.stages
    stage = spec.experiment.stages[spec.target.stage]
    assert spec.config["metric"]["name"] in stage.spec.metrics  # what a finished run of the stage reports
    assert preview(spec.config, "x", 2)  # the engine makes suggestions for it


def test_demo_sweeps_are_shipped() -> None:
    assert {"demo-erm-lr", "demo-modules"} <= {p.stem for p in SHIPPED}


# ------------------------------------------------------------------------------------------- controller


def _take_all(folder: Path, finish_with=None, limit: int = 100) -> list[dict]:
    controller, agent, taken = SweepController(folder), Agent("t"), []
    for _ in range(limit):
        run = controller.next_run(agent)
        if run is None:
            break
        taken.append(run.params)
        controller.finish(run, FINISHED, finish_with(run.params) if finish_with else {})
    return taken


def test_grid_is_exhausted_and_never_repeats_a_point(tmp_path: Path) -> None:
    folder = _sweep(tmp_path, {"a": {"values": [1, 2]}, "b": {"values": ["x", "y"]}, "c": {"value": 0.5}})
    taken = _take_all(folder)
    assert sorted((p["a"], p["b"]) for p in taken) == [(1, "x"), (1, "y"), (2, "x"), (2, "y")]
    assert all(p["c"] == 0.5 for p in taken)
    assert _take_all(folder) == []  # a new controller on the same folder: still exhausted
    assert SweepController(folder).next_run(Agent("u")) is None


def test_run_cap_bounds_a_random_sweep(tmp_path: Path) -> None:
    folder = _sweep(
        tmp_path, {"a": {"distribution": "uniform", "min": 0, "max": 1}}, method="random", run_cap=3
    )
    assert len(_take_all(folder)) == 3


def _score(params: dict) -> dict:
    return {"val_acc": 1.0 - (params["lr"] - 0.05) ** 2 - 0.1 * params["depth"]}


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_random_and_bayes_suggestions_are_reproducible(tmp_path: Path, method: str) -> None:
    parameters = {
        "lr": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1.0},
        "depth": {"values": [1, 2, 3]},
    }
    extra = {"metric": {"name": "val_acc", "goal": "maximize"}, "run_cap": 6}
    first = _take_all(_sweep(tmp_path, parameters, method, name="a", **extra), _score)
    again = _take_all(_sweep(tmp_path, parameters, method, name="b", **extra), _score)
    other = _take_all(_sweep(tmp_path, parameters, method, name="c", sweep_id="otherid", **extra), _score)
    assert len(first) == 6 and first == again
    assert other != first  # the seed comes from the sweep id
    assert all(type(p["lr"]) is float and type(p["depth"]) is int for p in first)  # numpy scalars converted


def test_hyperband_stops_a_run_that_lags_the_finished_ones(tmp_path: Path) -> None:
    folder = _sweep(
        tmp_path,
        {"a": {"values": [1, 2, 3, 4]}},
        metric={"name": "val_acc", "goal": "maximize"},
        early_terminate={"type": "hyperband", "min_iter": 2, "eta": 2},
    )
    controller, agent = SweepController(folder), Agent("t")
    for value in (0.9, 0.8):
        run = controller.next_run(agent)
        controller.finish(run, FINISHED, {"val_acc": value}, [{"val_acc": v} for v in (0.5, value, value)])
    run = controller.next_run(agent)
    assert not controller.should_stop(run, [{"val_acc": 0.5}])  # before the first band (min_iter 2)
    assert controller.should_stop(run, [{"val_acc": 0.5}, {"val_acc": 0.1}])
    assert not controller.should_stop(run, [{"val_acc": 0.5}, {"val_acc": 0.95}])


def test_the_sweep_id_is_stable_and_depends_on_the_config() -> None:
    config = _config()
    assert sweep_id_for(config, {"e": 1}) == sweep_id_for(json.loads(json.dumps(config)), {"e": 1})
    assert sweep_id_for(config, {"e": 1}) != sweep_id_for(_config(run_cap=3), {"e": 1})
    assert sweep_id_for(config, {"e": 1}) != sweep_id_for(config, {"e": 2})
    assert len(sweep_id_for(config)) == 8 and sweep_id_for(config).isalnum()


# ------------------------------------------------------------------------------------------------ agents


def test_agent_contract_matches_wandb_agent(tmp_path: Path, _out_dir: Path) -> None:
    folder = _sweep(tmp_path, {"lr": {"values": [0.5]}, "name": {"value": "x"}})
    report = run_agent(folder, quiet=True)
    assert [r["state"] for r in report.runs] == [FINISHED]
    (seen,) = _records(_out_dir)
    run_id = report.runs[0]["run_id"]
    assert seen["argv"] == ["--lr=0.5", "--name=x"]  # ${args} exactly as `wandb agent` expands it
    # offline: the local sweep id stays out of wandb's own variables (a server would not know it) and the run is
    # offline whatever credentials exist
    assert seen["env"] == {
        "COMPROBUST_SWEEP_ID": "testswp",
        "WANDB_SWEEP_ID": None,
        "WANDB_RUN_ID": run_id,
        "WANDB_PROJECT": "tests",
        "WANDB_MODE": "offline",
        "WANDB_SWEEP_PARAM_PATH": str(folder / "wandb" / "sweep-testswp" / f"config-{run_id}.yaml"),
    }
    params = yaml.safe_load(seen["param_file"])
    assert params == {"wandb_version": 1, "lr": {"value": 0.5}, "name": {"value": "x"}}
    assert "testswp" in status_table(folder) and run_id in status_table(folder)


def test_a_failing_command_is_recorded_and_stops_the_agent_after_repeated_failures(tmp_path: Path) -> None:
    folder = _sweep(
        tmp_path, {"a": {"values": [1, 2, 3, 4]}}, script="import sys; print('boom'); sys.exit(3)"
    )
    report = run_agent(folder, quiet=True, max_consecutive_failures=2)
    assert [r["state"] for r in report.runs] == ["failed", "failed"]
    record = SweepController(folder).records()[0]
    assert record.exit_code == 3 and "boom" in record.error


def _agent_process(folder: str, **kwargs) -> None:
    run_agent(folder, quiet=True, poll_s=0.05, **kwargs)


def test_eight_concurrent_agents_run_every_grid_point_exactly_once(tmp_path: Path, _out_dir: Path) -> None:
    folder = _sweep(tmp_path, {"a": {"values": [1, 2, 3, 4]}, "b": {"values": [1, 2, 3, 4]}})
    SweepController(folder)  # import the engine before forking
    agents = [FORK.Process(target=_agent_process, args=(str(folder),)) for _ in range(8)]
    for agent in agents:
        agent.start()
    for agent in agents:
        agent.join(120)
        assert agent.exitcode == 0
    seen = _records(_out_dir)
    points = sorted(tuple(seen_run["argv"]) for seen_run in seen)
    assert points == sorted((f"--a={a}", f"--b={b}") for a in range(1, 5) for b in range(1, 5))
    records = SweepController(folder).records()
    assert len(records) == 16 and {r.state for r in records} == {FINISHED}
    assert len({r.agent for r in records}) > 1  # the work was shared


WAIT_ON_FIRST_ATTEMPT = """
import os, pathlib, sys, time
out = pathlib.Path(os.environ["OUT_DIR"])
if not (out / "first").exists():
    (out / "first").write_text(str(os.getpid()))
    time.sleep(120)
(out / "second").write_text(" ".join(sys.argv[1:]))
"""


def test_a_killed_agents_run_is_issued_again_to_another_agent(tmp_path: Path, _out_dir: Path) -> None:
    folder = _sweep(tmp_path, {"a": {"values": [7]}}, script=WAIT_ON_FIRST_ATTEMPT)
    SweepController(folder)
    doomed = FORK.Process(target=_agent_process, args=(str(folder),), kwargs={"heartbeat_s": 0.2})
    doomed.start()
    deadline = time.monotonic() + 30
    while not (_out_dir / "first").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int((_out_dir / "first").read_text())
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.join()
    (run,) = SweepController(folder).records()
    assert run.state == RUNNING and run.pid == doomed.pid
    deadline = time.monotonic() + 10  # the orphaned command gets SIGTERM when its agent dies
    while os.path.exists(f"/proc/{child}") and "Z" not in Path(f"/proc/{child}/stat").read_text().split()[2]:
        assert time.monotonic() < deadline, "the killed agent's command kept running"
        time.sleep(0.05)
    report = run_agent(folder, agent=Agent("rescuer"), quiet=True, stale_s=300)  # dead pid here: no waiting
    assert [r["run_id"] for r in report.runs] == [run.run_id]
    (after,) = SweepController(folder).records()
    assert (after.state, after.attempt, after.agent) == (FINISHED, 2, "rescuer")
    assert (_out_dir / "second").read_text() == "--a=7"


def test_a_requeued_slurm_agent_takes_its_own_run_back_at_once(tmp_path: Path) -> None:
    folder = _sweep(tmp_path, {"a": {"values": [1, 2]}})
    controller = SweepController(folder, stale_s=3600)
    first = controller.next_run(Agent("slurm-41_0", host="node-a", pid=111))
    other = controller.next_run(Agent("slurm-41_1", host="node-b", pid=222))
    assert controller.next_run(Agent("slurm-41_2", host="node-c", pid=333)) is None  # live, on other nodes
    again = controller.next_run(Agent("slurm-41_0", host="node-d", pid=444))  # the same task, requeued
    assert (again.run_id, again.attempt, again.params) == (first.run_id, 2, first.params)
    assert not controller.owns(first) and controller.owns(again)
    assert controller.finish(again, FINISHED) and not controller.finish(first, FINISHED)
    assert other.run_id != first.run_id


def test_a_stopped_run_counts_as_done_for_the_grid(tmp_path: Path) -> None:
    folder = _sweep(tmp_path, {"a": {"values": [1]}})
    controller = SweepController(folder)
    run = controller.next_run(Agent("t"))
    controller.finish(run, STOPPED, {"val_acc": 0.1})
    assert controller.next_run(Agent("t")) is None


# -------------------------------------------------------------------------------------------------- CLI


def test_dry_run_prints_commands_and_sbatch_options_and_creates_nothing(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from comprobust.cli import main

    monkeypatch.chdir(REPO)
    assert (
        main(
            [
                "sweep",
                "sweeps/demo-erm-lr.yaml",
                "--agents",
                "3",
                "--count",
                "2",
                "--dry-run",
                "--executor",
                "local",
                "--mode",
                "offline",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "launch.py run-stage experiments/demo.yaml --stage erm --lr=0.01 --max_epochs=2" in out
    assert "--lr=0.3 --max_epochs=2" in out and "--array=0-2%" in out
    assert "count=2" in out and "nothing submitted" in out
    sweep_dir = Path(out.split(" in ", 1)[1].split()[0])
    assert not sweep_dir.exists()


def test_online_dry_run_shows_wandb_agents_and_creates_no_sweep(monkeypatch, capsys) -> None:
    import comprobust.sweeps.online
    import comprobust.tracking
    from comprobust.cli import main

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(comprobust.tracking, "resolve_mode", lambda requested="auto", override=None: "online")
    monkeypatch.setattr(
        comprobust.sweeps.online, "online_sweep", lambda *a, **k: pytest.fail("sweep created")
    )
    assert (
        main(
            [
                "sweep",
                "sweeps/demo-erm-lr.yaml",
                "--agents",
                "4",
                "--count",
                "3",
                "--dry-run",
                "--executor",
                "local",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"{sys.executable} -m wandb agent --count 3 <entity/project/new sweep id>" in out
    assert "4 agent(s)" in out and "--array=0-3%" in out and "no sweep created" in out


def test_online_agents_run_wandb_agent_with_the_count() -> None:
    assert wandb_agent_command("me/proj/abc123", 2) == [
        sys.executable,
        "-m",
        "wandb",
        "agent",
        "--count",
        "2",
        "me/proj/abc123",
    ]
    assert wandb_agent_command("me/proj/abc123")[-2:] == ["agent", "me/proj/abc123"]


def test_cli_reports_a_bad_sweep_in_one_line(tmp_path: Path, capsys) -> None:
    from comprobust.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(_config(parameters={"lrr": {"values": [0.1]}})))
    assert main(["sweep", str(bad), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith(f"error: {bad}: parameters.lrr:") and "did you mean 'lr'?" in err and "\n" not in err
    )


# ------------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_end_to_end_demo_erm_grid_through_run_stage(tmp_path: Path, monkeypatch, capsys) -> None:
    from comprobust.cli import main

    monkeypatch.chdir(REPO)
    experiment = yaml.safe_load((REPO / "experiments" / "demo.yaml").read_text())
    experiment.update(output_root=str(tmp_path / "outputs"), training={"max_epochs": 1, "batch_size": 64})
    experiment["dataset"].update(
        root=str(tmp_path / "data"), split_sizes={"train": 10, "valid": 5, "test": 5}
    )
    experiment["cluster"] = {"executor": "local", "timeout_min": 20, "signal_delay_s": 30}
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(experiment))
    sweep = {
        "method": "grid",
        "metric": {"name": "val_acc", "goal": "maximize"},
        "parameters": {"lr": {"values": [0.01, 0.1]}, "max_epochs": {"value": 1}},
        "command": sweep_command(str(tmp_path / "demo.yaml")),
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert main(["sweep", str(tmp_path / "sweep.yaml"), "--agents", "2", "--executor", "local"]) == 0
    out = capsys.readouterr().out
    folder = next((tmp_path / "outputs" / "demo" / "sweeps").iterdir())
    records = SweepController(folder).records()
    assert sorted(r.params["lr"] for r in records) == [0.01, 0.1]
    assert all(r.state == FINISHED and 0.0 <= r.summary["val_acc"] <= 100.0 for r in records), records
    assert "best:" in out
    done = list((tmp_path / "outputs" / "demo" / "runs").glob("erm-*/done.json"))
    assert len(done) == 2  # two distinct stage runs, one per grid point
    wandb_runs = list((tmp_path / "outputs" / "demo" / "wandb" / "wandb").glob("offline-run-*"))
    assert {p.name.rsplit("-", 1)[1] for p in wandb_runs} == {
        r.run_id for r in records
    }  # WANDB_RUN_ID honoured


LOG_TO_WANDB = """
import time, wandb
run = wandb.init(mode="offline")  # a plain init: the sweep id, run id and config come from the agent's env
curve = [0.5, 0.8, 0.85, 0.9, 0.9, 0.9, 0.9, 0.9] if run.config["a"] < 3 else [0.5, 0.1] + [0.1] * 38
for value in curve:
    run.log({"val_acc": value})
    time.sleep(0.0 if run.config["a"] < 3 else 0.5)  # the lagging run would take 20 s unless stopped
run.summary["val_acc"] = curve[-1]
run.finish()
"""


def test_hyperband_stops_a_lagging_run_read_live_from_its_offline_wandb_run(
    tmp_path: Path, monkeypatch
) -> None:
    from comprobust.wandb_offline import find_runs, read_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    (tmp_path / "wb").mkdir()
    folder = _sweep(
        tmp_path,
        {"a": {"values": [1, 2, 3]}},
        script=LOG_TO_WANDB,
        metric={"name": "val_acc", "goal": "maximize"},
        early_terminate={"type": "hyperband", "min_iter": 2, "eta": 2},
    )
    monkeypatch.setenv("WANDB_X_TRANSACTION_LOG_FLUSH_INTERVAL", "1")
    report = run_agent(folder, quiet=True, heartbeat_s=0.5, grace_s=5)
    assert [r["state"] for r in report.runs] == [FINISHED, FINISHED, STOPPED]
    records = SweepController(folder).records()
    assert records[0].summary["val_acc"] == 0.9 and len(records[0].history) == 8  # from the offline W&B run
    stopped = records[2]
    assert 2 <= len(stopped.history) < 40 and stopped.summary["val_acc"] == 0.1
    # the real wandb client took the run id and the parameters from the agent's environment; the local sweep id
    # stays out of the run log (a server that never saw it would refuse the sync)
    runs = {read_run(p).id: read_run(p) for p in find_runs(tmp_path / "wb")}
    assert set(runs) == {r.run_id for r in records}
    first = runs[records[0].run_id]
    assert first.sweep_id is None and first.config["a"] == 1 and first.project == "tests"
