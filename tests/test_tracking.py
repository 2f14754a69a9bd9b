"""The W&B run lifecycle with the real wandb client in offline mode, read back with wandb_offline.read_run."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from comprobust import tracking
from comprobust.errors import UserError
from comprobust.tracking import (
    ArtifactRef,
    LineageStore,
    StageRun,
    file_digest,
    resolve_mode,
    scrub,
    start_run,
)
from comprobust.wandb_offline import find_runs, read_run

# Fake credentials: one set as WANDB_API_KEY (hex, like a legacy key: found by exact match), one shaped like a
# new long key (found by its shape), one under a secret-named config key.
ENV_KEY = "local-" + "0123456789abcdef" * 3
SHAPED_KEY = "Xy9" * 28 + "Q1"
TOKEN = "tok-ThisIsNotForTheLogs-42"
LONG_NAME = "contrast_gaussian_blur_impulse_noise_invert_rotate_elastic"


@pytest.fixture
def no_credentials(tmp_path, monkeypatch):
    """No W&B key anywhere: env, netrc and the wandb settings file all point at empty places."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_MODE", "offline")


def _start(out: Path, run_id: str, job_type: str = "erm", **kwargs) -> StageRun:
    args = dict(
        out_dir=out,
        project="comprobust-test",
        group="exp-test",
        job_type=job_type,
        name=f"{job_type}-{run_id}",
        run_id=run_id,
        config={"seed": 0},
        tags=["emnist", job_type],
    )
    args.update(kwargs)
    return start_run(**args)


def test_stage_run_round_trip_offline(tmp_path, monkeypatch, no_credentials):
    monkeypatch.setenv("WANDB_API_KEY", ENV_KEY)  # a key in the env must not leak, even offline
    monkeypatch.setenv("WANDB_DIR", "/caller/own/dir")
    monkeypatch.delenv("WANDB_DATA_DIR", raising=False)
    out = tmp_path / "exp"
    config = {
        "seed": 0,
        "config_hash": "9f2c1e",
        "lr": 0.1,
        "cmdline": f"train --key {ENV_KEY}",
        "cli_arg": SHAPED_KEY,
        "wandb": {"api_token": TOKEN},
        "compositions": [LONG_NAME],
        "scalar": np.float32(0.5),
    }
    ckpt = tmp_path / "ckpt" / "last.pt"
    ckpt.parent.mkdir()
    contents = [os.urandom(2048) for _ in range(3)]

    with _start(out, "erm0001", config=config, inputs=["data-emnist:latest"]) as run:
        assert run.mode == "offline" and run.id == "erm0001"
        assert os.environ["WANDB_DIR"] == str(out.resolve() / "wandb")
        assert os.environ["WANDB_DATA_DIR"] == str(out.resolve() / "wandb-data")
        for epoch in range(3):
            run.log(
                {
                    "train/loss": 1.0 / (epoch + 1),
                    "train/acc": 0.25 * epoch,
                    "val/loss": 2.0 - epoch / 2,
                    "val/acc": 0.2 * epoch,
                    "lr": 0.1 / (epoch + 1),
                    "epoch_time": 1.5,
                },
                step=epoch,
            )
            tmp = ckpt.with_suffix(".tmp")
            tmp.write_bytes(contents[epoch])
            os.replace(tmp, ckpt)  # atomic save of the next epoch, as the training loop does
            kept = run.log_checkpoint(
                ckpt, "ckpt-erm0001", {"val_acc": 0.2 * epoch, "epoch": epoch}, is_best=epoch == 1
            )
            assert kept.read_bytes() == contents[epoch]
        run.log_table("per_composition", ["composition", "accuracy"], [["Identity", 0.9], [LONG_NAME, 0.4]])
        run.summary_update({"best_val_acc": 0.2, "best_epoch": 1})
        folder = run.run_folder
    assert os.environ["WANDB_DIR"] == "/caller/own/dir" and "WANDB_DATA_DIR" not in os.environ

    result = read_run(folder)
    assert (result.id, result.group, result.job_type, result.name) == (
        "erm0001",
        "exp-test",
        "erm",
        "erm-erm0001",
    )
    assert result.tags == ["emnist", "erm"] and result.exit_code == 0
    cfg = result.config
    assert cfg["cmdline"] == "train --key <redacted>" and cfg["cli_arg"] == "<redacted>"
    assert cfg["wandb"] == {"api_token": "<redacted>"}
    assert cfg["compositions"] == [LONG_NAME] and cfg["config_hash"] == "9f2c1e" and cfg["scalar"] == 0.5
    assert cfg["inputs"] == ["data-emnist:latest"]
    assert len(cfg["git_commit"]) == 40 and isinstance(cfg["git_dirty"], bool)
    assert [row["_step"] for row in result.history] == [0, 1, 2]
    assert result.history[1]["val/acc"] == 0.2 and result.history[2]["epoch_time"] == 1.5
    assert result.summary["best_val_acc"] == 0.2 and result.summary["best_epoch"] == 1
    table = json.loads(result.tables["per_composition"].read_text())
    assert table["data"] == [["Identity", 0.9], [LONG_NAME, 0.4]]

    models = [a for a in result.artifacts if a.type == "model"]
    assert [sorted(m.aliases) for m in models] == [["latest"], ["best", "latest"], ["latest"]]
    assert models[1].name == "ckpt-erm0001" and models[1].metadata == {"val_acc": 0.2, "epoch": 1}
    ((path_in_artifact, location),) = models[1].files
    assert path_in_artifact == "last.pt"
    # policy "immutable" on a hard link: no staging copy
    assert Path(location).parent == out.resolve() / "wandb-data" / "checkpoints" / "ckpt-erm0001"
    assert Path(location).read_bytes() == contents[1]  # unchanged by the later epochs' saves

    for file in out.rglob("*"):  # secrets appear in no file: logs, transaction log, lineage, tables
        if file.is_file():
            data = file.read_bytes()
            for secret in (ENV_KEY, SHAPED_KEY, TOKEN):
                assert secret.encode() not in data, f"{secret} leaked into {file}"

    with _start(out, "eval0001", job_type="eval") as downstream:
        best = downstream.use_input("ckpt-erm0001:best", required_by="eval", produced_by_stage="erm")
        latest = downstream.use_input("ckpt-erm0001", required_by="eval", produced_by_stage="erm")
        second = downstream.run_folder
    assert best.read_bytes() == contents[1] and latest.read_bytes() == contents[2]
    cfg = read_run(second).config
    assert cfg["inputs"] == ["ckpt-erm0001:best", "ckpt-erm0001:latest"]
    assert cfg["input_lineage"]["ckpt-erm0001:best"]["run_id"] == "erm0001"
    assert cfg["input_lineage"]["ckpt-erm0001:best"]["digest"] == file_digest(best)
    # the dashboard gets no machine-specific file paths: the local lineage record keeps them
    assert str(out.resolve()) not in json.dumps(cfg), "an absolute path reached the W&B config"
    assert downstream.lineage.resolve("ckpt-erm0001:best").path == str(best)


