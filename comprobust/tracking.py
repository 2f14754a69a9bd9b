"""The W&B run lifecycle of one stage run: mode choice, config, metrics, checkpoint artifacts and lineage.

Stage code calls `start_run(...)` and the `StageRun` methods; nothing else in comprobust knows whether a W&B
server exists. Three modes:

* "online": a server and credentials are configured (WANDB_API_KEY, or a key for the base URL in ~/.netrc or
  the wandb settings file). Inputs come through `use_artifact`, so W&B draws the lineage graph.
* "offline" (the default without credentials): the real wandb client writes everything into
  `<out_dir>/wandb/wandb/offline-run-<date>_<time>-<id>/run-<id>.wandb`, to be read with
  `comprobust.wandb_offline.read_run` or published later with `wandb sync`. wandb refuses `use_artifact`
  offline, so a `LineageStore` (one small JSON record per artifact name and alias under `<out_dir>/lineage/`)
  resolves `ckpt-<id>:best` to the file, and the resolved record is kept in the consuming run's config
  (`input_lineage`).
* "disabled": no wandb at all (unit tests of code that does not care about tracking); lineage still works.

Every logged checkpoint is recorded in the LineageStore in every mode, so downstream stages resolve inputs the
same way online (preferring the local file when its digest matches the server's) and offline.

Secrets never reach the config: keys that name a secret (api_key, token, password, secret, credential) and
values that are the configured W&B key or look like one are replaced by "<redacted>".
"""
from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
REDACTED = "<redacted>"
_MODE_ALIASES = {"online": "online", "run": "online", "offline": "offline", "dryrun": "offline",
                 "disabled": "disabled", "auto": "auto"}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # W&B artifact names and our lineage file names
_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECRET_KEY_RE = re.compile(
    r"api[_-]?key|apikey|access[_-]?key|private[_-]?key|token|passw(or)?d|secret|credential", re.IGNORECASE)
# The shape wandb accepts for an API key: an optional "<prefix>-", then 40+ word characters. Only mixed-case
# alphanumeric ones (random-looking) count as keys, so long snake_case names and hex digests (git commits,
# config hashes) are never redacted; a legacy 40-hex key is caught by the exact-match rule instead.
_KEY_SHAPE_RE = re.compile(r"^(?:[A-Za-z0-9]{1,32}-)?([A-Za-z0-9_]{40,})$")
_JWT_RE = re.compile(r"^eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}$")
FINISH_FLUSH_TIMEOUT_S = 20.0

_active: "StageRun | None" = None


# ---------------------------------------------------------------------------------------------------- mode


def wandb_settings_base_url_and_key() -> tuple[str, str | None]:
    """The base URL and settings-file API key wandb would use (env WANDB_BASE_URL, the settings files)."""
    try:
        from wandb.sdk.wandb_settings import Settings

        settings = Settings()
        config_dir = os.environ.get("WANDB_CONFIG_DIR")
        settings.settings_system = str(
            Path(config_dir).expanduser() / "settings" if config_dir
            else Path("~/.config/wandb/settings").expanduser()
        )
        settings.silent = True
        settings.update_from_system_settings()
        settings.update_from_env_vars(dict(os.environ))
        return str(settings.base_url), settings.api_key
    except Exception as err:  # internal wandb API: fall back to the environment alone
        log.debug("could not read wandb settings: %s", err)
        return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"), None


def _netrc_key(base_url: str) -> str | None:
    try:
        from wandb.sdk.lib.wbauth import wbnetrc

        return wbnetrc.read_netrc_auth(host=base_url)
    except Exception as err:  # an unreadable or malformed netrc counts as no credentials
        log.debug("no usable netrc entry for %s: %s", base_url, err)
        return None


def configured_api_keys() -> list[str]:
    """The W&B keys this process could use (env, netrc for the base URL, settings file); never logged."""
    keys = [os.environ.get("WANDB_API_KEY") or ""]
    base_url, settings_key = wandb_settings_base_url_and_key()
    keys += [_netrc_key(base_url) or "", settings_key or ""]
    return [key for key in dict.fromkeys(keys) if key]


