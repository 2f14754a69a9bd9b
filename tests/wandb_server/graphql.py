"""The GraphQL side of the local W&B server.

One root object answers every known operation: its fields are callables (`project(name, entityName)`,
`upsertBucket(...)`, `createArtifact(input)`, ...) that build plain data, and `selection.project` cuts the data
to what the query selected. Only the operation names in `KNOWN_OPERATIONS` are answered; any other gets a GraphQL
error and lands in `state.unhandled`, so a client upgrade that adds an operation fails loudly.
"""

from __future__ import annotations

import json
import random
import string
import urllib.parse
from typing import Any

import yaml

from . import filters as run_filters
from .selection import parse, project
from .state import Agent, ArtifactFile, ArtifactVersion, Collection, Run, ServerState, Sweep, gql_id, now_iso
from .sweeps_controller import heartbeat

KNOWN_OPERATIONS = frozenset(
    {
        # run lifecycle (wandb-core)
        "Viewer",
        "ServerFeaturesQuery",
        "OrganizationCoreWeaveOrganizationID",
        "UpsertBucket",
        "RunResumeStatus",
        "CreateRunFiles",
        "RunState",
        "QueryRunInfo",
        "DeleteRun",
        # artifacts (wandb-core and the Python SDK)
        "ArtifactType",
        "ProjectArtifactType",
        "CreateArtifact",
        "CreateArtifactManifest",
        "CreateArtifactFiles",
        "CommitArtifact",
        "ArtifactMembershipByName",
        "UseArtifact",
        "FetchArtifactManifest",
        "GetArtifactMembershipFileUrls",
        "ArtifactFileURLsByManifestEntries",
        "ArtifactByID",
        "ArtifactUsedBy",
        "ArtifactCreatedBy",
        "RunInputArtifacts",
        "RunOutputArtifacts",
        # public API
        "GetViewer",
        "GetDefaultEntity",
        "ServerInfo",
        "Runs",
        "Run",
        "RunFiles",
        "Project",
        "GetProject",
        "HistoryPage",
        "SampledHistoryPage",
        "RunParquetHistory",
        "RunSampledHistory",
        "RunFullHistory",
        "RunHistoryKeys",
        # sweeps
        "UpsertSweep",
        "SweepWithRuns",
        "CreateAgent",
        "Heartbeat",
        "GetSweepState",
        "GetSweep",
        "GetSweepLegacy",
    }
)


class GraphQLError(Exception):
    """Answered as `{"errors": [{"message": ...}]}`."""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _page(items: list[Any], after: str | None, first: int | None) -> dict[str, Any]:
    """A cursor connection over `items` (cursors are the decimal index of the last item taken)."""
    start = int(after) + 1 if after not in (None, "") else 0
    first = 50 if first is None else int(first)
    chunk = items[start : start + first]
    end = start + len(chunk) - 1
    return {
        "edges": [{"node": node, "cursor": str(start + i)} for i, node in enumerate(chunk)],
        "pageInfo": {
            "__typename": "PageInfo",
            "endCursor": str(end) if chunk else after,
            "hasNextPage": start + len(chunk) < len(items),
        },
        "totalCount": len(items),
    }


