"""Golden query texts: the GraphQL documents the pinned wandb client sends, one file per operation.

A query text the client sends that is not among its operation's golden variants is drift (a wandb upgrade changed
what it asks): `drift()` names it, and `WANDB_SERVER_CAPTURE=1 pytest tests/test_wandb_server.py` records the
new variants (review the diff, then check the server still answers every selected field).
"""

from __future__ import annotations

import re
from pathlib import Path

GOLDEN_DIR = Path(__file__).with_name("golden")
_SEPARATOR = "\n# ---- variant ----\n"


def normalize(query: str) -> str:
    """The query's tokens joined by single spaces (layout, commas and comments do not count)."""
    query = re.sub(r"#[^\n]*", " ", query)
    return " ".join(re.findall(r"\.\.\.|[_A-Za-z0-9]+|\"(?:\\.|[^\"\\])*\"|[^\s,_A-Za-z0-9]", query))


def load(directory: Path = GOLDEN_DIR) -> dict[str, set[str]]:
    """Operation name -> normalized golden variants."""
    out: dict[str, set[str]] = {}
    for path in sorted(directory.glob("*.graphql")):
        out[path.stem] = {normalize(v) for v in path.read_text().split(_SEPARATOR) if v.strip()}
    return out


def drift(seen: dict[str, set[str]], directory: Path = GOLDEN_DIR) -> list[str]:
    """The operations whose seen query texts are not all golden."""
    golden = load(directory)
    return sorted(
        op for op, texts in seen.items() if any(normalize(t) not in golden.get(op, set()) for t in texts)
    )


def capture(seen: dict[str, set[str]], directory: Path = GOLDEN_DIR) -> list[str]:
    """Add the seen texts that are not golden yet; returns the operations whose files changed."""
    directory.mkdir(exist_ok=True)
    golden, changed = load(directory), []
    for op, texts in sorted(seen.items()):
        new = sorted({normalize(t): t for t in texts if normalize(t) not in golden.get(op, set())}.values())
        if not new:
            continue
        path = directory / f"{op}.graphql"
        old = path.read_text().split(_SEPARATOR) if path.exists() else []
        path.write_text(_SEPARATOR.join([v for v in old if v.strip()] + [t.strip() + "\n" for t in new]))
        changed.append(op)
    return changed