def has_credentials() -> bool:
    """True when an API key (or an identity token file) is configured for the W&B base URL."""
    return bool(os.environ.get("WANDB_IDENTITY_TOKEN_FILE") or configured_api_keys())


def resolve_mode(requested: str = "auto", override: str | None = None) -> str:
    """The W&B mode to run in: "online", "offline" or "disabled".

    `override` (a command-line `--mode`) wins over the environment variable WANDB_MODE, which wins over
    `requested` (the experiment's wandb.mode). "auto" means online only when credentials are configured, else
    offline. "online" without credentials is a `UserError`.
    """
    if override:
        source, raw = "--mode", override.strip().lower()
    else:
        source = "WANDB_MODE" if os.environ.get("WANDB_MODE") else "the requested mode"
        raw = (os.environ.get("WANDB_MODE") or requested or "auto").strip().lower()
    mode = _MODE_ALIASES.get(raw)
    if mode is None:
        raise UserError(f"{source} is {raw!r}: use one of auto, online, offline, disabled")
    if mode == "auto":
        return "online" if has_credentials() else "offline"
    if mode == "online" and not has_credentials():
        base_url, _ = wandb_settings_base_url_and_key()
        raise UserError(
            f"{source} asks for W&B online mode, but no W&B credentials are configured for {base_url}: "
            "run `wandb login` (or export WANDB_API_KEY, and WANDB_BASE_URL for a self-hosted server), "
            "or use mode offline and publish the runs later with `wandb sync`"
        )
    return mode


# ---------------------------------------------------------------------------------------------------- config


