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

Modules: `credentials` (the mode), `scrub` (secrets out of configs), `lineage` (artifact files on disk), `client`
(the wandb client's environment, service and `init`), `run` (`start_run`, `StageRun`). This package re-exports
their public names: callers import from `comprobust.tracking`.
"""

from comprobust.tracking.client import reset_client
from comprobust.tracking.credentials import (
    MODES,
    configured_api_keys,
    has_credentials,
    resolve_mode,
    wandb_settings_base_url_and_key,
)
from comprobust.tracking.lineage import ArtifactRef, LineageRecord, LineageStore, file_digest
from comprobust.tracking.run import StageRun, git_state, start_run
from comprobust.tracking.scrub import REDACTED, scrub

__all__ = [
    "MODES",
    "REDACTED",
    "ArtifactRef",
    "LineageRecord",
    "LineageStore",
    "StageRun",
    "configured_api_keys",
    "file_digest",
    "git_state",
    "has_credentials",
    "reset_client",
    "resolve_mode",
    "scrub",
    "start_run",
    "wandb_settings_base_url_and_key",
]
