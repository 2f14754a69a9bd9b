"""Pull runs back into pandas: one `RunStore` interface (`store`), two backends (`offline`, `api`), the same
tidy frames; `open_store` picks the backend for an experiment.

* `OfflineRunStore(wandb_dir, cache_dir)` reads offline (or online) run folders from their `run-<id>.wandb`
  transaction logs (`comprobust.wandb_offline`), the `wandb.Table` JSON files next to them and the activation
  statistics artifacts they logged. Decoded runs are cached in `cache_dir` (plain JSON, never a pickle: a
  cache file in a shared output folder must not be able to run code; keyed by every run file's path, size
  and mtime), so re-reading unchanged runs costs a few `stat` calls.
* `ApiRunStore(project, entity, group, api)` asks a W&B server through `wandb.Api()`: runs by project and
  group, their config and summary, the table files and the activation artifacts.

Both return:

* `runs()`: one row per run (the latest finished folder of a resumed run): identity, job type, state, the
  evaluation fields (method label, system, dataset, seed, shard) and the flattened `config.*` and `summary.*`;
* `results()`: one row per (method, seed, composition) of every *finished* evaluation run: method (the
  system's label), system, dataset, seed, composition, abbreviation, length, accuracy (%), loss, images,
  run_id, shard;
* `invariance()`: one row per (method, seed, composition of length >= 2): elemental_invariance,
  composition_invariance, units, accuracy. Unsharded evaluations logged an "invariance" table; for sharded
  ones the shards' activation statistics are merged and scored with `comprobust.invariance.invariance_scores`.

Failed, crashed or still-running runs are listed by `runs()` with their state but never feed `results()`. When
two finished runs give the same (method, seed, composition) (a re-run under a changed config), the latest wins
and `warnings` says so. Reports, training and sweep runs (job types other than "evaluate") are never read as
evaluations.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from comprobust.errors import UserError
from comprobust.results.api import ApiRunStore
from comprobust.results.offline import OfflineRunStore
from comprobust.results.records import (
    EVALUATE,
    INVARIANCE_COLUMNS,
    METHOD_ORDER,
    RESULT_COLUMNS,
    RUN_COLUMNS,
    RunRecord,
    method_order,
)
from comprobust.results.store import RunStore

__all__ = [
    "EVALUATE",
    "INVARIANCE_COLUMNS",
    "METHOD_ORDER",
    "RESULT_COLUMNS",
    "RUN_COLUMNS",
    "SOURCES",
    "ApiRunStore",
    "OfflineRunStore",
    "RunRecord",
    "RunStore",
    "method_order",
    "open_store",
]

SOURCES = ("auto", "offline", "wandb")


def open_store(experiment: Any, cache_dir: str | os.PathLike | None = None, source: str = "auto") -> RunStore:
    """The store of an experiment's runs, and a line saying which was chosen (printed to stderr).

    `source` "offline" reads the local W&B logs under `<output_dir>/wandb` (written online too), "wandb" the
    server's API, "auto" the API when the experiment runs online (mode, WANDB_MODE and credentials) else the logs.
    """
    from comprobust.tracking import resolve_mode

    if source not in SOURCES:
        raise UserError(f"--source {source!r}: use one of {', '.join(SOURCES)}")
    cache = Path(cache_dir) if cache_dir is not None else experiment.output_dir / "cache" / "results"
    if source == "auto":
        mode = resolve_mode(experiment.wandb.mode)
        if mode == "disabled":
            raise UserError(
                f"{experiment.path}: W&B mode is disabled (wandb.mode or WANDB_MODE), so no runs "
                "were recorded to read back; use mode auto or offline"
            )
        source = "wandb" if mode == "online" else "offline"
    if source == "wandb":
        from comprobust.wandb_connection import require_reachable

        url = require_reachable(f"report {experiment.path}")
        store: RunStore = ApiRunStore(
            experiment.wandb.project,
            entity=experiment.wandb.entity,
            group=experiment.name,
            cache_dir=cache,
        )
        print(
            f"reading runs from W&B at {url} (project {experiment.wandb.project}, group {experiment.name}); "
            "--source offline reads the local logs instead",
            file=sys.stderr,
        )
        return store
    # by group only: a sweep agent may have put runs in the project its environment named
    store = OfflineRunStore(experiment.output_dir / "wandb", cache_dir=cache, group=experiment.name)
    print(
        f"reading runs from the local W&B logs in {experiment.output_dir / 'wandb'}; --source wandb reads the "
        "server instead",
        file=sys.stderr,
    )
    return store