def scrub(value: Any, secrets: Sequence[str] = (), _key: str = "") -> Any:
    """A plain-JSON copy of `value` with secrets replaced by "<redacted>".

    Redacted: every value under a key naming a secret (api_key, token, password, secret, credential, ...);
    any occurrence of the strings in `secrets` (the configured W&B keys); strings shaped like a W&B API key or
    a JWT. Paths become str, tuples/sets lists, numpy scalars Python numbers.
    """
    if _key and _SECRET_KEY_RE.search(_key) and not (value is None or (isinstance(value, (str, list, dict))
                                                                         and len(value) == 0)):
        return REDACTED
    if isinstance(value, Mapping):
        return {str(k): scrub(v, secrets, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [scrub(v, secrets) for v in items]
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        for secret in secrets:
            if secret and secret in value:
                value = value.replace(secret, REDACTED)
        return REDACTED if _looks_like_key(value.strip()) else value
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return value.item()  # numpy / torch scalar
    return value


def _looks_like_key(text: str) -> bool:
    if _JWT_RE.match(text):
        return True
    match = _KEY_SHAPE_RE.match(text)
    if not match:
        return False
    secret = match.group(1)
    return any(c.isdigit() for c in secret) and any(c.islower() for c in secret) and any(
        c.isupper() for c in secret)


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """{"git_commit": sha, "git_dirty": bool} of the repository holding comprobust, or {} outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_dirty": bool(dirty)} if commit else {}


def file_digest(path: Path) -> str:
    """Base64 MD5 of a file: the digest wandb puts in artifact manifests."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


# ---------------------------------------------------------------------------------------------------- lineage


@dataclass(frozen=True)
class ArtifactRef:
    """A parsed artifact reference "name:alias" (alias defaults to "latest")."""

    name: str
    alias: str = "latest"

    @classmethod
    def parse(cls, ref: str) -> "ArtifactRef":
        name, _, alias = str(ref).partition(":")
        alias = alias or "latest"
        if not _NAME_RE.match(name) or not _ALIAS_RE.match(alias):
            raise UserError(
                f"artifact reference {ref!r} is not of the form name:alias (letters, digits, '-', '_', '.'), "
                "for example 'ckpt-3f2a9c:best'"
            )
        return cls(name, alias)

    def __str__(self) -> str:
        return f"{self.name}:{self.alias}"


@dataclass(frozen=True)
class LineageRecord:
    """Where the file of one artifact name+alias lives, who wrote it, and its digest (base64 MD5)."""

    name: str
    alias: str
    path: str
    run_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    digest: str = ""
    recorded_at: float = 0.0

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.alias}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LineageStore:
    """A folder of small JSON records `<root>/<name>/<alias>.json`, one per artifact name and alias.

    Many jobs may write at once: each record is written to a temporary file and renamed into place (the last
    writer of a name+alias wins, readers never see half a record), and there is no shared index to rewrite.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _file(self, ref: ArtifactRef) -> Path:
        return self.root / ref.name / f"{ref.alias}.json"

    def record(self, name: str, alias: str, path: Path, run_id: str,
               metadata: Mapping[str, Any] | None = None, digest: str = "") -> LineageRecord:
        """Record (or replace) the file behind `name:alias`."""
        ref = ArtifactRef.parse(f"{name}:{alias}")
        rec = LineageRecord(name=ref.name, alias=ref.alias, path=str(Path(path).resolve()), run_id=run_id,
                            metadata=scrub(dict(metadata or {})), digest=digest, recorded_at=time.time())
        atomic_write_text(self._file(ref), json.dumps(rec.to_dict(), indent=1, sort_keys=True) + "\n")
        return rec

    def resolve(self, ref: str | ArtifactRef) -> LineageRecord | None:
        """The record for "name:alias", or None when nothing was recorded under it."""
        ref = ref if isinstance(ref, ArtifactRef) else ArtifactRef.parse(ref)
        file = self._file(ref)
        try:
            text = file.read_text()
        except FileNotFoundError:
            return None
        try:
            return LineageRecord(**json.loads(text))
        except (ValueError, TypeError) as err:
            raise UserError(f"{file}: unreadable lineage record ({err}); delete it and re-run the stage that "
                            f"produces {ref}") from err

    def list(self) -> list[LineageRecord]:
        """Every record, sorted by name and alias."""
        records = []
        for file in sorted(self.root.glob("*/*.json")):
            rec = self.resolve(ArtifactRef(file.parent.name, file.stem))
            if rec is not None:
                records.append(rec)
        return records


# ---------------------------------------------------------------------------------------------------- the run


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[dict[str, str | None]]:
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield saved
    except BaseException:
        _restore(saved)
        raise


def _restore(saved: Mapping[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


class StageRun:
    """One W&B run of one stage run. Create with `start_run`; use as a context manager or call `finish`."""

    def __init__(self, *, wandb_run: Any, mode: str, run_id: str, out_dir: Path, config: dict[str, Any],
                 secrets: list[str], saved_env: dict[str, str | None]) -> None:
        self._run = wandb_run
        self._secrets = secrets
        self._saved_env = saved_env
        self._config = config
        self._finished = False
        self.mode = mode
        self.out_dir = out_dir
        self.lineage = LineageStore(out_dir / "lineage")
        self.data_dir = out_dir / "wandb-data"
        self.id: str = wandb_run.id if wandb_run is not None else run_id

    # -- identity ------------------------------------------------------------------------------------------
    @property
    def dir(self) -> Path:
        """wandb's `run.dir` (the run's `files/` folder); in disabled mode a scratch folder under out_dir."""
        if self._run is not None:
            return Path(self._run.dir)
        folder = self.out_dir / "wandb" / f"disabled-run-{self.id}" / "files"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @property
    def run_folder(self) -> Path | None:
        """The folder holding `run-<id>.wandb` (what `wandb_offline.read_run` and `wandb sync` take)."""
        if self._run is None:
            return None
        return Path(self._run.settings.sync_dir)

    @property
    def config(self) -> dict[str, Any]:
        """The run's config as plain values (includes sweep parameters when a W&B agent started the run)."""
        if self._run is None:
            return dict(self._config)
        return dict(self._run.config.as_dict())

    # -- metrics -------------------------------------------------------------------------------------------
    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log one history row (e.g. one epoch); cheap (no flush per call)."""
        if self._run is not None:
            self._run.log(dict(metrics), step=step)

    def summary_update(self, values: Mapping[str, Any]) -> None:
        """Set summary values (final/best metrics) on the run."""
        if self._run is not None:
            self._run.summary.update(dict(values))

    def log_table(self, key: str, columns: list[str], rows: list[list], step: int | None = None) -> None:
        """Log a `wandb.Table` under `key` (offline its JSON lands in files/media/table/)."""
        if self._run is None:
            return
        import wandb

        self._run.log({key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])}, step=step)

    # -- artifacts -----------------------------------------------------------------------------------------
    def log_checkpoint(self, path: Path, artifact_name: str, metadata: Mapping[str, Any],
                       aliases: Sequence[str] = ("latest",), is_best: bool = False,
                       artifact_type: str = "model") -> Path:
        """Log a checkpoint file as an artifact (type "model" unless `artifact_type` says otherwise; the
        aliases, plus "best" when `is_best`) and record its lineage.

        The bytes are kept without a copy: a hard link
        `<out_dir>/wandb-data/checkpoints/<name>/<unique>-<file>` (a copy only where the filesystem refuses
        links) is added with policy "immutable", so replacing `path` atomically later (the next epoch) never
        changes what this version points to; an in-place overwrite would, and `use_input` then refuses the
        file (digest mismatch). Each call keeps its version until it is published and deleted, as W&B keeps
        every version: log when the checkpoint matters. Returns the kept file, which the lineage records of
        every alias point to.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} does not exist; save it before log_checkpoint")
        ArtifactRef.parse(artifact_name)
        all_aliases = list(dict.fromkeys([*aliases, *(["best"] if is_best else [])]))
        for alias in all_aliases:
            ArtifactRef.parse(f"{artifact_name}:{alias}")
        meta = scrub(dict(metadata), self._secrets)
        unique = f"{time.time_ns()}-{uuid.uuid4().hex[:8]}-{path.name}"
        kept = self.data_dir / "checkpoints" / artifact_name / unique
        kept.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, kept)
        except OSError:
            shutil.copy2(path, kept)
        if self._run is not None:
            import wandb

            artifact = wandb.Artifact(artifact_name, type=artifact_type, metadata=meta)
            entry = artifact.add_file(str(kept), name=path.name, policy="immutable")
            self._run.log_artifact(artifact, aliases=all_aliases)
            digest = entry.digest
        else:
            digest = file_digest(kept)
        for alias in all_aliases:
            self.lineage.record(artifact_name, alias, kept, self.id, meta, digest)
        return kept

    def use_input(self, ref: str, required_by: str, produced_by_stage: str) -> Path:
        """The local file of an upstream artifact `name:alias`, recorded as an input of this run.

        Online: `use_artifact` (W&B lineage), then the local lineage file when its digest matches the
        server's, else a download. Offline/disabled: the LineageStore record, checked against its digest. A
        missing artifact is a `UserError` naming the stage to run first. The config gets `inputs` (names) and
        `input_lineage` (the resolved records) either way.
        """
        parsed = ArtifactRef.parse(ref)
        record = self.lineage.resolve(parsed)
        missing = UserError(f"{required_by} needs artifact {str(parsed)!r}, which does not exist yet: "
                            f"run stage {produced_by_stage!r} first")
        if self.mode == "online":
            path, record = self._use_online(parsed, record, missing)
        else:
            if record is None:
                raise missing
            path = self._check_local(record, produced_by_stage)
            if path is None:
                raise UserError(f"{required_by} needs artifact {str(parsed)!r}, recorded in "
                                f"{self.lineage._file(parsed)}, but its file {record.path} is missing: "
                                f"re-run stage {produced_by_stage!r}")
        self._record_input(str(parsed), record, path)
        return path

    def _check_local(self, record: LineageRecord, produced_by_stage: str) -> Path | None:
        path = Path(record.path)
        if not path.is_file():
            return None
        if record.digest and file_digest(path) != record.digest:
            raise UserError(f"artifact {record.ref!r}: file {path} no longer matches its recorded digest "
                            f"(changed or corrupt); re-run stage {produced_by_stage!r}")
        return path

    def _use_online(self, ref: ArtifactRef, record: LineageRecord | None,
                    missing: UserError) -> tuple[Path, LineageRecord | None]:
        from comprobust.wandb_connection import is_not_found

        try:
            artifact = self._run.use_artifact(str(ref))
        except Exception as err:  # wandb.errors.CommError and friends
            if not is_not_found(err):
                raise UserError(f"W&B server error while resolving input {str(ref)!r} of run {self.id}: "
                                f"{str(err).splitlines()[0] if str(err) else type(err).__name__}; retry, or run "
                                "with --mode offline") from err
            if record is None or not Path(record.path).is_file():
                raise missing from err
            log.warning("artifact %s is not on the W&B server (%s); using the local file %s. Publish the "
                        "producing run with `wandb sync` to get the lineage on the server.",
                        ref, err, record.path)
            return Path(record.path), record
        entries = list(artifact.manifest.entries.values())
        if record is not None and len(entries) == 1 and entries[0].digest == record.digest \
                and Path(record.path).is_file():
            return Path(record.path), record
        root = Path(artifact.download(root=str(self.data_dir / "downloads" / ref.name / ref.alias)))
        files = [p for p in root.rglob("*") if p.is_file()]
        path = files[0] if len(files) == 1 else root
        return path, LineageRecord(ref.name, ref.alias, str(path), "", dict(artifact.metadata or {}),
                                   entries[0].digest if len(entries) == 1 else "")

    def _record_input(self, ref: str, record: LineageRecord | None, path: Path) -> None:
        inputs = list(self._config.get("inputs") or [])
        if ref not in inputs:
            inputs.append(ref)
        lineage = dict(self._config.get("input_lineage") or {})
        # no file path: it means nothing on another machine or the dashboard (the LineageStore keeps it)
        lineage[ref] = {"run_id": record.run_id if record else "", "digest": record.digest if record else ""}
        update = scrub({"inputs": inputs, "input_lineage": lineage}, self._secrets)
        self._config.update(update)
        if self._run is not None:
            self._run.config.update(update, allow_val_change=True)

    # -- lifecycle -----------------------------------------------------------------------------------------
    def finish(self, exit_code: int = 0) -> None:
        """Finish the run (idempotent) and restore the caller's WANDB_* environment."""
        global _active
        if self._finished:
            return
        self._finished = True
        try:
            if self._run is not None:
                folder = self.run_folder
                self._run.finish(exit_code=exit_code)
                self._wait_for_log(folder)
        finally:
            _restore(self._saved_env)
            if _active is self:
                _active = None

    @staticmethod
    def _wait_for_log(folder: Path | None, timeout_s: float = FINISH_FLUSH_TIMEOUT_S) -> None:
        """Wait until wandb-core has written the exit record: `finish` returns before the log is on disk,
        and a reader (the next stage, the results table) must see the finished run."""
        from comprobust.wandb_offline import tail_exit_code

        if folder is None:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(UserError):
                if tail_exit_code(folder) is not None:
                    return
            time.sleep(0.02)
        log.warning("W&B run log in %s still has no exit record %.0f s after finish", folder, timeout_s)

    def __enter__(self) -> "StageRun":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.finish(exit_code=0)
            return False
        # Leaving on an error or a termination (e.g. submitit's SystemExit after requeueing a preempted job,
        # while the W&B service is being killed too): record what we can, but never mask the original exception.
        try:
            if exc_type in (SystemExit, KeyboardInterrupt) and self._run is not None:
                self._run.mark_preempting()
            self.finish(exit_code=1)
        except Exception as err:  # the service may already be gone; `finish` restored the environment anyway
            log.warning("could not finish W&B run %s cleanly: %s", self.id, err)
        return False


