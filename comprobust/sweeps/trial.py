"""One sweep trial: what `launch.py run-stage` does when a sweep agent (`wandb agent` online, the offline
controller of `comprobust.sweeps`) started it.

An agent hands each trial a W&B run id (WANDB_RUN_ID) and, online, a sweep id (WANDB_SWEEP_ID); wandb then gives
that id to every `wandb.init` in the process, whatever id it is asked for. The trial's W&B run is therefore:

* the stage run itself, when the stage plans one run and it has not finished: its per-epoch history is the
  trial's (what hyperband reads);
* otherwise (a per-corruption stage, or a stage run that finished in an earlier trial with the same
  parameters) a short "sweep-trial" run: the stage runs execute first under their own W&B ids with the agent's
  variables set aside, then the trial run records, in its summary, each run's metrics as `<metric>/<corruption>`
  and their mean under the metric's own name (the sweep's objective), plus `stage_runs`.

Offline sweeps set COMPROBUST_SWEEP_ID instead of WANDB_SWEEP_ID: a locally made sweep id that reached the run
log would make `wandb sync` fail on a server that has never heard of it (`launch.py publish` creates the sweep
on the server with the synced runs as its prior runs instead).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from comprobust.runs import DoneRecord

OFFLINE_SWEEP_ID_ENV = "COMPROBUST_SWEEP_ID"
_AGENT_ENV = ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH", OFFLINE_SWEEP_ID_ENV)


@dataclass(frozen=True)
class Trial:
    """The sweep and W&B run id an agent gave this process."""

    sweep_id: str
    run_id: str
    offline: bool

    def config(self) -> dict[str, Any]:
        """What every W&B run of the trial records about it (config key `sweep`)."""
        return {"sweep": {"id": self.sweep_id, "trial": self.run_id, "offline": self.offline}}


def current_trial(environ: Mapping[str, str] | None = None) -> Trial | None:
    """The trial this process runs for, or None outside a sweep agent."""
    env = os.environ if environ is None else environ
    run_id = env.get("WANDB_RUN_ID")
    if env.get("WANDB_SWEEP_ID") and run_id:
        return Trial(env["WANDB_SWEEP_ID"], run_id, offline=False)
    if env.get(OFFLINE_SWEEP_ID_ENV) and run_id:
        return Trial(env[OFFLINE_SWEEP_ID_ENV], run_id, offline=True)
    return None


@contextlib.contextmanager
def outside_the_trial() -> Iterator[None]:
    """Set the agent's variables aside (and reset the wandb client, which caches them) for the body."""
    from comprobust.tracking import reset_client

    saved = {key: os.environ.pop(key) for key in _AGENT_ENV if key in os.environ}
    reset_client()
    try:
        yield
    finally:
        reset_client()
        os.environ.update(saved)


def summary_of(records: Sequence[tuple[str | None, Mapping[str, Any]]]) -> dict[str, Any]:
    """The trial's summary from (variant, metrics) of each stage run (`TrainRun.variant`: its corruption and axis
    values): every numeric metric all runs share, as the mean over the runs, plus `<metric>/<variant>` when
    there are several."""
    if not records:
        return {}
    summary: dict[str, Any] = {}
    shared = set.intersection(*(set(metrics) for _, metrics in records))
    for key in sorted(shared):
        values = [metrics[key] for _, metrics in records]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            summary[key] = sum(values) / len(values)
            if len(records) > 1:
                summary.update({f"{key}/{variant}": metrics[key] for variant, metrics in records})
    return summary


def run_trial(experiment: Any, runs: Sequence[Any], trial: Trial, mode: str | None) -> list[DoneRecord]:
    """Execute the stage runs of one trial (see the module doc) and return their done records."""
    from comprobust.run_state import done_record
    from comprobust.stages import execute
    from comprobust.tracking import start_run

    if len(runs) == 1 and done_record(experiment, runs[0]) is None:
        return [execute(experiment, runs[0], mode=mode, wandb_id=trial.run_id, extra_config=trial.config())]
    with outside_the_trial():
        records = [execute(experiment, run, mode=mode, extra_config=trial.config()) for run in runs]
    summary = summary_of([(run.variant, record.metrics) for run, record in zip(runs, records)])
    summary["stage_runs"] = [run.run_id for run in runs]
    first = runs[0]
    config = {
        **first.config.get("params", {}),
        **trial.config(),
        "stage": first.stage,
        "kind": "sweep-trial",
        "experiment": experiment.name,
    }
    with start_run(
        out_dir=experiment.output_dir,
        project=experiment.wandb.project,
        group=experiment.name,
        job_type="sweep-trial",
        name=trial.run_id,
        run_id=trial.run_id,
        config=config,
        tags=[first.method, "sweep-trial"],
        mode=experiment.wandb.mode,
        mode_override=mode,
    ) as tracker:
        tracker.summary_update(summary)
    print(
        f"sweep trial {trial.run_id}: "
        + "  ".join(f"{k} {v:.4g}" for k, v in summary.items() if isinstance(v, float) and "/" not in k)
    )
    return records
