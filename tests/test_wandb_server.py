"""The project's local W&B server, driven by the real pinned wandb client; every check reads the server's state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from wandb_server.fixture import LocalWandb

pytestmark = pytest.mark.online

WANDB = str(Path(sys.executable).with_name("wandb"))


@pytest.fixture
def inproc(wandb_server: LocalWandb, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:  # noqa: F811
    """wandb in this process, pointed at the server; its service is torn down afterwards."""
    import wandb

    wandb.teardown()  # earlier tests may have set the process-wide client up (offline, other settings)
    wandb_server.monkeypatch_env(monkeypatch)
    yield wandb
    wandb.teardown()


def run_child(
    args: list[str],
    server: LocalWandb,
    cwd: Path,
    timeout: float = 120,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a client process in its own process group; on timeout the whole group (wandb-core too) is killed."""
    env = {**server.subprocess_env(), **(extra_env or {})}
    proc = subprocess.Popen(
        args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"{args} timed out:\n{out[-3000:]}") from None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # leftovers (wandb-core) of the group we started
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(args, proc.returncode, out, "")


def assert_clean(server: LocalWandb) -> None:
    """No unknown operation, no error answered to a known one, no query text that differs from the golden files
    (re-capture with WANDB_SERVER_CAPTURE=1 after a wandb upgrade, and review)."""
    assert server.state.unhandled == [], server.state.unhandled
    assert server.state.errors == [], server.state.errors
    assert server.query_drift() == [], f"query texts changed: {server.query_drift()}"


def graphql(
    server: LocalWandb, query: str, variables: dict[str, Any] | None = None, timeout: float = 10
) -> dict[str, Any]:
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(f"{server.url}/graphql", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


# ------------------------------------------------------------------------------------------------ runs


def test_run_lifecycle(inproc: Any, wandb_server: LocalWandb) -> None:  # noqa: F811
    run = inproc.init(
        project="lifecycle",
        group="grp",
        job_type="train",
        tags=["a", "b"],
        config={"x": 1, "nested": {"lr": 0.1}},
    )
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)})
    run.summary["best"] = 0.5
    run.finish()

    state = wandb_server.state
    runs = state.runs(project="lifecycle")
    assert [r.name for r in runs] == [run.id]
    stored = runs[0]
    assert (stored.group, stored.job_type, stored.tags, stored.state) == (
        "grp",
        "train",
        ["a", "b"],
        "finished",
    )
    assert stored.config == {"x": 1, "nested": {"lr": 0.1}}
    assert stored.summary["best"] == 0.5
    assert [row["_step"] for row in state.history(run.id)] == [0, 1, 2, 3, 4]
    assert state.history(run.id)[4]["loss"] == pytest.approx(0.2)
    assert "config.yaml" in stored.files and "wandb-summary.json" in stored.files
    assert_clean(wandb_server)


def test_resumed_run_history_is_contiguous(inproc: Any, wandb_server: LocalWandb) -> None:  # noqa: F811
    for start in (0, 3):
        run = inproc.init(project="resume", id="resumed1", resume="allow")
        assert run.starting_step == start
        for step in range(start, start + 3):
            run.log({"v": step}, step=step)
        run.finish()
    steps = [row["_step"] for row in wandb_server.state.history("resumed1")]
    assert steps == [0, 1, 2, 3, 4, 5]
    assert [row["v"] for row in wandb_server.state.history("resumed1")] == steps
    assert "RunResumeStatus" in [op for op, _ in wandb_server.state.requests]
    assert_clean(wandb_server)


def test_file_stream_offsets_replace(wandb_server: LocalWandb) -> None:  # noqa: F811
    """A chunk re-sent at an offset already stored replaces the lines instead of appending them."""
    server = wandb_server.server
    line = lambda step: json.dumps({"_step": step})  # noqa: E731
    server.file_stream(
        "e", "p", "r1", {"files": {"wandb-history.jsonl": {"offset": 0, "content": [line(0), line(1)]}}}
    )
    server.file_stream(
        "e", "p", "r1", {"files": {"wandb-history.jsonl": {"offset": 1, "content": [line(1), line(2)]}}}
    )
    reply = server.file_stream(
        "e",
        "p",
        "r1",
        {
            "complete": True,
            "exitcode": 1,
            "files": {"wandb-summary.json": {"offset": 0, "content": ['{"a": 1}', '{"a": 2}']}},
        },
    )
    assert reply == {"exitcode": None, "limits": {}}
    run = wandb_server.state.run("r1")
    assert [r["_step"] for r in run.history] == [0, 1, 2]
    assert (run.summary, run.state) == ({"a": 2}, "failed")


