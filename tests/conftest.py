"""Shared fixtures: tiny fake datasets in the REAL on-disk formats, a small offline dataset, no network."""

from __future__ import annotations

import os
import pickle
import socket
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test`: two workers on two cores, one thread each (children too)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a network connection fails."""

    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def importable_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    """Put this checkout and tests/ on PYTHONPATH: job processes (local or sbatch, which exports the submitting
    environment) then import comprobust and the shared toy jobs (`toy_jobs`) wherever pytest was started, so job
    code travels by reference and its tracebacks show real files and source lines."""
    tests = Path(__file__).resolve().parent
    paths = [str(tests.parent), str(tests), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, paths)))


SLURM_START_HINT = "no Slurm controller answers `scontrol ping`: run `bash scripts/local_slurm.sh start` first"


@pytest.fixture(scope="module")
def live_slurm(request: pytest.FixtureRequest) -> None:
    """Skip without a live Slurm, but fail when the Slurm tests were asked for (`-m slurm`)."""
    from comprobust.cluster import slurm_is_up

    if not slurm_is_up():
        markexpr = request.config.getoption("-m") or ""
        if "slurm" in markexpr and "not slurm" not in markexpr:
            pytest.fail(SLURM_START_HINT)
        pytest.skip(SLURM_START_HINT)


@pytest.fixture(scope="session")
def small_mnist(tmp_path_factory: pytest.TempPathFactory):
    """The offline default with 40/10/10 images per class (400/100/100)."""
    from comprobust.data import load_dataset

    root = tmp_path_factory.mktemp("mnist5k-root")
    return load_dataset("mnist5k", root=root, split_sizes={"train": 40, "valid": 10, "test": 10})


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fake_emnist(root: Path, train_per_class: int = 6, test_per_class: int = 3, seed: int = 0) -> dict:
    """EMNIST-balanced IDX files (uncompressed, glyphs stored transposed like the real ones), shuffled order.

    Returns the UPRIGHT images and labels as the file order has them.
    """
    rng = np.random.default_rng(seed)
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for part, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(47), per_class)).astype(np.uint8)
        upright = rng.integers(0, 256, (len(labels), 28, 28), dtype=np.uint8)
        _write_idx(raw / f"emnist-balanced-{part}-images-idx3-ubyte", upright.transpose(0, 2, 1))
        _write_idx(raw / f"emnist-balanced-{part}-labels-idx1-ubyte", labels)
        arrays[part] = (upright, labels.astype(np.int64))
    return arrays


def write_fake_cifar(
    root: Path, per_class_per_batch: int = 2, test_per_class: int = 3, seed: int = 0
) -> dict:
    """CIFAR-10 python pickles (5 data batches, test batch, batches.meta). Returns (N, 3, 32, 32) arrays."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = [(f"data_batch_{i}", per_class_per_batch) for i in range(1, 6)] + [
        ("test_batch", test_per_class)
    ]
    arrays: dict = {"train": ([], []), "test": ([], [])}
    for name, per_class in batches:
        labels = rng.permutation(np.repeat(np.arange(10), per_class))
        images = rng.integers(0, 256, (len(labels), 3, 32, 32), dtype=np.uint8)
        with open(folder / name, "wb") as handle:
            pickle.dump(
                {"data": images.reshape(len(labels), -1), "labels": labels.tolist()}, handle, protocol=2
            )
        part = "test" if name == "test_batch" else "train"
        arrays[part][0].append(images)
        arrays[part][1].append(labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump(
            {
                "label_names": [
                    "airplane",
                    "automobile",
                    "bird",
                    "cat",
                    "deer",
                    "dog",
                    "frog",
                    "horse",
                    "ship",
                    "truck",
                ]
            },
            handle,
            protocol=2,
        )
    return {
        part: (np.concatenate(images), np.concatenate(labels).astype(np.int64))
        for part, (images, labels) in arrays.items()
    }


@pytest.fixture
def cifar_md5_bypass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake CIFAR files cannot match the official md5s: accept any existing file (inside tests only)."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath)
    )


# the project's own W&B-compatible server (tests/wandb_server): `wandb_server` for one test, the session's server
from wandb_server.fixture import _wandb_server_session, wandb_server  # noqa: E402,F401  fixtures
