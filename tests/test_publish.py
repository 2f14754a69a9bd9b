"""`launch.py publish`: wandb sync per offline run folder, bounded retries, success judged from the output.

No W&B server can run here, so the `wandb sync` command line is the boundary: a fake `wandb` executable first on
PATH prints what the real one prints and exits 0 (as the real one does even when the upload failed). Its
failure lines are verbatim from wandb 0.31.0 syncing to a refused port with a dummy key; the success lines
follow wandb-core 0.31's messages ("setting up run", "Finished syncing %s") and, like wandb-core, it writes the
`run-<id>.wandb.synced` marker.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest
from helpers.recorded_runs import build_fixture

from comprobust.cli import main
from comprobust.publish import judge

RECORDED_FAILURE = """\
wandb: Syncing 1 run(s):
wandb:   synctest/offline-run-20261124_082518-r0/run-r0.wandb
wandb: [wandb sync] Loaded credentials for http://127.0.0.1:9 from WANDB_API_KEY.
wandb: [p/r0] setting up run r0
wandb: ERROR Failed to get resume status for run r0: POST http://127.0.0.1:9/graphql giving up after 2 attempt(s): \
Post "http://127.0.0.1:9/graphql": dial tcp 127.0.0.1:9: connect: connection refused
wandb: ERROR while retrying: Post "http://127.0.0.1:9/graphql": dial tcp 127.0.0.1:9: connect: connection refused
"""
FAKE_WANDB = r'''#!PYTHON
"""A stand-in for the `wandb` CLI: `wandb sync [--entity E] [--project P] RUN_FOLDER`, scripted per run id."""
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
assert args[0] == "sync", args
folder = Path(args[-1])
log_file = next(folder.glob("run-*.wandb"))
run_id = log_file.stem[len("run-"):]
calls_file = Path(os.environ["FAKE_WANDB_CALLS"])
calls = [json.loads(line) for line in calls_file.read_text().splitlines()] if calls_file.exists() else []
attempt = sum(1 for call in calls if call["run_id"] == run_id)
keys = ["WANDB_X_GRAPHQL_RETRY_MAX", "WANDB_X_GRAPHQL_RETRY_WAIT_MAX_SECONDS", "WANDB_X_FILE_STREAM_RETRY_MAX",
        "WANDB_MODE", "WANDB_API_KEY"]
with calls_file.open("a") as handle:
    handle.write(json.dumps({"run_id": run_id, "folder": str(folder), "args": args, "cwd": os.getcwd(),
                             "pid": os.getpid(), "env": {k: os.environ.get(k) for k in keys}}) + "\n")
plan = json.loads(Path(os.environ["FAKE_WANDB_PLAN"]).read_text()).get(run_id, ["ok"])
step = plan[min(attempt, len(plan) - 1)]
print("wandb: Syncing 1 run(s):")
print(f"wandb:   {log_file}")
print("wandb: [wandb sync] Loaded credentials for http://127.0.0.1:9 from WANDB_API_KEY.")
print(f"wandb: [comprobust-rtest/{run_id}] setting up run {run_id}", flush=True)
if step == "ok":
    print(f"wandb: Finished syncing {log_file}")
    log_file.with_name(log_file.name + ".synced").touch()
elif step == "error":
    print(f"wandb: ERROR Failed to get resume status for run {run_id}: POST http://127.0.0.1:9/graphql giving up "
          'after 2 attempt(s): Post "http://127.0.0.1:9/graphql": dial tcp 127.0.0.1:9: connect: connection refused')
    print('wandb: ERROR while retrying: Post "http://127.0.0.1:9/graphql": dial tcp 127.0.0.1:9: connect: '
          "connection refused")
elif step == "hang":
    time.sleep(120)
# "silent": no verdict at all
sys.exit(0)
'''


@pytest.fixture
def credentials(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_API_KEY", "local-" + "0123456789abcdef" * 3)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_MODE", "offline")  # must not reach the uploader


@pytest.fixture
def fake_wandb(tmp_path, monkeypatch):
    """Put the fake `wandb` first on PATH; returns (plan writer, calls reader)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "wandb"
    script.write_text(FAKE_WANDB.replace("PYTHON", sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    plan_file, calls_file = tmp_path / "plan.json", tmp_path / "calls.jsonl"
    plan_file.write_text("{}")
    monkeypatch.setenv("FAKE_WANDB_PLAN", str(plan_file))
    monkeypatch.setenv("FAKE_WANDB_CALLS", str(calls_file))

    def set_plan(plan: dict) -> None:
        plan_file.write_text(json.dumps(plan))

    def calls() -> list[dict]:
        if not calls_file.exists():
            return []
        return [json.loads(line) for line in calls_file.read_text().splitlines()]

    return set_plan, calls


@pytest.fixture
def runs_copy(tmp_path_factory, tmp_path):
    return build_fixture(tmp_path_factory).copy(tmp_path / "runs")


def _folders(wandb_dir: Path, run_id: str) -> list[Path]:
    return sorted(
        p
        for p in (wandb_dir / "wandb").iterdir()
        if p.name.endswith(run_id) or p.name.endswith(run_id + "-1")
    )


@pytest.mark.online
def test_publish_lands_every_run_on_the_server_and_a_storage_failure_is_caught(
    runs_copy, wandb_server, monkeypatch, capsys
):
    """The real `wandb sync` against the project's own W&B server: judged by what the server holds."""
    from comprobust.wandb_offline import read_run

    wandb_server.monkeypatch_env(monkeypatch)
    wandb_dir = runs_copy.wandb_dir
    erm2 = "eval-erm-s2-0123456789"  # two folders: a failed attempt, then the resumed one
    unfinished = wandb_dir / "wandb" / "offline-run-20991231_235959-zzunfinished"  # killed: no exit record
    shutil.copytree(_folders(wandb_dir, "eval-erm-s1-0123456789")[0], unfinished)
    log = next(unfinished.glob("run-*.wandb"))
    data = log.read_bytes()
    log.unlink()
    (unfinished / "run-zzunfinished.wandb").write_bytes(data[: len(data) // 2])
    # every artifact upload fails: wandb sync still says "Finished syncing" and writes its .synced marker
    wandb_server.inject("storage:PUT", "http500", times=10_000)

    assert main(["publish", str(wandb_dir), "--backoff", "0", "--attempts", "1", "--timeout", "120"]) == 1
    captured = capsys.readouterr()
    out = captured.out
    assert "Traceback" not in captured.err and "error:" not in captured.err, captured.err
    with_artifacts = [f for f in _newest(wandb_dir) if read_run(f).artifacts]
    assert with_artifacts, "the fixture has no run with an artifact"
    for folder in with_artifacts:
        line = next(
            line for line in out.splitlines() if line.endswith(folder.name) or folder.name + " " in line
        )
        assert line.startswith("failed"), line  # named, with the reason
    assert "superseded" in out and "unfinished" in out

    with wandb_server.server._faults_lock:  # storage is back
        wandb_server.server.faults.clear()
    assert main(["publish", str(wandb_dir), "--backoff", "0", "--timeout", "120"]) == 0
    out = capsys.readouterr().out
    assert f"discarded      {wandb_server.entity}/" in out  # the retry removed the failed upload's leftovers
    state = wandb_server.state
    for folder in _newest(wandb_dir):
        local = read_run(folder)
        if local.exit_code is None:
            continue
        remote = state.run(local.id)
        assert remote.state == local.state, local.id
        # every row exactly once, also for the runs whose earlier uploads failed half-way (their partial copy is
        # discarded before a retry, else wandb sync appends the history again)
        assert [row["_step"] for row in remote.history] == list(range(len(local.history))), local.id
        assert len([v for v in state.logged_artifacts(local.id) if v.state == "COMMITTED"]) == len(
            local.artifacts
        )
    assert len([r for r in state.runs() if r.name == erm2]) == 1
    assert "zzunfinished" not in {r.name for r in state.runs()}
    assert main(["publish", str(wandb_dir), "--backoff", "0"]) == 0
    assert "0 synced" in capsys.readouterr().out  # published and checked runs are not uploaded again


def _newest(wandb_dir: Path) -> list[Path]:
    from comprobust.publish import newest_attempts, offline_run_folders

    return newest_attempts(offline_run_folders(wandb_dir))[0]


def test_a_hung_sync_is_killed_at_the_timeout(
    runs_copy, credentials, fake_wandb, wandb_server, monkeypatch, capsys
):
    set_plan, calls = fake_wandb
    monkeypatch.setenv("WANDB_BASE_URL", wandb_server.url)  # a server that answers; the fake `wandb` hangs
    run_id = "eval-erm-s1-0123456789"
    set_plan({run_id: ["hang"]})
    folder = _folders(runs_copy.wandb_dir, run_id)[0]
    assert main(["publish", str(folder), "--timeout", "1", "--attempts", "1"]) == 1
    assert "did not finish within 1 s" in capsys.readouterr().out
    pid = calls()[0]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_publish_needs_credentials_but_dry_run_does_not(runs_copy, fake_wandb, tmp_path, monkeypatch, capsys):
    _, calls = fake_wandb
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    assert main(["publish", str(runs_copy.experiment_path)]) == 2
    err = capsys.readouterr().err
    assert "wandb login" in err and "WANDB_API_KEY" in err
    assert main(["publish", str(runs_copy.experiment_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert sum(line.startswith("would-sync ") for line in out.splitlines()) == 8
    assert "summary: 0 synced, 8 would-sync, 1 superseded, 0 failed" in out  # a resumed run's older attempt
    assert calls() == []
    assert main(["publish", str(tmp_path / "nowhere")]) == 2


def test_judge_reads_the_output_not_the_exit_status():
    assert judge(RECORDED_FAILURE, 0)[0] == "failed"
    assert "ERROR Failed to get resume status" in judge(RECORDED_FAILURE, 0)[1]
    ok = "wandb: Syncing 1 run(s):\nwandb:   run-a.wandb\nwandb: Finished syncing /x/run-a.wandb\n"
    assert judge(ok, 0) == ("synced", "")
    assert judge(ok, 1)[0] == "failed"
    assert judge("Syncing: https://wandb.ai/team/p/runs/a ... done.\n", 0)[0] == "synced"  # older clients
    assert judge("wandb: Syncing 1 run(s):\nwandb:   done/run-a.wandb\n", 0)[0] == "failed"  # no verdict
    skipped = "wandb: Skipped 1 synced run(s). Include with --no-skip-synced.\nwandb: No runs to sync.\n"
    assert judge(skipped, 0)[0] == "already-synced"
    online = "wandb: Skipped 1 online run(s). Include with --no-skip-online.\nwandb: No runs to sync.\n"
    assert judge(online, 0)[0] == "failed"
    no_key = (
        "wandb: ERROR Find detailed error logs at: /tmp/wandb/debug-cli.root.log\n"
        "Error: No API key configured. Use `wandb login` to log in.\n"
    )
    assert judge(no_key, 1)[0] == "failed"