# ------------------------------------------------------------------------------------------------ artifacts


def test_artifacts_aliases_download_and_lineage(
    inproc: Any,
    wandb_server: LocalWandb,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = wandb_server.state
    producer = inproc.init(project="arts", job_type="train")
    for content, aliases in ((b"version zero", ["latest", "best"]), (b"version one!", ["latest"])):
        (tmp_path / "ckpt.bin").write_bytes(content)
        artifact = inproc.Artifact("model-x", type="model", metadata={"size": len(content)})
        artifact.add_file(str(tmp_path / "ckpt.bin"))
        producer.log_artifact(artifact, aliases=aliases).wait()
    producer.finish()

    v0, v1 = state.artifact("model-x", "v0"), state.artifact("model-x", "v1")
    assert (v0.state, v1.state) == ("COMMITTED", "COMMITTED")
    assert state.artifact_aliases(v0) == ["v0", "best"]
    assert state.artifact_aliases(v1) == ["v1", "latest"]
    assert state.artifact("model-x", "best") is v0 and state.artifact("model-x") is v1
    assert state.artifact_file(v0, "ckpt.bin") == b"version zero"
    assert state.artifact_file(v1, "ckpt.bin") == b"version one!"
    assert state.logged_artifacts(producer.id) == [v0, v1]

    # a fresh cache, so the download really goes to the server
    cache = Path(os.environ["WANDB_CACHE_DIR"])
    for child in cache.iterdir():
        if child.is_dir():
            import shutil

            shutil.rmtree(child)
    consumer = inproc.init(project="arts", job_type="eval")
    used = consumer.use_artifact("model-x:best")
    folder = Path(used.download(root=str(tmp_path / "download")))
    assert (folder / "ckpt.bin").read_bytes() == b"version zero"
    consumer.finish()
    assert state.used_artifacts(consumer.id) == [v0]
    assert ("storage:GET", True) in state.requests
    assert_clean(wandb_server)


def test_public_api_runs_filters_pages_history_files(
    inproc: Any,
    wandb_server: LocalWandb,  # noqa: F811
    tmp_path: Path,
) -> None:
    state = wandb_server.state
    run = inproc.init(project="api", group="G", config={"x": 1, "name": "real"})
    for step in range(3):
        run.log({"acc": step / 10})
    (tmp_path / "table.json").write_text('{"columns": ["a"], "data": [[1]]}')
    run.save(str(tmp_path / "table.json"), base_path=str(tmp_path))
    run.finish()
    for i in range(60):  # seeded straight into the state: many runs, no client time
        seeded, _ = state.get_or_create_run(wandb_server.entity, "api", f"seed{i:02d}")
        seeded.raw_config = {"x": {"value": i % 2}, "k": {"value": f"n{i}"}}
        seeded.summary, seeded.state, seeded.group = {"acc": i}, "finished", "G" if i < 30 else "H"

    api = inproc.Api(overrides={"base_url": wandb_server.url})
    path = f"{wandb_server.entity}/api"
    ones = list(api.runs(path, filters={"config.x": 1}, per_page=7))
    assert len(ones) == 31 and len({r.id for r in ones}) == 31
    assert sum(1 for op, _ in state.requests if op == "Runs") >= 5  # 31 runs in pages of 7
    picked = api.runs(
        path,
        order="+created_at",
        per_page=5,
        filters={
            "$and": [{"group": "G"}, {"summary_metrics.acc": {"$gte": 10}}, {"config.k": {"$regex": "^n1"}}]
        },
    )
    assert [r.id for r in picked] == [f"seed{i}" for i in range(10, 20)]
    either = {"$or": [{"config.k": {"$in": ["n1", "n2"]}}, {"displayName": run.name}]}
    assert {r.id for r in api.runs(path, filters=either)} == {"seed01", "seed02", run.id}
    assert len(api.runs(path, filters={"config.name": {"$exists": True}, "state": {"$ne": "running"}})) == 1

    got = api.run(f"{path}/{run.id}")
    assert (got.group, got.state, got.config) == ("G", "finished", {"x": 1, "name": "real"})
    assert got.summary_metrics["acc"] == pytest.approx(0.2)
    assert list(got.history()["acc"]) == pytest.approx([0.0, 0.1, 0.2])
    assert [row["_step"] for row in got.scan_history()] == [0, 1, 2]
    handle = got.file("table.json").download(root=str(tmp_path / "dl"), replace=True)
    handle.close()
    assert json.loads((tmp_path / "dl" / "table.json").read_text())["data"] == [[1]]
    assert_clean(wandb_server)


# ------------------------------------------------------------------------------------------------ CLI


def test_sync_of_an_offline_run(wandb_server: LocalWandb, tmp_path: Path) -> None:  # noqa: F811
    script = tmp_path / "offline.py"
    script.write_text(
        textwrap.dedent("""
        import wandb
        run = wandb.init(project="synced", group="off", config={"x": 3})
        for step in range(4):
            run.log({"m": step * 2})
        run.finish()
        print("RUN", run.id, run.dir)
    """)
    )
    made = run_child(
        [sys.executable, str(script)], wandb_server, tmp_path, extra_env={"WANDB_MODE": "offline"}
    )
    assert made.returncode == 0, made.stdout
    assert wandb_server.state.runs() == [], "offline mode talked to the server"
    run_id = made.stdout.split("RUN ")[1].split()[0]
    folder = next((tmp_path / "wandb-home" / "wandb_dir" / "wandb").glob(f"offline-run-*-{run_id}"))

    synced = run_child([WANDB, "sync", str(folder)], wandb_server, tmp_path)
    assert synced.returncode == 0, synced.stdout
    run = wandb_server.state.run(run_id)
    assert (run.project, run.group, run.config, run.state) == ("synced", "off", {"x": 3}, "finished")
    assert [row["m"] for row in run.history] == [0, 2, 4, 6]
    assert list(folder.glob("*.wandb.synced")), "wandb sync left no .synced marker"
    assert_clean(wandb_server)


def test_sync_with_failing_uploads_still_claims_success(
    wandb_server: LocalWandb,  # noqa: F811
    tmp_path: Path,
) -> None:
    """What `wandb sync` does when the storage refuses every upload: exit 0, "Finished syncing" and the
    `.synced` marker all the same, while the artifact stays PENDING. Only the server's state tells."""
    (tmp_path / "offline.py").write_text(
        textwrap.dedent("""
        import wandb
        run = wandb.init(project="syncfail")
        run.log({"m": 1})
        open("b.bin", "wb").write(b"xyz")
        art = wandb.Artifact("ds", type="dataset")
        art.add_file("b.bin")
        run.log_artifact(art)
        run.finish()
        print("RUN", run.id)
    """)
    )
    made = run_child(
        [sys.executable, "offline.py"], wandb_server, tmp_path, extra_env={"WANDB_MODE": "offline"}
    )
    run_id = made.stdout.split("RUN ")[1].split()[0]
    folder = next((tmp_path / "wandb-home" / "wandb_dir" / "wandb").glob(f"offline-run-*-{run_id}"))
    wandb_server.inject("storage:PUT", "http500", times=1000)
    synced = run_child(
        [WANDB, "sync", str(folder)], wandb_server, tmp_path, extra_env={"WANDB_SILENT": "false"}
    )
    assert synced.returncode == 0 and "Finished syncing" in synced.stdout, synced.stdout
    assert list(folder.glob("*.wandb.synced")), "the marker is written even though uploads failed"
    assert [v.state for v in wandb_server.state.iter_versions()] == ["PENDING"]
    assert wandb_server.state.run(run_id).state == "finished"


def _agent(server: LocalWandb, cwd: Path, sweep: str, count: int) -> subprocess.CompletedProcess[str]:
    """`wandb agent --count N`, through the CLI entry point; the agent's fixed 5 s idle poll is cut to 0.5 s."""
    code = (
        "import sys, wandb.wandb_agent as agent; agent.Agent.POLL_INTERVAL = 0.5; "
        "from wandb.cli.cli import cli; sys.exit(cli())"
    )
    return run_child(
        [sys.executable, "-c", code, "agent", "--count", str(count), sweep],
        server,
        cwd,
        extra_env={"WANDB_AGENT_DISABLE_FLAPPING": "true"},
    )


def test_sweep_and_agents_cover_the_grid_once(wandb_server: LocalWandb, tmp_path: Path) -> None:  # noqa: F811
    (tmp_path / "train.py").write_text(
        textwrap.dedent("""
        import wandb
        run = wandb.init()
        run.log({"loss": run.config.a * run.config.b})
        run.finish()
    """)
    )
    (tmp_path / "sweep.yaml").write_text(
        textwrap.dedent("""
        program: train.py
        method: grid
        project: sweepy
        metric: {name: loss, goal: minimize}
        parameters:
          a: {values: [1, 2]}
          b: {values: [10, 20]}
    """)
    )
    made = run_child(
        [WANDB, "sweep", "sweep.yaml"], wandb_server, tmp_path, extra_env={"WANDB_SILENT": "false"}
    )
    assert made.returncode == 0, made.stdout
    state = wandb_server.state
    (sweep_id,) = state.sweeps
    assert f"Creating sweep with ID: {sweep_id}" in made.stdout, made.stdout
    assert f"{wandb_server.url}/{wandb_server.entity}/sweepy/sweeps/{sweep_id}" in made.stdout, made.stdout

    first = _agent(wandb_server, tmp_path, f"{wandb_server.entity}/sweepy/{sweep_id}", 2)
    assert first.returncode == 0, first.stdout
    runs = state.sweep_runs(sweep_id)
    assert len(runs) == 2 and all(r.state == "finished" and r.upserts > 0 for r in runs)
    assert len({(r.config["a"], r.config["b"]) for r in runs}) == 2

    second = _agent(wandb_server, tmp_path, f"{wandb_server.entity}/sweepy/{sweep_id}", 5)
    assert second.returncode == 0, second.stdout
    runs = state.sweep_runs(sweep_id)
    points = sorted((r.config["a"], r.config["b"]) for r in runs)
    assert points == [(1, 10), (1, 20), (2, 10), (2, 20)]
    assert all(r.state == "finished" and r.history[0]["loss"] == r.config["a"] * r.config["b"] for r in runs)
    assert state.sweep(sweep_id).state == "FINISHED"
    assert [r.name for r in state.runs(project="sweepy")] == [r.name for r in runs]
    assert_clean(wandb_server)


# ------------------------------------------------------------------------------------------------ faults


def test_failed_artifact_upload_is_observable(wandb_server: LocalWandb, tmp_path: Path) -> None:  # noqa: F811
    script = tmp_path / "upload.py"
    script.write_text(
        textwrap.dedent("""
        import wandb
        run = wandb.init(project="faulty")
        open("blob.bin", "wb").write(b"payload")
        art = wandb.Artifact("data-x", type="dataset")
        art.add_file("blob.bin")
        try:
            run.log_artifact(art).wait(timeout=60)
            print("WAITED OK")
        except Exception as err:
            print("WAIT FAILED", type(err).__name__)
        run.finish()
    """)
    )
    wandb_server.inject("storage:PUT", "http500", times=1000)
    done = run_child([sys.executable, str(script)], wandb_server, tmp_path, timeout=150)
    state = wandb_server.state
    assert any(op == "fault http500 storage:PUT" for op, _ in state.requests)
    versions = list(state.iter_versions())
    assert all(v.state == "PENDING" for v in versions), [(v.collection, v.state) for v in versions]
    with pytest.raises(KeyError):
        state.artifact("data-x")
    assert "WAIT FAILED" in done.stdout, done.stdout  # Artifact.wait() raises (a ValueError in 0.31)


def test_fault_kinds_and_unknown_operations(wandb_server: LocalWandb) -> None:  # noqa: F811
    query = "query Viewer { viewer { id entity } }"
    assert graphql(wandb_server, query)["data"]["viewer"]["entity"] == wandb_server.entity

    wandb_server.inject("Viewer", "slow:1.0")
    started = time.monotonic()
    graphql(wandb_server, query)
    assert time.monotonic() - started >= 1.0

    wandb_server.inject("Viewer", "http500", times=2)
    for _ in range(2):
        with pytest.raises(urllib.error.HTTPError) as err:
            graphql(wandb_server, query)
        assert err.value.code == 500
    wandb_server.inject("Viewer", "drop")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
        graphql(wandb_server, query)
    assert "viewer" in graphql(wandb_server, query)["data"]  # faults are used up

    reply = graphql(wandb_server, "query SomethingNew($x: String) { somethingNew(x: $x) { id } }")
    assert reply["errors"][0]["message"] == "UNHANDLED operation SomethingNew" and "data" not in reply
    assert wandb_server.state.unhandled == ["SomethingNew"]
    with pytest.raises(ValueError):
        wandb_server.inject("Viewer", "explode")