def _init_wandb(mode: str, directory: str, **init: Any) -> Any:
    """`wandb.init` in `mode` (None when disabled), with one step axis ("epoch") for every metric; online, the
    run's URL is printed and a refusal by the server is a one-line `UserError`."""
    if mode == "disabled":
        return None
    import wandb

    try:
        run = wandb.init(mode=mode, dir=directory, settings=wandb.Settings(silent=True), **init)
    except (wandb.errors.CommError, wandb.errors.UsageError) as err:
        from comprobust.wandb_connection import base_url

        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"run {init.get('name')}: the W&B server {base_url()} refused the run ({first}); "
                        "check the project and entity, or run with --mode offline") from err
    run.define_metric("epoch", hidden=True)
    run.define_metric("*", step_metric="epoch")
    if mode == "online":
        print(f"{init.get('name')}: W&B run {run.url}", file=sys.stderr, flush=True)
    return run


def reset_client() -> None:
    """Forget the wandb client's process-wide state (its settings, read once from WANDB_* variables, and its
    service), so that the next `wandb.init` reads the environment afresh. A no-op before wandb was imported."""
    wandb = sys.modules.get("wandb")
    if wandb is not None:
        wandb.teardown()


_SERVICE_TOKEN_RE = re.compile(r"^\d+-(\d+)-")


