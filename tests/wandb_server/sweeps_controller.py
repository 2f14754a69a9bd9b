"""The sweep controller behind `agentHeartbeat`: the pinned `sweeps` engine picks the next trial.

The agent protocol as the server sees it: each heartbeat carries `runState`, `{run_id: alive}` for the runs the
agent still has as processes. While one is alive the agent gets no new command; an idle agent gets one `run`
command (the trial is stored first, as a pending run of the sweep with its config, so the engine never suggests
the same grid point twice) or `exit` once the engine has nothing left (grid exhausted) or the sweep was stopped.
"""

from __future__ import annotations

import random
import string
from typing import Any

import sweeps

from .state import Agent, Run, ServerState

_ENGINE_STATES = {s.value for s in sweeps.RunState}


def _sweep_run(run: Run) -> sweeps.SweepRun:
    config = {k: v for k, v in run.raw_config.items() if k != "_wandb"}
    state = run.state if run.state in _ENGINE_STATES else "running"
    return sweeps.SweepRun(
        name=run.name, state=state, config=config, summary_metrics=dict(run.summary), history=run.history
    )


def heartbeat(state: ServerState, agent: Agent, run_state: dict[str, bool]) -> list[dict[str, Any]]:
    """The commands for one heartbeat of `agent` (called with `state.lock` held)."""
    agent.heartbeats += 1
    sweep = state.sweeps[agent.sweep]
    if any(run_state.values()):
        return []  # the agent's run is still alive: nothing new
    if agent.current_run is not None:
        # the agent's run process is gone; a run that never reported completion crashed
        run = state.find_run(sweep.entity, sweep.project, agent.current_run)
        if run is not None and run.state in ("pending", "running"):
            run.state = "crashed" if run.upserts else "failed"
        agent.current_run = None
    if sweep.state in ("FINISHED", "CANCELED"):
        return [{"type": "exit"}]
    if sweep.state != "RUNNING":
        return []  # paused
    suggestion = sweeps.next_run(
        sweep.config, [_sweep_run(r) for r in state.sweep_runs(sweep.name)], validate=False
    )
    if suggestion is None:
        sweep.state = "FINISHED"
        return [{"type": "exit"}]
    run_id = "".join(random.choices(string.ascii_lowercase + string.digits, k=8))
    run, _ = state.get_or_create_run(sweep.entity, sweep.project, run_id)
    run.state, run.raw_config, run.sweep = "pending", dict(suggestion.config), sweep.name
    sweep.runs.append(run_id)
    agent.current_run = run_id
    return [
        {
            "type": "run",
            "run_id": run_id,
            "args": dict(suggestion.config),
            "program": sweep.config.get("program"),
        }
    ]
