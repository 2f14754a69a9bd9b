"""Checkpoint lineage kept on disk in every mode: which file stands behind each artifact `name:alias`, who
wrote it, and its digest (the one wandb puts in artifact manifests)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError
from comprobust.tracking.scrub import scrub

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")  # W&B artifact names and our lineage file names
_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def file_digest(path: Path) -> str:
    """Base64 MD5 of a file: the digest wandb puts in artifact manifests."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


@dataclass(frozen=True)
class ArtifactRef:
    """A parsed artifact reference "name:alias" (alias defaults to "latest")."""

    name: str
    alias: str = "latest"

    @classmethod
    def parse(cls, ref: str) -> ArtifactRef:
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

    A file inside the folder that holds `root` (the experiment's output folder) is recorded relative to it, so an
    experiment moved or copied elsewhere as a whole still finds its checkpoints; records read back carry absolute
    paths either way (records written with absolute paths still read as they are).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.base = self.root.parent

    def _file(self, ref: ArtifactRef) -> Path:
        return self.root / ref.name / f"{ref.alias}.json"

    def record(
        self,
        name: str,
        alias: str,
        path: Path,
        run_id: str,
        metadata: Mapping[str, Any] | None = None,
        digest: str = "",
    ) -> LineageRecord:
        """Record (or replace) the file behind `name:alias`."""
        ref = ArtifactRef.parse(f"{name}:{alias}")
        absolute, base = Path(path).resolve(), self.base.resolve()
        rec = LineageRecord(
            name=ref.name,
            alias=ref.alias,
            path=str(absolute.relative_to(base) if absolute.is_relative_to(base) else absolute),
            run_id=run_id,
            metadata=scrub(dict(metadata or {})),
            digest=digest,
            recorded_at=time.time(),
        )
        atomic_write_text(self._file(ref), json.dumps(rec.to_dict(), indent=1, sort_keys=True) + "\n")
        return self._absolute(rec)

    def _absolute(self, rec: LineageRecord) -> LineageRecord:
        return rec if Path(rec.path).is_absolute() else replace(rec, path=str(self.base / rec.path))

    def resolve(self, ref: str | ArtifactRef) -> LineageRecord | None:
        """The record for "name:alias", or None when nothing was recorded under it."""
        ref = ref if isinstance(ref, ArtifactRef) else ArtifactRef.parse(ref)
        file = self._file(ref)
        try:
            text = file.read_text()
        except FileNotFoundError:
            return None
        try:
            return self._absolute(LineageRecord(**json.loads(text)))
        except (ValueError, TypeError) as err:
            raise UserError(
                f"{file}: unreadable lineage record ({err}); delete it and re-run the stage that "
                f"produces {ref}"
            ) from err

    def list(self) -> list[LineageRecord]:
        """Every record, sorted by name and alias."""
        records = []
        for file in sorted(self.root.glob("*/*.json")):
            rec = self.resolve(ArtifactRef(file.parent.name, file.stem))
            if rec is not None:
                records.append(rec)
        return records
