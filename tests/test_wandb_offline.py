"""The `.wandb` reader against a real offline run folder written by the pinned wandb (tests/fixtures/...)."""

from __future__ import annotations

import json
import shutil
import struct
import time
import zlib
from pathlib import Path

import pytest

from comprobust.wandb_log import BLOCK_SIZE, HEADER, CorruptRunFileError, iter_records
from comprobust.wandb_offline import (
    ArtifactFile,
    find_runs,
    plain_config,
    read_run,
    wait_for_exit_record,
)

FIXTURE = Path(__file__).parent / "fixtures" / "wandb_offline_run"
LOG = FIXTURE / "run-fixture01.wandb"

EXPECTED_CONFIG = {
    "seed": 0,
    "lr": 0.05,
    "epochs": 3,
    "model": {"name": "cnn", "widths": [32, 64]},
    "augment": True,
    "note": None,
    "long_text": "0123456789abcdef" * 4375,
    "inputs": ["data-emnist:latest"],
}
EXPECTED_EPOCHS = [
    {"epoch": 0, "train/loss": 2.0, "train/acc": 0.25, "val/loss": 1.5, "val/acc": 0.5, "lr": 0.05},
    {"epoch": 1, "train/loss": 1.0, "train/acc": 0.5, "val/loss": 1.25, "val/acc": 0.625, "lr": 0.025},
    {"epoch": 2, "train/loss": 0.5, "train/acc": 0.75, "val/loss": 1.0, "val/acc": 0.75, "lr": 0.0},
]