def test_missing_input_names_the_stage_and_fails_the_run(tmp_path, no_credentials):
    with pytest.raises(
        UserError,
        match=r"eval needs artifact 'ckpt-nope:best', which does not exist yet: "
        r"run stage 'erm' first",
    ):
        with _start(tmp_path, "eval0002", job_type="eval") as run:
            folder = run.run_folder
            run.use_input("ckpt-nope:best", required_by="eval", produced_by_stage="erm")
    assert read_run(folder).exit_code == 1  # the context manager finished the run as failed
    assert "WANDB_DIR" not in os.environ or os.environ["WANDB_DIR"] != str(tmp_path.resolve() / "wandb")


def test_changed_input_file_is_refused(tmp_path, no_credentials):
    with _start(tmp_path, "erm0003", mode="disabled") as run:
        ckpt = tmp_path / "model.pt"
        ckpt.write_bytes(b"weights")
        kept = run.log_checkpoint(ckpt, "ckpt-erm0003", {}, is_best=True)
    kept.chmod(0o600)
    kept.write_bytes(b"tampered")
    with _start(tmp_path, "eval0003", job_type="eval", mode="disabled") as run:
        with pytest.raises(UserError, match="no longer matches its recorded digest.*re-run stage 'erm'"):
            run.use_input("ckpt-erm0003:best", required_by="eval", produced_by_stage="erm")


def test_resume_keeps_one_run_id(tmp_path, no_credentials):
    ids = []
    for attempt in range(2):
        with _start(tmp_path, "erm0004") as run:
            run.log({"attempt": attempt}, step=attempt)
            ids.append(run.id)
    folders = find_runs(tmp_path / "wandb")
    assert ids == ["erm0004", "erm0004"]
    assert len(folders) == 2 and {read_run(f).id for f in folders} == {"erm0004"}
    assert [read_run(f).history[0]["attempt"] for f in folders] == [0, 1]


def test_one_open_run_per_process_and_finish_is_idempotent(tmp_path, no_credentials):
    run = _start(tmp_path, "erm0005", mode="disabled")
    with pytest.raises(RuntimeError, match="still open"):
        _start(tmp_path, "erm0006", mode="disabled")
    run.finish()
    run.finish()
    _start(tmp_path, "erm0006", mode="disabled").finish()


def test_disabled_mode_writes_no_wandb_files_but_keeps_lineage(tmp_path, monkeypatch, no_credentials):
    monkeypatch.delenv("WANDB_MODE")
    with _start(tmp_path, "erm0007", mode="disabled") as run:
        assert run.mode == "disabled" and run.run_folder is None
        run.log({"loss": 1.0}, step=0)
        run.log_table("t", ["a"], [[1]])
        run.summary_update({"x": 1})
        ckpt = tmp_path / "m.pt"
        ckpt.write_bytes(b"abc")
        run.log_checkpoint(ckpt, "ckpt-erm0007", {"val_acc": 0.5}, aliases=("latest", "final"))
    assert find_runs(tmp_path / "wandb") == []
    with _start(tmp_path, "eval0007", mode="disabled") as run:
        assert run.use_input("ckpt-erm0007:final", "eval", "erm").read_bytes() == b"abc"
        assert run.config["inputs"] == ["ckpt-erm0007:final"]


