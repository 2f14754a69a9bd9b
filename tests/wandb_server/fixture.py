"""The `wandb_server` pytest fixture: a local W&B-compatible server per test (state reset between tests).

Import it into a conftest: `from tests.wandb_server.fixture import wandb_server  # noqa: F401`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import golden
from .graphql import KNOWN_OPERATIONS
from .server import WandbServer
from .state import ServerState

FAKE_API_KEY = "local-" + "0123456789abcdef" * 2 + "01234567"  # 46 characters


class LocalWandb:
    """What the fixture yields: the server, its state, fault injection and the client environment."""

    def __init__(self, server: WandbServer, root: Path) -> None:
        self.server = server
        self.root = root
        self.url: str = server.url
        self.entity: str = server.entity
        self.api_key: str = FAKE_API_KEY

    @property
    def state(self) -> ServerState:
        """The server's recorded state."""
        return self.server.state

    def inject(self, target: str, kind: str, times: int = 1) -> None:
        """Fail the next `times` requests to `target` (see `WandbServer.inject`)."""
        self.server.inject(target, kind, times)

    def query_drift(self) -> list[str]:
        """Operations whose query texts (seen so far in this test) differ from the golden files."""
        with self.state.lock:
            return golden.drift(self.state.queries)

    def env(self) -> dict[str, str]:
        """The environment variables a client process needs to talk to this server and nothing else."""
        dirs = {
            name: self.root / name.lower()
            for name in (
                "WANDB_CONFIG_DIR",
                "WANDB_DIR",
                "WANDB_CACHE_DIR",
                "WANDB_DATA_DIR",
                "WANDB_ARTIFACT_DIR",
            )
        }
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        return {
            "WANDB_BASE_URL": self.url,
            "WANDB_API_KEY": self.api_key,
            "WANDB_MODE": "online",
            "WANDB_ENTITY": self.entity,
            "WANDB_SILENT": "true",
            "WANDB_CONSOLE": "off",
            "WANDB_DISABLE_GIT": "true",
            "WANDB_DISABLE_CODE": "true",
            "WANDB_X_DISABLE_STATS": "true",
            "WANDB_X_DISABLE_MACHINE_INFO": "true",
            "WANDB_INIT_TIMEOUT": "30",
            "WANDB_X_GRAPHQL_RETRY_MAX": "2",
            "WANDB_X_GRAPHQL_RETRY_WAIT_MAX_SECONDS": "1",
            "WANDB_X_FILE_STREAM_RETRY_MAX": "2",
            "WANDB_X_FILE_STREAM_RETRY_WAIT_MAX_SECONDS": "1",
            "WANDB_X_FILE_TRANSFER_RETRY_MAX": "1",
            "WANDB_X_FILE_TRANSFER_RETRY_WAIT_MAX_SECONDS": "1",
            **{k: str(v) for k, v in dirs.items()},
        }

    def subprocess_env(self) -> dict[str, str]:
        """`os.environ` without any WANDB_* of the caller, plus `env()` and this Python first on PATH: for
        `subprocess.run(..., env=)`."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        # `wandb agent` starts `python <program>` from PATH: this interpreter's (the venv's) first
        base["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), base.get("PATH", "")])
        return {**base, **self.env()}

    def monkeypatch_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point this process's wandb at the server (and drop any other WANDB_* settings)."""
        for key in list(os.environ):
            if key.startswith("WANDB_"):
                monkeypatch.delenv(key)
        for key, value in self.env().items():
            monkeypatch.setenv(key, value)


@pytest.fixture(scope="session")
def _wandb_server_session() -> Iterator[WandbServer]:
    server = WandbServer().start()
    yield server
    server.stop()


@pytest.fixture
def wandb_server(_wandb_server_session: WandbServer, tmp_path: Path) -> Iterator[LocalWandb]:
    """A local W&B server (shared by the session, state reset for each test), with a private wandb home."""
    _wandb_server_session.reset()
    root = tmp_path / "wandb-home"
    root.mkdir()
    yield LocalWandb(_wandb_server_session, root)
    if os.environ.get("WANDB_SERVER_CAPTURE") == "1":
        with _wandb_server_session.state.lock:
            queries = _wandb_server_session.state.queries
            golden.capture({op: texts for op, texts in queries.items() if op in KNOWN_OPERATIONS})
    _wandb_server_session.reset()
