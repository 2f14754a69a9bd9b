"""Secrets never reach a W&B config: `scrub` makes a plain-JSON copy with every secret replaced."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

REDACTED = "<redacted>"
_SECRET_KEY_RE = re.compile(
    r"api[_-]?key|apikey|access[_-]?key|private[_-]?key|token|passw(or)?d|secret|credential", re.IGNORECASE
)
# The shape wandb accepts for an API key: an optional "<prefix>-", then 40+ word characters. Only mixed-case
# alphanumeric ones (random-looking) count as keys, so long snake_case names and hex digests (git commits,
# config hashes) are never redacted; a legacy 40-hex key is caught by the exact-match rule instead.
_KEY_SHAPE_RE = re.compile(r"^(?:[A-Za-z0-9]{1,32}-)?([A-Za-z0-9_]{40,})$")
_JWT_RE = re.compile(r"^eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}$")


def scrub(value: Any, secrets: Sequence[str] = (), _key: str = "") -> Any:
    """A plain-JSON copy of `value` with secrets replaced by "<redacted>".

    Redacted: every value under a key naming a secret (api_key, token, password, secret, credential, ...);
    any occurrence of the strings in `secrets` (the configured W&B keys); strings shaped like a W&B API key or
    a JWT. Paths become str, tuples/sets lists, numpy scalars Python numbers.
    """
    if (
        _key
        and _SECRET_KEY_RE.search(_key)
        and not (value is None or (isinstance(value, (str, list, dict)) and len(value) == 0))
    ):
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
    return (
        any(c.isdigit() for c in secret)
        and any(c.islower() for c in secret)
        and any(c.isupper() for c in secret)
    )
