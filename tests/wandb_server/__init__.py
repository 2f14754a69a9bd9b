"""A local W&B-compatible server for the test suite, owned by the project.

It answers the pinned wandb 0.31 client (the Python SDK, `wandb-core`, `wandb agent`, `wandb sync`,
`wandb.Api()`) on 127.0.0.1 from a thread of the test process, and records what the client did so tests can
judge by server state:

* runs: init/resume/log/summary/finish (GraphQL `UpsertBucket`, `RunResumeStatus`, ... and the `file_stream`
  endpoint: history lines by offset, summary, console, events, exit code -> finished/failed/crashed), run files;
* artifacts: create, manifest, files, upload (PUT to `/storage/...`), commit (PENDING -> COMMITTED, `vN`),
  aliases unique per collection (`latest` moves to the newest), digest deduplication, use/download, lineage;
* the public API: `Api().runs()` with Mongo-style filters, order and cursor pages, `run.history()`,
  `scan_history()`, `run.files()`/`file().download()`, `Api().artifact()`;
* sweeps: `wandb sweep` / `wandb.sweep`, `wandb agent` (CreateAgent, Heartbeat) with the pinned `sweeps` engine;
* fault injection (HTTP 500, slow replies, dropped connections) per operation, storage or file_stream.

Every GraphQL operation not in `graphql.KNOWN_OPERATIONS` gets a GraphQL error and is recorded in
`state.unhandled` (wandb-core panics on incomplete data, and a client upgrade must fail loudly). Fields a known
query selects that the server does not produce come back null and are listed in `state.missing_fields`.

Not covered: authentication and permissions (any API key works), rate limits, teams/organisations/registries,
reports, launch queues, multipart uploads, the hosted sweep controller's exact scheduling (early termination,
several concurrent runs per agent), and GraphQL schema validation (queries are not checked against a schema).
"""

from .server import Fault, WandbServer
from .state import ServerState

__all__ = ["Fault", "ServerState", "WandbServer"]