def test_resolve_mode(tmp_path, monkeypatch, no_credentials):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("online") == "disabled"  # the environment wins over the experiment's mode
    assert resolve_mode("online", override="offline") == "offline"  # and a command-line --mode over both
    with pytest.raises(UserError, match="--mode is 'sometimes'"):
        resolve_mode(override="sometimes")
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode("auto") == "offline"
    monkeypatch.delenv("WANDB_MODE")
    assert resolve_mode() == "offline"
    assert resolve_mode("disabled") == "disabled"
    with pytest.raises(UserError, match=r"no W&B credentials.*`wandb login`.*WANDB_API_KEY"):
        resolve_mode("online")
    with pytest.raises(UserError, match="use one of auto, online, offline, disabled"):
        resolve_mode("sometimes")

    monkeypatch.setenv("WANDB_API_KEY", ENV_KEY)
    assert resolve_mode() == "online" and resolve_mode("online") == "online"
    monkeypatch.delenv("WANDB_API_KEY")

    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine wandb.example.org:8080\n  login user\n  password {ENV_KEY}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert resolve_mode() == "offline"  # a key for another host does not count
    monkeypatch.setenv("WANDB_BASE_URL", "http://wandb.example.org:8080")
    assert resolve_mode() == "online"
    assert ENV_KEY in tracking.configured_api_keys()


def test_scrub_keeps_digests_and_names():
    commit = "c5ec1e003d910cfef84393900f331b6a29a352c5"
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
    config = {
        "git_commit": commit,
        "name": LONG_NAME,
        "jwt": jwt,
        "password": "hunter2",
        "empty_token": "",
        "n": np.int64(3),
        "path": Path("/data/x"),
        "ids": (1, 2),
        "note": "uses KEY123",
        "nested": [{"secret": 1}],
    }
    assert scrub(config, ["KEY123"]) == {
        "git_commit": commit,
        "name": LONG_NAME,
        "jwt": "<redacted>",
        "password": "<redacted>",
        "empty_token": "",
        "n": 3,
        "path": "/data/x",
        "ids": [1, 2],
        "note": "uses <redacted>",
        "nested": [{"secret": "<redacted>"}],
    }


def test_lineage_store_concurrent_writers(tmp_path):
    store = LineageStore(tmp_path / "lineage")
    errors: list[Exception] = []

    def write(worker: int) -> None:
        try:
            for i in range(40):
                store.record(
                    "ckpt-abc", "latest", tmp_path / f"w{worker}-{i}.pt", f"run{worker}", {"i": i}, "d"
                )
                rec = store.resolve("ckpt-abc:latest")
                assert rec is not None and rec.name == "ckpt-abc"
        except Exception as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store.record("ckpt-abc", "best", tmp_path / "b.pt", "run9", {"val_acc": 0.5}, "d2")
    assert [r.ref for r in store.list()] == ["ckpt-abc:best", "ckpt-abc:latest"]
    files = sorted(p.name for p in (tmp_path / "lineage" / "ckpt-abc").iterdir())
    assert files == ["best.json", "latest.json"]  # no temporary files left behind
    assert store.resolve("ckpt-none:best") is None
    assert ArtifactRef.parse("ckpt-abc") == ArtifactRef("ckpt-abc", "latest")
    with pytest.raises(UserError, match="name:alias"):
        ArtifactRef.parse("../etc:passwd")


def test_an_experiment_moved_as_a_whole_still_finds_its_checkpoints(tmp_path):
    """Lineage records a checkpoint inside the experiment's folder relative to it: moving or copying the folder
    keeps every artifact resolvable (an absolute path outside it stays absolute)."""
    first = tmp_path / "first" / "exp"
    (first / "wandb-data").mkdir(parents=True)
    (first / "wandb-data" / "model.pt").write_bytes(b"weights")
    outside = tmp_path / "elsewhere.pt"
    store = LineageStore(first / "lineage")
    recorded = store.record("model-a", "best", first / "wandb-data" / "model.pt", "a", {}, "d")
    store.record("model-b", "best", outside, "b", {}, "d")
    assert Path(recorded.path) == (first / "wandb-data" / "model.pt").resolve()
    on_disk = json.loads((first / "lineage" / "model-a" / "best.json").read_text())
    assert on_disk["path"] == str(Path("wandb-data") / "model.pt")
    moved = tmp_path / "second" / "exp"
    moved.parent.mkdir()
    first.rename(moved)
    again = LineageStore(moved / "lineage")
    rec = again.resolve("model-a:best")
    assert rec is not None and Path(rec.path) == moved / "wandb-data" / "model.pt"
    assert Path(rec.path).read_bytes() == b"weights"
    assert again.resolve("model-b:best").path == str(outside.resolve())
