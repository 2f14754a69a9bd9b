"""The `sweeps` package (W&B's sweep engine) as comprobust drives it: quiet import, reproducible suggestions,
run records in the engine's shape, and the stable ids of sweeps and their runs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from comprobust.sweeps.store import STOPPED, RunRecord


def sweeps_engine():
    """The `sweeps` package (W&B's sweep engine), imported quietly (pydantic warns on import)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import sweeps

        return sweeps


def plain(value: Any) -> Any:
    """numpy scalars/arrays -> Python values, recursively (yaml and json cannot write numpy types)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if type(value).__module__ == "numpy":
        return value.item() if hasattr(value, "item") and getattr(value, "ndim", 0) == 0 else value.tolist()
    return value


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed `random` and `numpy` (the engine draws from both) and restore their states afterwards."""
    import numpy as np

    saved_py, saved_np = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(saved_py)
        np.random.set_state(saved_np)


def digest(text: str, length: int = 8) -> str:
    """`length` lowercase base-36 characters of SHA-256 (the shape of W&B run and sweep ids)."""
    number = int.from_bytes(hashlib.sha256(text.encode()).digest()[:12], "big")
    chars = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    for _ in range(length):
        number, rest = divmod(number, 36)
        out += chars[rest]
    return out


def sweep_id_for(config: Mapping[str, Any], identity: Mapping[str, Any] | None = None) -> str:
    """The stable id of a sweep: a hash of its config (and of what it runs: the experiment's stage)."""
    payload = json.dumps({"config": config, "identity": identity or {}}, sort_keys=True, default=str)
    return digest(payload)


def _engine_state(record: RunRecord) -> tuple[str, bool]:
    if record.state == STOPPED:
        return "killed", True
    return record.state, False


def sweep_runs(records: Sequence[RunRecord], histories: Mapping[str, list] | None = None) -> list[Any]:
    engine = sweeps_engine()
    runs = []
    for record in records:
        state, stopped = _engine_state(record)
        history = (histories or {}).get(record.run_id, record.history)
        runs.append(
            engine.SweepRun(
                name=record.run_id,
                state=state,
                stopped=stopped,
                config={k: {"value": v} for k, v in record.params.items()},
                summary_metrics=dict(record.summary),
                history=list(history or []),
            )
        )
    return runs


def suggest_params(engine_config: Any, records: Sequence[RunRecord], sweep_id: str) -> dict[str, Any] | None:
    """The engine's next parameters given the runs so far (None: grid exhausted), reproducibly seeded."""
    engine = sweeps_engine()
    seed = int(hashlib.sha256(f"{sweep_id}:{len(records)}".encode()).hexdigest()[:8], 16)
    with seeded(seed), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # random search ignores the runs so far: skip building them (O(runs) per suggestion)
        run = engine.next_run(
            engine_config, [] if engine_config["method"] == "random" else sweep_runs(records)
        )
    if run is None:
        return None
    return {name: plain(spec["value"]) for name, spec in run.config.items()}


def preview(
    config: Mapping[str, Any], sweep_id: str, n: int, records: Sequence[RunRecord] = ()
) -> list[dict[str, Any]]:
    """The next `n` suggestions an offline controller of the sweep `config` would make after `records` (treated
    as running)."""
    engine_config = sweeps_engine().SweepConfig(config)
    records = list(records)
    out = []
    for _ in range(n):
        if config.get("run_cap") is not None and len(records) >= config["run_cap"]:
            break
        params = suggest_params(engine_config, records, sweep_id)
        if params is None:
            break
        out.append(params)
        records.append(RunRecord(run_id=f"preview-{len(records)}", index=len(records), params=params))
    return out
