"""Generated elemental sets: contents, manifest, idempotence, atomicity, hash checks, W&B artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from comprobust.corruptions import ELEMENTALS, corrupt_batch
from comprobust.data import (
    ELEMENTAL_SETS,
    MixedElementalLoader,
    generation,
    load_elemental_sets,
    prepare_elemental_sets,
)
from comprobust.errors import UserError


def test_prepare_writes_arrays_and_manifest(small_mnist, tmp_path: Path) -> None:
    manifest_path = prepare_elemental_sets(small_mnist, tmp_path / "sets", seed=7)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["dataset"] == "mnist5k" and manifest["seed"] == 7
    assert manifest["sources"]["train"]["count"] == 400 and manifest["sources"]["valid"]["count"] == 100
    assert len(manifest["files"]) == 2 * (1 + 7)
    entry = manifest["files"]["train-ImpulseNoise.npy"]
    assert (entry["split"], entry["corruption"], entry["count"], entry["seed"]) == (
        "train",
        "ImpulseNoise",
        400,
        7,
    )
    assert len(entry["sha256"]) == 64
    sets = load_elemental_sets(tmp_path / "sets", small_mnist, "train")
    assert sets.corruptions == ELEMENTAL_SETS and isinstance(sets.arrays[0], np.memmap)
    assert sets.arrays[0].dtype == np.uint8 and sets.arrays[0].shape == (400, 1, 28, 28)
    assert np.array_equal(sets.labels, small_mnist.train.labels.numpy())
    for name, array in zip(sets.corruptions, sets.arrays, strict=True):
        expected = corrupt_batch(small_mnist.train.images, name, seed=7, indices=np.arange(400))
        assert np.array_equal(array, expected.numpy()), name


def test_rerun_is_a_no_op_and_loader_matches_in_memory(small_mnist, tmp_path: Path) -> None:
    out = tmp_path / "sets"
    manifest_path = prepare_elemental_sets(small_mnist, out, splits=("train",))
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert prepare_elemental_sets(small_mnist, out, splits=("train",)) == manifest_path
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamps
    from_disk = list(MixedElementalLoader(small_mnist, batch_size=128, seed=3, generated=out).batches(1))
    in_memory = list(MixedElementalLoader(small_mnist, batch_size=128, seed=3).batches(1))
    assert len(from_disk) == len(in_memory) == 400 * 7 // 128
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(from_disk, in_memory, strict=True)
    )


def test_killed_generation_leaves_no_half_file_and_resumes(small_mnist, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "sets"
    real = generation.corrupted_chunks
    calls = {"n": 0}

    def dying(split, corruption, seed, chunk_size=2048):
        calls["n"] += 1
        for i, chunk in enumerate(real(split, corruption, seed, chunk_size=64)):
            if calls["n"] == 3 and i == 2:
                raise KeyboardInterrupt  # killed in the middle of the third file
            yield chunk

    monkeypatch.setattr(generation, "corrupted_chunks", dying)
    with pytest.raises(KeyboardInterrupt):
        prepare_elemental_sets(small_mnist, out, splits=("train",))
    listed = json.loads((out / "manifest.json").read_text())["files"]
    assert set(listed) == {"train-labels.npy", "train-Identity.npy", "train-Contrast.npy"}
    assert not (out / "train-GaussianBlur.npy").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]  # the half-written temporary is gone
    with pytest.raises(UserError, match="has no generated train set for GaussianBlur"):
        load_elemental_sets(out, small_mnist, "train")
    monkeypatch.setattr(generation, "corrupted_chunks", real)
    stamp = (out / "train-Contrast.npy").stat().st_mtime_ns
    prepare_elemental_sets(small_mnist, out, splits=("train",))
    assert (out / "train-Contrast.npy").stat().st_mtime_ns == stamp  # kept, not regenerated
    sets = load_elemental_sets(out, small_mnist, "train")
    expected = corrupt_batch(
        small_mnist.train.images, "GaussianBlur", seed=generation.GENERATION_SEED, indices=np.arange(400)
    )
    assert np.array_equal(sets.arrays[ELEMENTAL_SETS.index("GaussianBlur")], expected.numpy())


def test_corrupted_file_is_named_and_never_regenerated(small_mnist, tmp_path: Path) -> None:
    out = tmp_path / "sets"
    prepare_elemental_sets(small_mnist, out, splits=("valid",))
    target = out / "valid-Swirl.npy"
    corrupted = bytearray(target.read_bytes())
    corrupted[-10:] = bytes(b ^ 0xFF for b in corrupted[-10:])
    with open(target, "r+b") as handle:  # in place, as a disk error or a stray write would
        handle.write(corrupted)
    with pytest.raises(UserError, match=f"{target} does not match its SHA-256"):
        load_elemental_sets(out, small_mnist, "valid")
    with pytest.raises(UserError, match=f"{target} does not match its SHA-256"):
        prepare_elemental_sets(small_mnist, out, splits=("valid",))
    assert target.read_bytes() == corrupted


def test_folder_of_another_request_is_refused(small_mnist, tmp_path: Path) -> None:
    out = tmp_path / "sets"
    prepare_elemental_sets(small_mnist, out, splits=("valid",), seed=1)
    with pytest.raises(UserError, match="already holds elemental sets for seed 1 \\(asked: 2\\)"):
        prepare_elemental_sets(small_mnist, out, splits=("valid",), seed=2)
    with pytest.raises(UserError, match="no generated elemental sets"):
        load_elemental_sets(tmp_path / "empty", small_mnist, "valid")


def test_loader_refuses_sets_from_another_split(small_mnist, tmp_path: Path) -> None:
    from comprobust.data import load_dataset

    out = tmp_path / "sets"
    prepare_elemental_sets(small_mnist, out, splits=("valid",))
    other = load_dataset("mnist5k", root=small_mnist.root, split_sizes={"train": 40, "valid": 12, "test": 10})
    with pytest.raises(UserError, match="generated from another valid split"):
        MixedElementalLoader(other, split="valid", generated=out)


def test_dataset_artifact_logged_by_reference_when_a_run_is_active(
    small_mnist, tmp_path: Path, monkeypatch
) -> None:
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    out = tmp_path / "sets"
    prepare_elemental_sets(small_mnist, out, splits=("valid",), corruptions=("Identity",) + ELEMENTALS[:1])
    run = wandb.init(project="comprobust-test", dir=str(tmp_path), mode="offline")
    try:
        artifact = generation.log_dataset_artifact(out / "manifest.json")
    finally:
        run.finish()
    assert (
        artifact is not None and artifact.type == "dataset" and artifact.name.startswith("elementals-mnist5k")
    )
    entries = artifact.manifest.entries
    assert entries["valid-Contrast.npy"].ref == f"file://{(out / 'valid-Contrast.npy').resolve()}"
    assert entries["manifest.json"].ref is None  # the manifest (with the hashes) is stored by value
    assert generation.log_dataset_artifact(out / "manifest.json") is None  # no run, nothing logged
