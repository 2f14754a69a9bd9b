"""The wandb client in this process: the environment it reads, its service process, and `wandb.init` with the
step axis every comprobust metric uses. `start_run` (`tracking.run`) is its one caller besides sweep trials,
which reset it between runs."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterator, Mapping
from typing import Any, Literal, cast

from comprobust.errors import UserError, first_line


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[dict[str, str | None]]:
    """Set the environment `values` (the W&B folders, read by the client as it starts) and yield what they
    replaced; on an error inside the block they are restored at once, otherwise by `restore` when the run ends."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield saved
    except BaseException:
        restore(saved)
        raise


def restore(saved: Mapping[str, str | None]) -> None:
    """Put back the environment variables `environment` replaced (unset the ones that were unset)."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def init_wandb(mode: str, directory: str, **init: Any) -> Any:
    """`wandb.init` in `mode` (None when disabled), with one step axis ("epoch") for every metric; online, the
    run's URL is printed and a refusal by the server is a one-line `UserError`."""
    if mode == "disabled":
        return None
    import wandb

    try:
        run = wandb.init(
            mode=cast(Literal["online", "offline"], mode),
            dir=directory,
            settings=wandb.Settings(silent=True),
            **init,
        )
    except (wandb.errors.CommError, wandb.errors.UsageError) as err:
        from comprobust.wandb_connection import base_url

        raise UserError(
            f"run {init.get('name')}: the W&B server {base_url()} refused the run "
            f"({first_line(err)}); check the project and entity, or run with --mode offline"
        ) from err
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


def forget_inherited_service() -> None:
    """Drop a W&B service token inherited from a parent process (local jobs, sweep agents, subprocesses).

    wandb lets child processes share their parent's service, but a stage job must own its service: a parent's
    service may sit on another node (Slurm exports the environment), and a killed child would leave its run
    registered there, so a rerun of the same run id fails with "run ID ... is in use".
    """
    match = _SERVICE_TOKEN_RE.match(os.environ.get("WANDB_SERVICE", ""))
    if match and int(match.group(1)) != os.getpid():
        os.environ.pop("WANDB_SERVICE", None)
