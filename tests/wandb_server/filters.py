"""Mongo-style run filters as `wandb.Api().runs(path, filters=...)` sends them, evaluated against one run.

Supported: `$and`, `$or`, `$nor`, field equality, `$eq $ne $in $nin $gt $gte $lt $lte $regex $exists`, on
`config.X` (also `config.X.value`), `summary_metrics.X`, `displayName`/`display_name`, `name`/`id`, `group`,
`jobType`/`job_type`, `state`, `tags` (a list: equality means membership), `sweep`, `createdAt`/`created_at`.
"""

from __future__ import annotations

import re
from typing import Any

from .state import Run

_MISSING = object()


def _dig(value: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return _MISSING
    return value


def field_value(run: Run, key: str) -> Any:
    """The value a filter key names on a run (`_MISSING` when absent)."""
    head, _, rest = key.partition(".")
    parts = rest.split(".") if rest else []
    if head == "config":
        if parts and parts[-1] == "value":
            parts = parts[:-1]
        return _dig(run.config, parts)
    if head in ("summary_metrics", "summaryMetrics", "summary"):
        return _dig(run.summary, parts)
    simple = {
        "displayName": run.display_name,
        "display_name": run.display_name,
        "name": run.name,
        "id": run.name,
        "group": run.group,
        "jobType": run.job_type,
        "job_type": run.job_type,
        "state": run.state,
        "tags": run.tags,
        "sweep": run.sweep,
        "sweepName": run.sweep,
        "createdAt": run.created_at,
        "created_at": run.created_at,
        "username": run.entity,
        "entity": run.entity,
        "project": run.project,
    }
    if head in simple:
        return simple[head] if not parts else _MISSING
    raise ValueError(f"filter key {key!r} not supported by the local W&B server")


def _compare(op: str, actual: Any, expected: Any) -> bool:
    if op == "$exists":
        return (actual is not _MISSING and actual is not None) == bool(expected)
    if isinstance(actual, list) and op in ("$eq", "$in", "$ne", "$nin"):  # tags: membership
        hit = any(_compare("$eq" if op in ("$eq", "$ne") else "$in", a, expected) for a in actual)
        return hit if op in ("$eq", "$in") else not hit
    if op == "$eq":
        return actual is not _MISSING and actual == expected
    if op == "$ne":
        return actual is _MISSING or actual != expected
    if op == "$in":
        return actual is not _MISSING and actual in expected
    if op == "$nin":
        return actual is _MISSING or actual not in expected
    if op == "$regex":
        return isinstance(actual, str) and re.search(expected, actual) is not None
    if actual is _MISSING or actual is None:
        return False
    try:
        return {
            "$gt": actual > expected,
            "$gte": actual >= expected,
            "$lt": actual < expected,
            "$lte": actual <= expected,
        }[op]
    except KeyError:
        raise ValueError(f"filter operator {op!r} not supported by the local W&B server") from None
    except TypeError:
        return False


def matches(run: Run, flt: dict[str, Any] | None) -> bool:
    """Whether a run passes a filter document (None or {} passes everything)."""
    if not flt:
        return True
    for key, cond in flt.items():
        if key == "$and":
            ok = all(matches(run, sub) for sub in cond)
        elif key == "$or":
            ok = any(matches(run, sub) for sub in cond)
        elif key == "$nor":
            ok = not any(matches(run, sub) for sub in cond)
        else:
            actual = field_value(run, key)
            if isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
                ok = all(_compare(op, actual, expected) for op, expected in cond.items())
            else:
                ok = _compare("$eq", actual, cond)
        if not ok:
            return False
    return True


def sort_key(order: str | None) -> tuple[str, bool]:
    """(field, descending) from an `order` like "-created_at", "+summary_metrics.acc" (default: newest first)."""
    order = order or "-created_at"
    desc = order.startswith("-")
    return order.lstrip("+-"), desc
