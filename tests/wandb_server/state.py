"""What the local W&B server holds: projects, runs, artifacts, lineage, sweeps, blobs; one lock guards it all."""

from __future__ import annotations

import base64
import datetime as _dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def now_iso() -> str:
    """The current UTC time as W&B writes it (ISO 8601, no offset)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None).isoformat(timespec="microseconds")


def gql_id(kind: str, key: str | int) -> str:
    """An opaque GraphQL id, base64 like W&B's (`Run:v1:...`)."""
    return base64.b64encode(f"{kind}:v1:{key}".encode()).decode()


def unwrap_config(raw: dict[str, Any]) -> dict[str, Any]:
    """`{"k": {"value": v, "desc": ..}}` -> `{"k": v}`, without wandb's private `_wandb` key."""
    out = {}
    for key, item in raw.items():
        if key == "_wandb":
            continue
        out[key] = item["value"] if isinstance(item, dict) and "value" in item else item
    return out


@dataclass
class Run:
    """A run (W&B's "bucket"). `name` is the run id the client chose; `display_name` its human name."""

    entity: str
    project: str
    name: str
    storage_id: str
    display_name: str = ""
    group: str = ""
    job_type: str = ""
    tags: list[str] = field(default_factory=list)
    notes: str = ""
    raw_config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    history_lines: dict[int, str] = field(default_factory=dict)  # file_stream offset -> JSON line
    events_lines: dict[int, str] = field(default_factory=dict)
    log_lines: dict[int, str] = field(default_factory=dict)
    state: str = "running"
    exitcode: int | None = None
    sweep: str | None = None
    created_at: str = field(default_factory=now_iso)
    heartbeat_at: str = field(default_factory=now_iso)
    files: dict[str, bytes] = field(default_factory=dict)
    upserts: int = 0
    seq: int = 0  # creation order

    @property
    def id(self) -> str:
        return self.name

    @property
    def config(self) -> dict[str, Any]:
        """The config as the run logged it (values unwrapped, `_wandb` dropped)."""
        return unwrap_config(self.raw_config)

    @property
    def history(self) -> list[dict[str, Any]]:
        """The history rows in offset order (one per logged step)."""
        return [json.loads(self.history_lines[k]) for k in sorted(self.history_lines)]

    def history_tail(self, n: int = 5) -> list[str]:
        return [self.history_lines[k] for k in sorted(self.history_lines)[-n:]]


@dataclass
class ArtifactFile:
    """One file of an artifact version: its manifest path, MD5 (base64) and the storage key of its bytes."""

    name: str
    md5: str
    storage_key: str


@dataclass
class ArtifactVersion:
    """One artifact version. `version_index` is assigned at commit; aliases live on the collection."""

    id: str
    entity: str
    project: str
    type: str
    collection: str
    digest: str
    state: str = "PENDING"
    version_index: int | None = None
    description: str | None = None
    metadata: str | None = None
    requested_aliases: list[str] = field(default_factory=list)
    files: dict[str, ArtifactFile] = field(default_factory=dict)
    manifest_key: str | None = None
    created_by: str | None = None  # run name
    history_step: int | None = None
    created_at: str = field(default_factory=now_iso)


@dataclass
class Collection:
    """An artifact collection (sequence): its versions in commit order and its aliases (unique per collection)."""

    entity: str
    project: str
    name: str
    type: str
    id: str
    versions: list[ArtifactVersion] = field(default_factory=list)  # committed, index == version_index
    aliases: dict[str, ArtifactVersion] = field(default_factory=dict)

    def aliases_of(self, version: ArtifactVersion) -> list[str]:
        """The aliases that point at `version`, `vN` first."""
        out = [f"v{version.version_index}"] if version.version_index is not None else []
        return out + sorted(a for a, v in self.aliases.items() if v is version)


@dataclass
class Sweep:
    """A sweep: its config (parsed YAML), state, runs (names, in the order they joined) and issued trials."""

    entity: str
    project: str
    name: str
    config: dict[str, Any]
    config_yaml: str
    state: str = "RUNNING"
    runs: list[str] = field(default_factory=list)
    created_at: str = field(default_factory=now_iso)


@dataclass
class Agent:
    """A sweep agent and the run it was last told to start."""

    id: str
    sweep: str
    entity: str
    project: str
    current_run: str | None = None
    heartbeats: int = 0


