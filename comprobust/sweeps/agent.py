"""The offline sweep agent: takes runs from the controller and runs each one's command as `wandb agent` would,
with heartbeats, hyperband stops, and take-over of runs whose agent died."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comprobust.sweeps.controller import Agent, IssuedRun, SweepController
from comprobust.sweeps.store import FAILED, FINISHED, STOPPED


@dataclass
class AgentReport:
    agent: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def __str__(self) -> str:
        states = [r["state"] for r in self.runs]
        counts = ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states)))
        return f"agent {self.agent}: {len(states)} runs ({counts})"


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def run_agent(
    folder: str | os.PathLike,
    count: int | None = None,
    *,
    agent: Agent | None = None,
    heartbeat_s: float = 10.0,
    stale_s: float = 120.0,
    poll_s: float = 5.0,
    linger: bool = True,
    max_consecutive_failures: int = 5,
    grace_s: float = 30.0,
    lock_timeout_s: float = 120.0,
    quiet: bool = False,
) -> AgentReport:
    """Run sweep runs until `count` runs are done here, the sweep has no more, or runs keep failing.

    With `linger`, an agent that gets no new run waits while other agents' runs are still running, so that a run
    whose agent dies is taken over (after `stale_s` without heartbeat, at once for a dead pid on this host).
    """
    controller = SweepController(folder, stale_s=stale_s, lock_timeout_s=lock_timeout_s)
    agent = agent or Agent.here()
    report = AgentReport(agent.id)
    failures = 0
    say = (lambda text: None) if quiet else (lambda text: print(f"[{agent.id}] {text}", flush=True))
    while count is None or len(report.runs) < count:
        run = controller.next_run(agent)
        if run is None:
            if linger and controller.has_running():
                time.sleep(poll_s)
                continue
            say("no more runs in this sweep")
            break
        say(
            f"run {run.run_id} (attempt {run.attempt}): "
            + " ".join(f"{k}={v}" for k, v in run.params.items())
        )
        outcome = _execute(controller, run, agent, heartbeat_s, grace_s)
        if outcome is None:
            say(f"run {run.run_id}: taken over elsewhere; dropped here")
            continue
        report.runs.append(outcome)
        metric = (controller.metric or {}).get("name")
        value = outcome["summary"].get(metric) if metric else None
        say(
            f"run {run.run_id}: {outcome['state']}"
            + (f"  {metric} {value:.4g}" if isinstance(value, float) else "")
        )
        failures = failures + 1 if outcome["state"] == FAILED else 0
        if failures >= max_consecutive_failures:
            say(f"stopping: {failures} runs in a row failed (see {controller.folder / 'logs'})")
            break
    return report


def _execute(
    controller: SweepController, run: IssuedRun, agent: Agent, heartbeat_s: float, grace_s: float
) -> dict[str, Any] | None:
    store = controller.store
    argv, env = controller.command_for(run)
    log_path = controller.folder / "logs" / f"{run.run_id}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    store.write_heartbeat(run.run_id, run.attempt, agent.id)
    with open(log_path, "ab") as log:
        log.write(f"--- attempt {run.attempt} by {agent.id} at {time.ctime()}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv,
            cwd=controller.workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        stopped = lost = False
        try:
            while True:
                try:
                    code = proc.wait(timeout=heartbeat_s)
                    break
                except subprocess.TimeoutExpired:
                    pass
                history = controller.history(run) if "early_terminate" in controller.config else []
                store.write_heartbeat(run.run_id, run.attempt, agent.id, history=history)
                if not controller.owns(run):
                    lost = True
                elif history and controller.should_stop(run, history):
                    stopped = True
                if lost or stopped:
                    code = _terminate(proc, grace_s)
                    break
        except BaseException:
            _terminate(proc, grace_s=5.0)  # the agent itself is going: its run is reissued later
            raise
    if lost:
        return None
    summary, history = controller.result(run)
    state = STOPPED if stopped else FINISHED if code == 0 else FAILED
    error = None if state != FAILED else f"exit code {code}; see {log_path}: " + _tail(log_path)
    if stopped and history and controller.metric:
        summary.setdefault(controller.metric["name"], history[-1][controller.metric["name"]])
    recorded = controller.finish(run, state, summary, history, exit_code=code, error=error)
    store.heartbeat_path(run.run_id, run.attempt).unlink(missing_ok=True)
    if not recorded:
        return None
    return {"run_id": run.run_id, "state": state, "params": run.params, "summary": summary, "exit_code": code}


def _terminate(proc: subprocess.Popen, grace_s: float) -> int:
    """SIGTERM the run's process group, SIGKILL it after `grace_s`."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text[-lines:])


def agent_job(folder: str, count: int | None = None) -> str:
    """What each array task of `launch.py sweep` runs (picklable for submitit)."""
    return str(run_agent(folder, count))