def _forget_inherited_service() -> None:
    """Drop a W&B service token inherited from a parent process (local jobs, sweep agents, subprocesses).

    wandb lets child processes share their parent's service, but a stage job must own its service: a parent's
    service may sit on another node (Slurm exports the environment), and a killed child would leave its run
    registered there, so a rerun of the same run id fails with "run ID ... is in use".
    """
    match = _SERVICE_TOKEN_RE.match(os.environ.get("WANDB_SERVICE", ""))
    if match and int(match.group(1)) != os.getpid():
        os.environ.pop("WANDB_SERVICE", None)


def start_run(*, out_dir: Path, project: str, group: str, job_type: str, name: str, run_id: str,
              config: Mapping[str, Any], tags: Iterable[str], mode: str = "auto", inputs: Iterable[str] = (),
              resume: bool = True, mode_override: str | None = None) -> StageRun:
    """Start the W&B run of one stage run and return its `StageRun`.

    `out_dir` is the experiment's output folder: WANDB_DIR=out_dir/wandb, WANDB_DATA_DIR=out_dir/wandb-data,
    WANDB_CACHE_DIR=out_dir/wandb-cache while the run is open (restored by `finish`); lineage in
    out_dir/lineage. `run_id` is the stable, hash-based id; with `resume` a restarted job continues the same
    id (resume="allow"). Under a W&B sweep agent, wandb takes the id and project from the agent's environment
    (WANDB_RUN_ID, WANDB_PROJECT) instead. The config is scrubbed of secrets and gets `git_commit`/`git_dirty`
    and `inputs` (the input artifact names).
    """
    global _active
    if _active is not None:
        raise RuntimeError(f"W&B run {_active.id} is still open in this process: finish it before starting "
                           "another")
    for label, value in (("project", project), ("group", group), ("job_type", job_type), ("name", name)):
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"the W&B {label} must be a non-empty string, got {value!r}")
    if not _RUN_ID_RE.match(str(run_id)):
        raise UserError(f"run id {run_id!r} must be 1-64 letters, digits, '-' or '_'")
    tags = [str(t) for t in tags]
    for tag in tags:
        if not 0 < len(tag) <= 64:
            raise UserError(f"W&B tag {tag!r} must have 1 to 64 characters")
    input_refs = [str(ArtifactRef.parse(r)) for r in inputs]
    _forget_inherited_service()
    resolved = resolve_mode(mode, mode_override)
    secrets = configured_api_keys()
    full = {**git_state(), **dict(config)}
    full["inputs"] = list(dict.fromkeys([*(full.get("inputs") or []), *input_refs]))
    clean = scrub(full, secrets)

    out_dir = Path(out_dir).resolve()
    env = {"WANDB_DIR": str(out_dir / "wandb"), "WANDB_DATA_DIR": str(out_dir / "wandb-data"),
           "WANDB_CACHE_DIR": str(out_dir / "wandb-cache")}
    for folder in env.values():
        Path(folder).mkdir(parents=True, exist_ok=True)
    if resolved == "online":
        from comprobust.wandb_connection import require_reachable

        require_reachable(f"run {name}")
    with _environment(env) as saved:
        wandb_run = _init_wandb(resolved, env["WANDB_DIR"], project=project, group=group, job_type=job_type,
                                name=name, id=run_id, config=clean, tags=tags,
                                resume="allow" if resume else None)
        run = StageRun(wandb_run=wandb_run, mode=resolved, run_id=run_id, out_dir=out_dir, config=clean,
                       secrets=secrets, saved_env=saved)
    _active = run
    return run
