"""HTTP plumbing of the local W&B server: routing, storage, file_stream, telemetry and fault injection."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .graphql import GraphQL
from .state import ServerState, now_iso

_FILE_STREAM = re.compile(r"^/files/([^/]+)/([^/]+)/([^/]+)/file_stream$")


@dataclass
class Fault:
    """An injected fault: `kind` is "http500", "drop" or "slow:<seconds>"; applies `times` more times."""

    pattern: str
    kind: str
    times: int

    def matches(self, target: str) -> bool:
        return self.pattern == target or re.fullmatch(self.pattern, target) is not None


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (wandb-core at exit, dropped-connection faults) are not errors."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class WandbServer:
    """A W&B-compatible server on 127.0.0.1 (a random free port unless `port`), served from a daemon thread."""

    def __init__(self, port: int = 0, entity: str = "local-entity") -> None:
        self.state = ServerState()
        self.entity = entity
        self.faults: list[Fault] = []
        self._faults_lock = threading.Lock()
        self.httpd = _QuietServer(("127.0.0.1", port), _make_handler(self))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.graphql = GraphQL(self.state, self.url, entity)
        self._thread: threading.Thread | None = None

    def start(self) -> WandbServer:
        """Serve in a background thread; returns self."""
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="wandb-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        """Forget all state and faults."""
        self.state.reset()
        with self._faults_lock:
            self.faults.clear()

    def inject(self, target: str, kind: str, times: int = 1) -> None:
        """Make the next `times` requests to `target` fail. `target` is a GraphQL operation name or a regex over
        one (e.g. "CreateArtifact.*"), or "storage" / "storage:PUT" / "storage:GET" / "file_stream";
        `kind` is "http500", "drop" (close the connection without a reply) or "slow:<seconds>"."""
        if not (kind in ("http500", "drop") or re.fullmatch(r"slow:\d+(\.\d+)?", kind)):
            raise ValueError(f"unknown fault kind {kind!r}")
        with self._faults_lock:
            self.faults.append(Fault(target, kind, times))

    def _take_fault(self, *targets: str) -> str | None:
        with self._faults_lock:
            for fault in self.faults:
                if fault.times > 0 and any(fault.matches(t) for t in targets):
                    fault.times -= 1
                    return fault.kind
        return None

    # ------------------------------------------------------------------ request handling

    def file_stream(self, entity: str, project: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """Apply one file_stream chunk: lines stored by offset (a re-sent offset replaces), summary last-wins,
        `complete` + `exitcode` settle the run's state."""
        state = self.state
        with state.lock:
            run, _ = state.get_or_create_run(entity, project, name)
            run.heartbeat_at = now_iso()
            for fname, chunk in (body.get("files") or {}).items():
                offset = int(chunk.get("offset") or 0)
                lines = chunk.get("content") or []
                if fname == "wandb-history.jsonl":
                    target = run.history_lines
                elif fname == "wandb-events.jsonl":
                    target = run.events_lines
                elif fname == "output.log":
                    target = run.log_lines
                elif fname == "wandb-summary.json":
                    if lines:
                        run.summary = json.loads(lines[-1])
                    continue
                else:
                    continue
                for i, line in enumerate(lines):
                    target[offset + i] = line
            if body.get("complete"):
                code = body.get("exitcode")
                run.exitcode = code
                run.state = "finished" if code == 0 else ("crashed" if code is None else "failed")
            elif run.state == "pending":
                run.state = "running"
        return {"exitcode": None, "limits": {}}


def _make_handler(server: WandbServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                data = b""
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        return data
                    data += self.rfile.read(size)
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _reply(self, status: int, payload: Any, content_type: str = "application/json") -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _fault(self, *targets: str) -> bool:
            """Apply an injected fault; True when the request must not be answered normally."""
            kind = server._take_fault(*targets)
            if kind is None:
                return False
            server.state.requests.append((f"fault {kind} {targets[0]}", False))
            if kind.startswith("slow:"):
                time.sleep(float(kind[5:]))
                return False
            if kind == "drop":
                self.close_connection = True
                self.connection.shutdown(2)
                return True
            self._reply(500, {"errors": [{"message": "injected fault"}]})
            return True

        def do_POST(self) -> None:  # noqa: N802
            path = urllib.parse.urlparse(self.path).path
            body = self._body()
            if path == "/graphql":
                try:
                    request = json.loads(body)
                except ValueError:
                    self._reply(400, {"errors": [{"message": "bad JSON"}]})
                    return
                name = server.graphql.operation_name(request)
                if self._fault(name):
                    return
                self._reply(200, server.graphql.execute(request))
                return
            m = _FILE_STREAM.match(path)
            if m:
                if self._fault("file_stream"):
                    return
                server.state.requests.append(("file_stream", True))
                entity, project, run = (urllib.parse.unquote(g) for g in m.groups())
                self._reply(200, server.file_stream(entity, project, run, json.loads(body or b"{}")))
                return
            # telemetry (/sdk/otel/v1/metrics, ...) and anything else: accepted and ignored
            server.state.requests.append((f"POST {path}", True))
            self._reply(200, {})

        def do_PUT(self) -> None:  # noqa: N802
            path = urllib.parse.urlparse(self.path).path
            body = self._body()
            if not path.startswith("/storage/"):
                self._reply(404, {"error": "not found"})
                return
            if self._fault("storage:PUT", "storage", path):
                return
            key = urllib.parse.unquote(path[len("/storage/") :])
            server.graphql.store_blob(key, body)
            server.state.requests.append(("storage:PUT", True))
            self._reply(200, {})

        def do_GET(self) -> None:  # noqa: N802
            path = urllib.parse.urlparse(self.path).path
            if path.startswith("/storage/"):
                if self._fault("storage:GET", "storage", path):
                    return
                key = urllib.parse.unquote(path[len("/storage/") :])
                with server.state.lock:
                    data = server.state.blobs.get(key)
                server.state.requests.append(("storage:GET", data is not None))
                if data is None:
                    self._reply(404, {"error": f"no blob {key}"})
                else:
                    self._reply(200, data, "application/octet-stream")
                return
            server.state.requests.append((f"GET {path}", True))
            self._reply(200, {})

    return Handler