class ServerState:
    """All server state, thread-safe (every accessor takes `lock`). Tests read it through the accessors."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        """Forget everything (a fresh server, same address)."""
        with self.lock:
            self.projects: dict[tuple[str, str], str] = {}  # (entity, project) -> id
            self._runs: dict[tuple[str, str, str], Run] = {}
            self.collections: dict[tuple[str, str, str], Collection] = {}
            self.artifacts_by_id: dict[str, ArtifactVersion] = {}
            self.lineage: list[tuple[str, str, str]] = []  # (run name, "used"|"logged", artifact id)
            self.sweeps: dict[str, Sweep] = {}
            self.agents: dict[str, Agent] = {}
            self.blobs: dict[str, bytes] = {}
            self.requests: list[tuple[str, bool]] = []  # (operation or path, answered without error)
            self.unhandled: list[str] = []
            self.errors: list[
                str
            ] = []  # GraphQL errors answered to known operations (bad input, server bugs)
            self.missing_fields: set[str] = set()  # "Operation:field.path" asked for but not produced
            self.queries: dict[str, set[str]] = {}  # operation -> the query texts seen
            self.counter = 0

    def next_id(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    # ------------------------------------------------------------------ projects and runs

    def ensure_project(self, entity: str, project: str) -> str:
        """The project's internal id (decimal digits), creating the project on first use."""
        with self.lock:
            key = (entity, project)
            if key not in self.projects:
                self.projects[key] = str(self.next_id())  # numeric: the client does int(projectId)
            return self.projects[key]

    def find_run(self, entity: str | None, project: str | None, name: str) -> Run | None:
        """A run by entity/project/name (entity or project None: any)."""
        with self.lock:
            for (e, p, n), run in self._runs.items():
                if n == name and entity in (None, e) and project in (None, p):
                    return run
            return None

    def get_or_create_run(self, entity: str, project: str, name: str) -> tuple[Run, bool]:
        """(run, created)."""
        with self.lock:
            self.ensure_project(entity, project)
            key = (entity, project, name)
            if key in self._runs:
                return self._runs[key], False
            run = Run(
                entity,
                project,
                name,
                storage_id=gql_id("Run", f"{entity}/{project}/{name}"),
                seq=self.next_id(),
            )
            self._runs[key] = run
            return run, True

    def delete_run(self, storage_id: str) -> bool:
        """Remove the run with this storage id and its lineage edges; False when there is none."""
        with self.lock:
            for key, run in list(self._runs.items()):
                if run.storage_id == storage_id:
                    del self._runs[key]
                    self.lineage = [edge for edge in self.lineage if edge[0] != run.name]
                    return True
            return False

    def runs(self, project: str | None = None, entity: str | None = None) -> list[Run]:
        """All runs (of one project/entity), oldest first."""
        with self.lock:
            return [r for (e, p, _), r in self._runs.items() if project in (None, p) and entity in (None, e)]

    def run(self, run_id: str, project: str | None = None) -> Run:
        """The run with this id (KeyError if none)."""
        found = self.find_run(None, project, run_id)
        if found is None:
            raise KeyError(f"no run {run_id!r}; runs: {[r.name for r in self.runs()]}")
        return found

    def history(self, run_id: str) -> list[dict[str, Any]]:
        """A run's history rows in step order."""
        with self.lock:
            return self.run(run_id).history

    # ------------------------------------------------------------------ artifacts

    def collection(self, entity: str, project: str, name: str) -> Collection | None:
        with self.lock:
            return self.collections.get((entity, project, name))

    def iter_versions(self) -> Iterator[ArtifactVersion]:
        with self.lock:
            yield from list(self.artifacts_by_id.values())

    def commit(self, version: ArtifactVersion) -> None:
        """PENDING -> COMMITTED: the version gets the next index, `latest` and its requested aliases."""
        with self.lock:
            if version.state == "COMMITTED":
                return
            coll = self.collections[(version.entity, version.project, version.collection)]
            version.version_index = len(coll.versions)
            version.state = "COMMITTED"
            coll.versions.append(version)
            self.set_aliases(coll, version, ["latest", *version.requested_aliases])

    def set_aliases(self, coll: Collection, version: ArtifactVersion, aliases: list[str]) -> None:
        """Point each alias (not `vN`) at `version`; an alias moves away from any other version."""
        with self.lock:
            for alias in aliases:
                if alias and not (alias[0] == "v" and alias[1:].isdigit()):
                    coll.aliases[alias] = version

    def resolve_artifact(
        self, entity: str | None, project: str | None, name: str, alias: str | None = None
    ) -> ArtifactVersion | None:
        """`name:alias` (or `name` + alias, default latest; `vN` too) to a committed version."""
        if alias is None:
            name, _, alias = name.partition(":")
            alias = alias or "latest"
        with self.lock:
            for (e, p, n), coll in self.collections.items():
                if n != name or entity not in (None, e) or project not in (None, p):
                    continue
                if alias[0] == "v" and alias[1:].isdigit():
                    idx = int(alias[1:])
                    return coll.versions[idx] if idx < len(coll.versions) else None
                return coll.aliases.get(alias)
            return None

    def artifact(self, name: str, alias: str | None = None, project: str | None = None) -> ArtifactVersion:
        """A committed artifact version by `name:alias` (KeyError if none)."""
        found = self.resolve_artifact(None, project, name, alias)
        if found is None:
            raise KeyError(f"no artifact {name}:{alias}")
        return found

    def artifact_aliases(self, version: ArtifactVersion) -> list[str]:
        """The aliases of a version (`vN` first)."""
        with self.lock:
            coll = self.collections[(version.entity, version.project, version.collection)]
            return coll.aliases_of(version)

    def artifact_file(self, version: ArtifactVersion, path: str) -> bytes:
        """The bytes of one file of an artifact version."""
        with self.lock:
            return self.blobs[version.files[path].storage_key]

    def used_artifacts(self, run_id: str) -> list[ArtifactVersion]:
        """The artifact versions a run used (lineage input edges)."""
        with self.lock:
            return [self.artifacts_by_id[a] for r, kind, a in self.lineage if r == run_id and kind == "used"]

    def logged_artifacts(self, run_id: str) -> list[ArtifactVersion]:
        """The artifact versions a run logged (lineage output edges)."""
        with self.lock:
            return [
                self.artifacts_by_id[a] for r, kind, a in self.lineage if r == run_id and kind == "logged"
            ]

    # ------------------------------------------------------------------ sweeps

    def sweep(self, sweep_id: str) -> Sweep:
        """A sweep by id (KeyError if none)."""
        with self.lock:
            return self.sweeps[sweep_id]

    def sweep_runs(self, sweep_id: str) -> list[Run]:
        """The runs of a sweep in the order they were issued or joined."""
        with self.lock:
            sweep = self.sweeps[sweep_id]
            return [r for n in sweep.runs if (r := self.find_run(sweep.entity, sweep.project, n)) is not None]