def test_fixture_is_small_and_has_no_noise():
    files = [p for p in FIXTURE.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 200_000
    assert not (FIXTURE / "logs").exists() and not (FIXTURE / "files" / "requirements.txt").exists()


def test_fixture_reads_back_exact_values():
    run = read_run(FIXTURE)
    assert (run.id, run.name, run.project, run.group, run.job_type) == (
        "fixture01",
        "erm-emnist-s0",
        "comprobust-fixture",
        "exp-fixture",
        "erm",
    )
    assert run.tags == ["emnist", "erm"]
    assert run.sweep_id == "fixsweep1"
    assert run.exit_code == 0 and run.state == "finished" and not run.truncated
    assert run.config == EXPECTED_CONFIG
    assert all(type(v) in (int, float, str, bool, list, dict, type(None)) for v in run.config.values())

    assert [row["_step"] for row in run.history] == [0, 1, 2]
    for row, expected in zip(run.history, EXPECTED_EPOCHS):
        assert {k: row[k] for k in expected} == expected
        assert row["_runtime"] >= 0 and row["_timestamp"] > 1.7e9

    assert run.summary["best"] == {"val_acc": 0.75, "epoch": 2}
    assert "scratch" not in run.summary  # set, then removed: the remove record is applied
    assert "_wandb" not in run.summary
    assert {k: run.summary[k] for k in EXPECTED_EPOCHS[-1]} == EXPECTED_EPOCHS[-1]
    assert run.summary["_step"] == 2

    table = run.tables["per_composition"]
    assert table.parent == FIXTURE / "files" / "media" / "table"
    content = json.loads(table.read_text())
    assert content["columns"] == ["composition", "accuracy"]
    assert content["data"] == [["Identity", 0.75], ["Contrast", 0.5], ["Contrast-Rotate", 0.25]]
    assert run.history[2]["per_composition"]["_type"] == "table-file"

    by_type = {a.type: a for a in run.artifacts}
    model = by_type["model"]
    assert model.name == "ckpt-fixture01"
    assert model.aliases == ["latest", "best"]
    assert model.metadata == {"val_acc": 0.75, "epoch": 2}
    assert model.digest == "3f8082ff5f256e1f7996af8cf915cd2e"
    assert len(model.files) == 1 and model.files[0].path == "model.pt"
    assert model.files[0].location.endswith("/model.pt")  # policy="immutable": the original path, no staging
    ((path_in_artifact, location),) = model.files  # files unpack as (path-in-artifact, local path or ref)
    assert isinstance(model.files[0], ArtifactFile) and path_in_artifact == "model.pt"
    assert by_type["run_table"].name == "run-fixture01-per_composition"
    assert run.record_counts["history"] == 3 and run.record_counts["exit"] == 1


def test_fixture_spans_blocks_with_fragments():
    data = LOG.read_bytes()
    assert data[:7] == HEADER and len(data) > 2 * BLOCK_SIZE
    offsets = [offset for offset, _ in iter_records(LOG)]
    assert offsets[0] == 7 and offsets == sorted(offsets)


def test_truncated_copies_read_their_complete_prefix(tmp_path):
    full = read_run(FIXTURE)
    data = LOG.read_bytes()
    copy = tmp_path / "run-fixture01.wandb"
    previous_rows = 0
    for cut in [*range(0, len(data), 499), len(data) - 10, len(data) - 1]:
        copy.write_bytes(data[:cut])
        run = read_run(copy)  # never raises on a cut tail
        assert run.id == "fixture01"
        assert run.exit_code is None
        assert len(run.history) >= previous_rows
        previous_rows = len(run.history)
        assert run.history == full.history[: len(run.history)]
        if run.config:
            assert run.config["long_text"] == EXPECTED_CONFIG["long_text"]
    copy.write_bytes(data[:7])  # a live run before wandb-core's first flush: only the header
    assert not read_run(copy).truncated and read_run(copy).state == "running"
    copy.write_bytes(data[: len(data) - 10])  # only the exit record is cut
    run = read_run(copy)
    assert run.history == full.history and run.artifacts == full.artifacts and run.state == "running"
    assert run.truncated
    copy.write_bytes(data[:40_000])  # inside the 70 kB run record (FIRST and MIDDLE present, LAST missing)
    run = read_run(copy)
    assert run.truncated and run.config == {} and run.history == []


@pytest.mark.parametrize("where", ["middle", "fragment", "last"])
def test_corrupt_byte_names_file_and_offset(tmp_path, where):
    data = bytearray(LOG.read_bytes())
    offsets = [offset for offset, _ in iter_records(LOG)]
    target = {"middle": offsets[len(offsets) // 2], "fragment": BLOCK_SIZE, "last": offsets[-1]}[where]
    data[target + 9] ^= 0xFF
    bad = tmp_path / "run-fixture01.wandb"
    bad.write_bytes(bytes(data))
    with pytest.raises(CorruptRunFileError) as err:
        read_run(bad)
    message = str(err.value)
    assert str(bad) in message and f"offset {target}" in message and "CRC" in message


def test_wrong_header_is_reported(tmp_path):
    bad = tmp_path / "run-x.wandb"
    bad.write_bytes(b"not a wandb log at all")
    with pytest.raises(CorruptRunFileError, match="not a W&B transaction log"):
        read_run(bad)


def test_find_runs_lists_each_run_folder_once(tmp_path):
    runs_dir = tmp_path / "wandb"
    first = runs_dir / "offline-run-20260101_000000-aaa"
    second = runs_dir / "run-20260102_000000-bbb"
    resumed = runs_dir / "offline-run-20260101_000000-aaa-1"
    for folder, run_id in ((first, "aaa"), (second, "bbb"), (resumed, "aaa")):
        folder.mkdir(parents=True)
        shutil.copy(LOG, folder / f"run-{run_id}.wandb")
    (runs_dir / "offline-run-20260103_000000-empty").mkdir()
    (runs_dir / "latest-run").symlink_to(second)
    (runs_dir / "debug.log").write_text("")
    assert find_runs(tmp_path) == [first, resumed, second]
    assert find_runs(runs_dir) == [first, resumed, second]
    assert find_runs(tmp_path / "missing") == []


def test_plain_config_unwraps_the_online_form():
    wrapped = {
        "_wandb": {"value": {"cli_version": "0.31.0"}},
        "lr": {"value": 0.1, "desc": None},
        "model": {"value": {"name": "cnn"}},
    }
    assert plain_config(wrapped) == {"lr": 0.1, "model": {"name": "cnn"}}
    assert plain_config(EXPECTED_CONFIG) == EXPECTED_CONFIG


def _write_log(path: Path, payloads: list[bytes]) -> None:
    """An independent writer of the LevelDB-style log, to test odd alignments the fixture does not reach."""
    out = bytearray(HEADER)
    for payload in payloads:
        first = True
        while True:
            room = BLOCK_SIZE - len(out) % BLOCK_SIZE
            if room < 7:
                out += b"\0" * room
                continue
            chunk, payload = payload[: room - 7], payload[room - 7 :]
            kind = (1 if not payload else 2) if first else (4 if not payload else 3)
            crc = zlib.crc32(chunk, zlib.crc32(bytes((kind,))))
            out += struct.pack("<IHB", crc, len(chunk), kind) + chunk
            first = False
            if not payload:
                break
    path.write_bytes(bytes(out))


def test_synthetic_log_with_many_rows_and_padding(tmp_path):
    from wandb.proto.wandb_internal_pb2 import Record

    def record(**kwargs) -> bytes:
        rec = Record()
        if "run_id" in kwargs:
            rec.run.run_id = kwargs["run_id"]
        else:
            for key, value in kwargs["row"].items():
                item = rec.history.item.add()
                item.key = key
                item.value_json = json.dumps(value)
        return rec.SerializeToString()

    rows = [{"_step": i, "loss": 1 / (i + 1), "pad": "x" * (i % 97)} for i in range(3000)]
    rows[1500]["big"] = "y" * 100_000  # spans four blocks
    path = tmp_path / "run-synth.wandb"
    _write_log(path, [record(run_id="synth")] + [record(row=r) for r in rows])
    run = read_run(path)
    assert run.id == "synth" and run.history == rows and not run.truncated


@pytest.mark.slow
def test_20k_row_history_from_real_wandb(tmp_path, monkeypatch):
    """Writes 20,001 rows with the real client (about 10 s) and reads them back; prints the read time."""
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "data"))
    run = wandb.init(
        mode="offline",
        dir=str(tmp_path),
        project="p",
        id="big20k",
        settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
    )
    for step in range(20_001):
        run.log({"loss": 1.0 / (step + 1), "acc": step / 20_000}, step=step)
    run.finish()
    (folder,) = find_runs(tmp_path)
    assert wait_for_exit_record(folder, timeout_s=60), "finish returns before wandb-core has written the log"
    start = time.perf_counter()
    result = read_run(folder)
    elapsed = time.perf_counter() - start
    size_mb = next(folder.glob("*.wandb")).stat().st_size / 1e6
    print(f"read_run of 20,001 history rows ({size_mb:.1f} MB log): {elapsed:.2f} s")
    assert len(result.history) == 20_001 and result.history[-1]["_step"] == 20_000
    assert result.summary["acc"] == 1


def test_tail_exit_code_reads_only_the_end(tmp_path):
    from comprobust.wandb_offline import tail_exit_code

    assert tail_exit_code(FIXTURE) == 0  # starts inside the fragmented run record and skips its fragments
    data = LOG.read_bytes()
    copy = tmp_path / "run-fixture01.wandb"
    copy.write_bytes(data[:-10])
    assert tail_exit_code(copy) is None
    copy.write_bytes(data[:7])
    assert tail_exit_code(copy) is None