class GraphQL:
    """Executes GraphQL requests against a `ServerState`; `base_url` names this server in upload URLs."""

    def __init__(self, state: ServerState, base_url: str, entity: str) -> None:
        self.state, self.base_url, self.entity = state, base_url, entity

    # ------------------------------------------------------------------ entry points

    @staticmethod
    def operation_name(request: dict[str, Any]) -> str:
        """The operation's name: `operationName`, else the first `query X`/`mutation X` of the text."""
        if request.get("operationName"):
            return str(request["operationName"])
        try:
            return parse(request.get("query") or "").name or "<anonymous>"
        except ValueError:
            return "<unparseable>"

    def execute(self, request: dict[str, Any]) -> dict[str, Any]:
        """The JSON reply to one GraphQL request (data, or errors for unknown operations and failures)."""
        name = self.operation_name(request)
        state = self.state
        with state.lock:
            state.queries.setdefault(name, set()).add(request.get("query") or "")
        if name not in KNOWN_OPERATIONS:
            with state.lock:
                state.unhandled.append(name)
                state.requests.append((name, False))
            return {"errors": [{"message": f"UNHANDLED operation {name}"}]}
        try:
            op = parse(request.get("query") or "", request.get("operationName") or None)
            variables = {**op.defaults, **(request.get("variables") or {})}
            missing = lambda path: state.missing_fields.add(f"{name}:{path}")  # noqa: E731
            root = self.root()
            for sel in op.selections:
                if getattr(sel, "name", None) not in root:
                    raise GraphQLError(f"root field {getattr(sel, 'name', sel)} is not served")
            with state.lock:
                data = project(root, op.selections, op, variables, missing)
        except Exception as err:  # noqa: BLE001  a server bug must reach the client as an error, not a reset
            message = (
                str(err) if isinstance(err, GraphQLError) else f"server error: {type(err).__name__}: {err}"
            )
            with state.lock:
                state.requests.append((name, False))
                state.errors.append(f"{name}: {message}")
            return {"errors": [{"message": message}], "data": None}
        with state.lock:
            state.requests.append((name, True))
        return {"data": data}

    def store_blob(self, key: str, data: bytes) -> None:
        """A PUT to /storage/<key>: keep the bytes, and file them under their run when it is a run file."""
        with self.state.lock:
            self.state.blobs[key] = data
            parts = key.split("/", 4)
            if parts[0] == "runs" and len(parts) == 5:
                run, _ = self.state.get_or_create_run(parts[1], parts[2], parts[3])
                run.files[parts[4]] = data

    def url(self, key: str) -> str:
        return f"{self.base_url}/storage/{urllib.parse.quote(key)}"

    def root(self) -> dict[str, Any]:
        """The root query/mutation fields."""
        return {
            "viewer": self.viewer,
            "serverInfo": self.server_info,
            "entity": self.entity_obj,
            "project": self.project_obj,
            "model": self.project_obj,
            "artifact": self.artifact_by_id,
            "upsertBucket": self.upsert_bucket,
            "createRunFiles": self.create_run_files,
            "createArtifact": self.create_artifact,
            "createArtifactManifest": self.create_artifact_manifest,
            "createArtifactFiles": self.create_artifact_files,
            "commitArtifact": self.commit_artifact,
            "useArtifact": self.use_artifact,
            "upsertSweep": self.upsert_sweep,
            "createAgent": self.create_agent,
            "agentHeartbeat": self.agent_heartbeat,
            "deleteRun": self.delete_run,
        }

    # ------------------------------------------------------------------ viewer, server, entities

    def viewer(self, **_: Any) -> dict[str, Any]:
        return {
            "__typename": "User",
            "id": gql_id("User", self.entity),
            "entity": self.entity,
            "username": self.entity,
            "name": self.entity,
            "email": f"{self.entity}@localhost",
            "flags": "{}",
            "admin": False,
            "userInfo": None,
            "defaultEntity": {"id": gql_id("Entity", self.entity), "name": self.entity},
            "teams": {"edges": []},
        }

    def server_info(self, **_: Any) -> dict[str, Any]:
        return {
            "features": [],
            "cliVersionInfo": "{}",
            "latestLocalVersionInfo": None,
            "availableBucketProviders": [],
            "frontendHost": self.base_url,
        }

    def entity_obj(self, name: str | None = None, **_: Any) -> dict[str, Any]:
        return {
            "__typename": "Entity",
            "id": gql_id("Entity", name or self.entity),
            "name": name or self.entity,
            "organization": None,
            "isTeam": False,
        }

    # ------------------------------------------------------------------ projects and runs

    def project_obj(
        self,
        name: str | None = None,
        entityName: str | None = None,  # noqa: N803
        **_: Any,
    ) -> dict[str, Any] | None:
        entity, proj = entityName or self.entity, name or "uncategorized"
        pid = self.state.ensure_project(entity, proj)
        info = {
            "__typename": "Project",
            "id": gql_id("Project", pid),
            "internalId": pid,
            "name": proj,
            "entityName": entity,
            "entity": self.entity_obj(entity),
            "readOnly": False,
            "createdAt": now_iso(),
            "isBenchmark": False,
            "description": None,
        }

        def matching(filters: Any = None) -> list[Run]:
            flt = json.loads(filters) if isinstance(filters, str) else filters
            return [r for r in self.state.runs(proj, entity) if run_filters.matches(r, flt)]

        def runs(
            filters: Any = None,
            after: str | None = None,
            first: int | None = None,
            order: str | None = None,
            **_: Any,
        ) -> dict[str, Any]:
            key, desc = run_filters.sort_key(order)

            def sort_value(r: Run) -> tuple[Any, ...]:
                value = run_filters.field_value(r, key)
                numeric = isinstance(value, (int, float))
                return (value is run_filters._MISSING, not numeric, value if numeric else str(value), r.seq)

            found = sorted(matching(filters), key=sort_value, reverse=desc)
            return _page([self.run_obj(r) for r in found], after, first)

        def run(name: str | None = None, **_: Any) -> dict[str, Any] | None:
            found = self.state.find_run(entity, proj, name or "")
            return self.run_obj(found) if found else None

        def sweep(sweepName: str | None = None, **_: Any) -> dict[str, Any] | None:  # noqa: N803
            found = self.state.sweeps.get(sweepName or "")
            return self.sweep_obj(found) if found else None

        return {
            **info,
            "run": run,
            "bucket": run,
            "runs": runs,
            "runCount": lambda filters=None, **_: len(matching(filters)),
            "sweep": sweep,
            "artifactType": lambda name=None, **_: self.artifact_type_obj(entity, proj, name),
            "artifact": lambda name=None, **_: self.artifact_by_name(entity, proj, name),
            "artifactCollectionMembership": lambda name=None, **_: self.membership_by_name(
                entity, proj, name
            ),
            "artifactCollection": lambda name=None, **_: self.collection_obj(entity, proj, name),
        }

    def project_info(self, entity: str, proj: str) -> dict[str, Any]:
        pid = self.state.ensure_project(entity, proj)
        return {
            "__typename": "Project",
            "id": gql_id("Project", pid),
            "internalId": pid,
            "name": proj,
            "entityName": entity,
            "entity": self.entity_obj(entity),
        }

    def run_obj(self, run: Run) -> dict[str, Any]:
        """Everything a query may select on a run."""
        raw_wandb = run.raw_config.get("_wandb", {})
        raw_wandb = raw_wandb.get("value", raw_wandb) if isinstance(raw_wandb, dict) else {}
        history = run.history
        keys: dict[str, Any] = {}
        for row in history:
            for k in row:
                keys.setdefault(k, {"typeCounts": [{"type": "number", "count": 0}]})
                keys[k]["typeCounts"][0]["count"] += 1
        last_step = history[-1].get("_step", len(history) - 1) if history else -1

        def hist(
            samples: int | None = None,
            minStep: int | None = None,  # noqa: N803
            maxStep: int | None = None,
            **_: Any,
        ) -> list[str]:  # noqa: N803
            rows = [
                r
                for r in history
                if (minStep is None or r.get("_step", 0) >= minStep)
                and (maxStep is None or r.get("_step", 0) < maxStep)
            ]
            return [_json(r) for r in rows[: samples or None]]

        def sampled(specs: list[str] | None = None, **_: Any) -> list[list[dict[str, Any]]]:
            out = []
            for spec in [specs] if isinstance(specs, str) else specs or []:  # a lone value coerces to a list
                spec_d = json.loads(spec) if isinstance(spec, str) else spec
                wanted = spec_d.get("keys") or []
                rows = [
                    {k: r[k] for k in wanted if k in r}
                    for r in history
                    if not wanted or any(k in r for k in wanted if k != "_step")
                ]
                out.append(rows[: int(spec_d.get("samples") or 500) or None])
            return out

        def files(
            names: list[str] | None = None,
            after: str | None = None,
            first: int | None = None,
            pattern: str | None = None,
            **_: Any,
        ) -> dict[str, Any]:
            items = []
            for fname in sorted(run.files):
                if (names and fname not in names) or (pattern and not _glob(pattern, fname)):
                    continue
                url = self.url(f"runs/{run.entity}/{run.project}/{run.name}/{fname}")
                items.append(
                    {
                        "__typename": "File",
                        "id": gql_id("File", f"{run.name}/{fname}"),
                        "name": fname,
                        "url": url,
                        "directUrl": url,
                        "sizeBytes": len(run.files[fname]),
                        "mimetype": "application/octet-stream",
                        "updatedAt": now_iso(),
                        "md5": "",
                    }
                )
            return _page(items, after, first)

        summary = dict(run.summary)
        return {
            "__typename": "Run",
            "id": run.storage_id,
            "name": run.name,
            "displayName": run.display_name,
            "description": run.notes,
            "notes": run.notes,
            "tags": list(run.tags),
            "group": run.group,
            "jobType": run.job_type,
            "state": run.state,
            "config": _json(run.raw_config),
            "summaryMetrics": _json(summary),
            "systemMetrics": "{}",
            "sweepName": run.sweep,
            "commit": None,
            "readOnly": False,
            "createdAt": run.created_at,
            "heartbeatAt": run.heartbeat_at,
            "updatedAt": run.heartbeat_at,
            "historyLineCount": len(run.history_lines),
            "logLineCount": len(run.log_lines),
            "eventsLineCount": len(run.events_lines),
            "historyTail": _json(run.history_tail()),
            "eventsTail": _json([]),
            "historyKeys": {"lastStep": last_step, "keys": keys},
            "wandbConfig": lambda keys=None, **_: _json(
                {k: raw_wandb[k] for k in keys or [] if k in raw_wandb}
            ),
            "user": {"name": run.entity, "username": run.entity},
            "projectId": self.state.ensure_project(run.entity, run.project),
            "project": self.project_info(run.entity, run.project),
            "exitcode": run.exitcode,
            "shouldStop": False,
            "failed": run.state == "failed",
            "stopped": False,
            "running": run.state in ("running", "pending"),
            "history": hist,
            "events": lambda **_: [],
            "sampledHistory": sampled,
            "files": files,
            "fileCount": len(run.files),
            # no parquet exports: every row is "live" data (the rows not yet exported, on the hosted server)
            "parquetHistory": lambda **_: {"parquetUrls": [], "liveData": history},
            # lineage edges as artifact connections (Run.logged_artifacts() / used_artifacts()); a version whose
            # upload never committed is left out (the 0.31 client cannot build an Artifact without its index)
            "outputArtifacts": lambda after=None, first=None, **_: _page(
                [
                    self.artifact_obj(v)
                    for v in self.state.logged_artifacts(run.name)
                    if v.state == "COMMITTED"
                ],
                after,
                first,
            ),
            "inputArtifacts": lambda after=None, first=None, **_: _page(
                [self.artifact_obj(v) for v in self.state.used_artifacts(run.name)], after, first
            ),
        }

    # ------------------------------------------------------------------ run mutations

    def delete_run(self, input: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
        """Forget a run (its history, files and lineage edges; its artifact versions stay)."""
        if not self.state.delete_run((input or {}).get("id", "")):
            raise GraphQLError(f"run {(input or {}).get('id')} not found")
        return {"clientMutationId": None}

    def upsert_bucket(self, input: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
        """Create or update a run; a run that names a sweep joins it."""
        args = input or {}
        state = self.state
        entity = args.get("entityName") or self.entity
        proj = args.get("modelName") or "uncategorized"
        name = args.get("name")
        with state.lock:
            run = None
            if not name and args.get("id"):
                run = next((r for r in state.runs() if r.storage_id == args["id"]), None)
            if run is None:
                name = name or "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
                run, inserted = state.get_or_create_run(entity, proj, name)
            else:
                inserted = False
            run.upserts += 1
            if not run.display_name and not args.get("displayName"):
                run.display_name = f"local-run-{run.seq}"
            for key, attr in (
                ("displayName", "display_name"),
                ("groupName", "group"),
                ("jobType", "job_type"),
                ("notes", "notes"),
                ("description", "notes"),
            ):
                if args.get(key) is not None:
                    setattr(run, attr, args[key])
            if args.get("tags") is not None:
                run.tags = list(args["tags"])
            if args.get("config"):
                run.raw_config = json.loads(args["config"])
            if args.get("summaryMetrics"):
                run.summary = json.loads(args["summaryMetrics"])
            if run.state == "pending":
                run.state = "running"
            if args.get("sweep"):
                sweep = state.sweeps.get(args["sweep"])
                if sweep is None:
                    raise GraphQLError(f"sweep {args['sweep']} not found")
                run.sweep = sweep.name
                if run.name not in sweep.runs:
                    sweep.runs.append(run.name)
            bucket = self.run_obj(run)
        return {"bucket": bucket, "inserted": inserted}

    def create_run_files(self, input: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
        args = input or {}
        entity, proj, name = (
            args.get("entityName") or self.entity,
            args.get("projectName"),
            args.get("runName"),
        )
        run, _ = self.state.get_or_create_run(entity, proj, name)
        return {
            "runID": run.storage_id,
            "uploadHeaders": [],
            "files": [
                {"name": f, "uploadUrl": self.url(f"runs/{entity}/{proj}/{name}/{f}")}
                for f in args.get("files") or []
            ],
        }

    # ------------------------------------------------------------------ artifacts

    def artifact_type_obj(self, entity: str, proj: str, name: str | None) -> dict[str, Any] | None:
        with self.state.lock:
            known = any(
                c.type == name for (e, p, _), c in self.state.collections.items() if (e, p) == (entity, proj)
            )
        if not known:
            return None
        return {
            "__typename": "ArtifactType",
            "id": gql_id("ArtifactType", f"{entity}/{proj}/{name}"),
            "name": name,
            "description": None,
            "createdAt": now_iso(),
        }

    def collection_obj(self, entity: str, proj: str, name: str | None) -> dict[str, Any] | None:
        coll = self.state.collection(entity, proj, name or "")
        if coll is None:
            return None

        def membership(aliasName: str | None = None, **_: Any) -> dict[str, Any] | None:  # noqa: N803
            found = self.state.resolve_artifact(entity, proj, coll.name, aliasName or "latest")
            return self.membership_obj(found) if found else None

        return {
            "__typename": "ArtifactSequence",
            "id": coll.id,
            "name": coll.name,
            "project": self.project_info(entity, proj),
            "artifactMembership": membership,
            "latestArtifact": ({"id": coll.versions[-1].id} if coll.versions else None),
        }

    def artifact_obj(self, version: ArtifactVersion) -> dict[str, Any]:
        """Everything a query may select on an artifact version."""
        state = self.state
        coll = state.collections[(version.entity, version.project, version.collection)]
        coll_info = {
            "__typename": "ArtifactSequence",
            "id": coll.id,
            "name": coll.name,
            "project": self.project_info(version.entity, version.project),
            "latestArtifact": {"id": coll.versions[-1].id} if coll.versions else None,
        }
        aliases = [
            {
                "__typename": "ArtifactAlias",
                "id": gql_id("ArtifactAlias", f"{coll.id}/{a}"),
                "alias": a,
                "artifactCollection": coll_info,
            }
            for a in coll.aliases_of(version)
        ]

        def files(after: str | None = None, first: int | None = None, **_: Any) -> dict[str, Any]:
            return _page([self.file_obj(f) for f in version.files.values()], after, first)

        manifest_url = self.url(version.manifest_key) if version.manifest_key else None
        return {
            "__typename": "Artifact",
            "id": version.id,
            "digest": version.digest,
            "state": version.state,
            "versionIndex": version.version_index,
            "artifactType": {
                "__typename": "ArtifactType",
                "id": gql_id("ArtifactType", version.type),
                "name": version.type,
            },
            "description": version.description,
            "metadata": version.metadata,
            "ttlDurationSeconds": -1,
            "ttlIsInherited": True,
            "tags": [],
            "historyStep": version.history_step,
            "size": sum(len(state.blobs.get(f.storage_key, b"")) for f in version.files.values()),
            "digestAlgorithm": "MANIFEST_MD5",
            "commitHash": None,
            "fileCount": len(version.files),
            "createdAt": version.created_at,
            "updatedAt": version.created_at,
            "aliases": aliases,
            "artifactSequence": coll_info,
            "artifactCollection": coll_info,
            "currentManifest": {
                "id": gql_id("ArtifactManifest", version.id),
                "file": {"id": gql_id("File", version.id), "directUrl": manifest_url, "url": manifest_url},
            },
            "files": files,
            "filesByManifestEntries": lambda **kw: files(**kw),
            "createdBy": self.run_ref(version.created_by, version),
            "usedBy": {
                "edges": [
                    {"node": self.run_ref(r, version)}
                    for r, kind, a in state.lineage
                    if a == version.id and kind == "used"
                ]
            },
        }

    def run_ref(self, name: str | None, version: ArtifactVersion) -> dict[str, Any] | None:
        run = self.state.find_run(version.entity, version.project, name) if name else None
        return self.run_obj(run) if run else None

    def file_obj(self, f: ArtifactFile) -> dict[str, Any]:
        url = self.url(f.storage_key)
        return {
            "__typename": "File",
            "id": gql_id("File", f.storage_key),
            "name": f.name,
            "directUrl": url,
            "url": url,
            "md5": f.md5,
            "sizeBytes": len(self.state.blobs.get(f.storage_key, b"")),
        }

    def membership_obj(self, version: ArtifactVersion) -> dict[str, Any]:
        art = self.artifact_obj(version)
        return {
            "__typename": "ArtifactCollectionMembership",
            "id": gql_id("ArtifactCollectionMembership", version.id),
            "versionIndex": version.version_index,
            "createdAt": version.created_at,
            "aliases": art["aliases"],
            "artifactCollection": art["artifactSequence"],
            "artifact": art,
            "files": art["files"],
        }

    def membership_by_name(self, entity: str, proj: str, name: str | None) -> dict[str, Any] | None:
        found = self.state.resolve_artifact(entity, proj, name or "")
        return self.membership_obj(found) if found else None

    def artifact_by_name(self, entity: str, proj: str, name: str | None) -> dict[str, Any] | None:
        found = self.state.resolve_artifact(entity, proj, name or "")
        return self.artifact_obj(found) if found else None

    def artifact_by_id(self, id: str | None = None, **_: Any) -> dict[str, Any] | None:  # noqa: A002
        version = self.state.artifacts_by_id.get(id or "")
        return self.artifact_obj(version) if version else None

    def create_artifact(self, input: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
        """A new PENDING version (or, with digest deduplication, the committed one with the same digest)."""
        args = input or {}
        state = self.state
        entity, proj = args.get("entityName") or self.entity, args.get("projectName") or "uncategorized"
        names = args.get("artifactCollectionNames") or [args.get("artifactCollectionName")]
        coll_name, atype = names[0], args.get("artifactTypeName")
        aliases = [a["alias"] if isinstance(a, dict) else a for a in args.get("aliases") or []]
        with state.lock:
            state.ensure_project(entity, proj)
            coll = state.collections.get((entity, proj, coll_name))
            if coll is None:
                coll = Collection(entity, proj, coll_name, atype, gql_id("ArtifactSequence", state.next_id()))
                state.collections[(entity, proj, coll_name)] = coll
            elif coll.type != atype:
                raise GraphQLError(f"artifact {coll_name} is of type {coll.type}, not {atype}")
            same = [v for v in coll.versions if v.digest == args.get("digest")]
            if same:
                version = same[-1]
                state.set_aliases(coll, version, ["latest", *aliases])
            else:
                metadata = args.get("metadata")
                version = ArtifactVersion(
                    id=gql_id("Artifact", state.next_id()),
                    entity=entity,
                    project=proj,
                    type=atype,
                    collection=coll_name,
                    digest=args.get("digest") or "",
                    description=args.get("description"),
                    metadata=metadata if isinstance(metadata, str) or metadata is None else _json(metadata),
                    requested_aliases=aliases,
                    created_by=args.get("runName"),
                    history_step=args.get("historyStep"),
                )
                state.artifacts_by_id[version.id] = version
            if args.get("runName"):
                state.lineage.append((args["runName"], "logged", version.id))
            return {
                "artifact": self.artifact_obj(version)
                | {
                    "artifactSequence": {
                        "latestArtifact": {"id": coll.versions[-1].id} if coll.versions else None
                    }
                }
            }

    def create_artifact_manifest(
        self,
        input: dict[str, Any] | None = None,  # noqa: A002
        **_: Any,
    ) -> dict[str, Any]:
        args = input or {}
        version = self._version(args.get("artifactID"))
        version.manifest_key = f"manifests/{version.id}/{args.get('name') or 'wandb_manifest.json'}"
        url = self.url(version.manifest_key)
        return {
            "artifactManifest": {
                "id": gql_id("ArtifactManifest", version.id),
                "file": {
                    "id": gql_id("File", version.manifest_key),
                    "uploadUrl": url,
                    "uploadHeaders": [],
                    "directUrl": url,
                },
            }
        }

    def create_artifact_files(self, input: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
        edges = []
        with self.state.lock:
            for spec in (input or {}).get("artifactFiles") or []:
                version = self._version(spec.get("artifactID"))
                key = f"artifacts/{version.id}/{spec['name']}"
                version.files[spec["name"]] = ArtifactFile(spec["name"], spec.get("md5") or "", key)
                edges.append(
                    {
                        "node": {
                            "storagePath": key,
                            "uploadUrl": self.url(key),
                            "uploadHeaders": [],
                            "uploadMultipartUrls": None,
                            "artifact": {"id": version.id},
                        }
                    }
                )
        return {"files": {"edges": edges}}

    def commit_artifact(self, input: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
        version = self._version((input or {}).get("artifactID"))
        self.state.commit(version)
        return {"artifact": self.artifact_obj(version)}

    def use_artifact(self, input: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
        """Record run --used--> artifact (both the wandb-core `$input` and the Python flat-variable shapes)."""
        args = input or {}
        version = self._version(args.get("artifactID"))
        run, _ = self.state.get_or_create_run(
            args.get("entityName") or self.entity,
            args.get("projectName") or "uncategorized",
            args.get("runName"),
        )
        with self.state.lock:
            edge = (run.name, "used", version.id)
            if edge not in self.state.lineage:
                self.state.lineage.append(edge)
        return {"artifact": self.artifact_obj(version)}

    def _version(self, artifact_id: str | None) -> ArtifactVersion:
        version = self.state.artifacts_by_id.get(artifact_id or "")
        if version is None:
            raise GraphQLError(f"artifact {artifact_id} not found")
        return version

    # ------------------------------------------------------------------ sweeps

    def sweep_obj(self, sweep: Sweep) -> dict[str, Any]:
        return {
            "__typename": "Sweep",
            "id": gql_id("Sweep", sweep.name),
            "name": sweep.name,
            "displayName": sweep.name,
            "method": sweep.config.get("method"),
            "state": sweep.state,
            "description": sweep.config.get("description"),
            "config": sweep.config_yaml,
            "createdAt": sweep.created_at,
            "heartbeatAt": now_iso(),
            "updatedAt": now_iso(),
            "earlyStopJobRunning": False,
            "bestLoss": None,
            "controller": None,
            "scheduler": None,
            "runCount": len(sweep.runs),
            "runCountExpected": None,
            "project": self.project_info(sweep.entity, sweep.project),
            "runs": {"edges": [{"node": self.run_obj(r)} for r in self.state.sweep_runs(sweep.name)]},
        }

    def upsert_sweep(self, input: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
        """Create a sweep, or update (and so continue) the one with the given id."""
        args = input or {}
        state = self.state
        with state.lock:
            sweep = state.sweeps.get(args.get("id") or "")
            if sweep is None:
                entity, proj = (
                    args.get("entityName") or self.entity,
                    args.get("projectName") or "uncategorized",
                )
                name = "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
                config_yaml = args.get("config") or "{}"
                sweep = Sweep(entity, proj, name, yaml.safe_load(config_yaml) or {}, config_yaml)
                state.ensure_project(entity, proj)
                state.sweeps[name] = sweep
            elif args.get("config"):
                sweep.config_yaml, sweep.config = args["config"], yaml.safe_load(args["config"]) or {}
            if args.get("state"):
                sweep.state = args["state"]
            if args.get("priorRunsFilters"):  # existing runs join the sweep (`wandb sweep --prior_run`)
                prior = json.loads(args["priorRunsFilters"])
                for run in state.runs(project=sweep.project, entity=sweep.entity):
                    if run_filters.matches(run, prior) and run.name not in sweep.runs:
                        run.sweep = sweep.name
                        sweep.runs.append(run.name)
            return {"sweep": self.sweep_obj(sweep), "configValidationWarnings": [], "inserted": True}

    def create_agent(self, input: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
        args = input or {}
        with self.state.lock:
            sweep = self.state.sweeps.get(args.get("sweep") or "")
            if sweep is None:
                raise GraphQLError(f"sweep {args.get('sweep')} not found")
            agent = Agent(gql_id("Agent", self.state.next_id()), sweep.name, sweep.entity, sweep.project)
            self.state.agents[agent.id] = agent
        return {"agent": {"id": agent.id, "name": agent.id}}

    def agent_heartbeat(self, input: dict[str, Any] | None = None, **_: Any) -> dict[str, Any]:  # noqa: A002
        args = input or {}
        with self.state.lock:
            agent = self.state.agents.get(args.get("id") or "")
            if agent is None:
                raise GraphQLError(f"agent {args.get('id')} not found")
            run_state = json.loads(args.get("runState") or "{}")
            commands = heartbeat(self.state, agent, run_state)
        return {"agent": {"id": agent.id}, "commands": _json(commands)}


def _glob(pattern: str, name: str) -> bool:
    import fnmatch

    return fnmatch.fnmatch(name, pattern.replace("%", "*"))


__all__ = ["GraphQL", "GraphQLError", "KNOWN_OPERATIONS"]
