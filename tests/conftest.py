"""Shared fixtures: tiny fake datasets in the REAL on-disk formats, a small offline dataset, no network."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get(
    "PYTEST_XDIST_WORKER"
):  # `make test`: two workers on two cores, one thread each (children too)
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


SLURM_START_HINT = (
    "no Slurm controller answers `scontrol ping`: run `bash scripts/local_slurm.sh start` first"
)


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
    from comprobust.data.dataset import load_dataset

    root = tmp_path_factory.mktemp("mnist5k-root")
    return load_dataset("mnist5k", root=root, split_sizes={"train": 40, "valid": 10, "test": 10})


@pytest.fixture
def cifar_md5_bypass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake CIFAR files cannot match the official md5s: accept any existing file (inside tests only)."""
    import torchvision.datasets.cifar

    monkeypatch.setattr(
        torchvision.datasets.cifar, "check_integrity", lambda fpath, md5=None: os.path.isfile(fpath)
    )


# the project's own W&B-compatible server (tests/wandb_server): `wandb_server` for one test, the session's server
from wandb_server.fixture import _wandb_server_session, wandb_server  # noqa: E402,F401  fixtures
