"""Where stage runs execute: submitit executors for Slurm (when a controller answers) or local subprocesses.

The `cluster:` block of an experiment becomes a `ClusterConfig`. `make_executor` returns a `submitit.SlurmExecutor`
when the config asks for Slurm (or says `auto` and `scontrol ping` reports a live controller), otherwise a
`submitit.LocalExecutor`. `submit_array` submits one stage as ONE Slurm job array, chained to earlier stages with
`afterok` dependencies (on the local executor it waits for them instead). `validate_resources` asks the live
cluster whether it can run the requested resources before anything is submitted. `Requeueable` marks a job that
submitit requeues when Slurm sends its preemption/time-limit signal (USR2); the job resumes from its own
checkpoint file. `wait_for_jobs` prints progress and raises `JobFailed` with the failing job's stderr tail.
"""
from __future__ import annotations

import contextlib
import dataclasses
import difflib
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import submitit
from submitit.core.core import Job

from comprobust.errors import UserError, WorkFailed

if TYPE_CHECKING:
    from comprobust.config import ExperimentConfig

EXECUTORS = ("auto", "local", "slurm", "inline")  # inline: run in the launching process (comprobust.pipeline)
# sbatch options that have their own key in the cluster block, or that submitit manages itself
_RESERVED_SBATCH = {
    "partition": "partition", "p": "partition", "time": "timeout_min", "t": "timeout_min",
    "cpus-per-task": "cpus_per_task", "c": "cpus_per_task", "mem": "mem_gb", "gpus-per-task": "gpus_per_task",
    "array": "array_parallelism", "signal": "signal_delay_s", "dependency": None, "output": "log_folder",
    "o": "log_folder", "error": "log_folder", "e": "log_folder", "job-name": None, "J": None, "open-mode": None,
}
_SCONTROL_TIMEOUT_S = 5.0


class JobFailed(WorkFailed):
    """A submitted job failed, was cancelled or died; the message's first line names the job, the error and its
    log, the lines after it carry the tail of its stderr."""

    def __init__(self, message: str, job: Job | None = None, cause: str = "") -> None:
        super().__init__(message)
        self.job = job
        self.cause = cause  # the error alone (and the Slurm state), without job id and log


@dataclass(frozen=True)
class ClusterConfig:
    """Resources and placement of the jobs of one experiment (the `cluster:` block of its YAML).

    - executor: "auto" (Slurm when `scontrol ping` answers, else local), "local" or "slurm".
    - partition: Slurm partition (None: the cluster's default).
    - gpus_per_task, cpus_per_task, mem_gb, timeout_min: resources of each array task.
    - array_parallelism: at most this many tasks of one array run at once.
    - max_requeues: how often a job signalled near its time limit is requeued before it fails. submitit counts a
      signal in the last 10 minutes or the last 20% of the time limit (whichever is longer) as a time-out;
      earlier preemptions are not counted.
    - signal_delay_s: Slurm sends USR2 this long before the time limit (give or take its 30-s scheduling tick),
      so that the job can checkpoint and requeue itself.
    - sbatch_options: any other sbatch option, e.g. {"account": "lab", "qos": "high", "constraint": "a100"}.
    - log_folder: submitit's pickles and logs (None: the folder given to `make_executor`); on a real cluster it
      must be on a filesystem shared with the compute nodes.
    """

    executor: str = "auto"
    partition: str | None = None
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem_gb: float = 4.0
    timeout_min: int = 60
    array_parallelism: int = 32
    max_requeues: int = 3
    signal_delay_s: int = 90
    sbatch_options: dict[str, Any] = field(default_factory=dict)
    log_folder: str | None = None
    source: str = field(default="<cluster config>", compare=False, repr=False)
    prefix: str = field(default="cluster", compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = "<cluster config>",
                  prefix: str = "cluster") -> "ClusterConfig":
        """Validate a `cluster:` mapping (keys, types, ranges); errors are UserErrors naming `source` and the key."""
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise UserError(f"{source}: {prefix} must be a mapping of cluster settings, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls) if f.name not in ("source", "prefix")]
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f"did you mean {prefix}.{close[0]}?" if close else f"valid keys: {', '.join(names)}"
                raise UserError(f"{source}: unknown key {prefix}.{key}; {hint}")
        values = dict(data)
        for key, value in values.items():
            _check_type(source, prefix, key, value)
        if "sbatch_options" in values:
            values["sbatch_options"] = dict(values["sbatch_options"])
        config = cls(**values, source=source, prefix=prefix)
        config._check_values()
        return config

    def key(self, name: str) -> str:
        """`<file>: cluster.<name>`, the way error messages name a setting."""
        return f"{self.source}: {self.prefix}.{name}"

    def _check_values(self) -> None:
        if self.executor not in EXECUTORS:
            raise UserError(f"{self.key('executor')}={self.executor!r} is not one of {', '.join(EXECUTORS)}")
        for name, low in (("gpus_per_task", 0), ("cpus_per_task", 1), ("timeout_min", 1),
                          ("array_parallelism", 1), ("max_requeues", 0), ("signal_delay_s", 0)):
            if getattr(self, name) < low:
                raise UserError(f"{self.key(name)}={getattr(self, name)} must be at least {low}")
        if not self.mem_gb > 0 or not math.isfinite(self.mem_gb):
            raise UserError(f"{self.key('mem_gb')}={self.mem_gb} must be a positive number of GB")
        if self.signal_delay_s >= self.timeout_min * 60:
            raise UserError(f"{self.key('signal_delay_s')}={self.signal_delay_s} must be shorter than "
                            f"timeout_min ({self.timeout_min * 60} s), or jobs are signalled as soon as they start")
        if self.partition is not None and not self.partition.strip():
            raise UserError(f"{self.key('partition')} is empty; remove it to use the default partition")
        for option, value in self.sbatch_options.items():
            if not isinstance(option, str):
                raise UserError(f"{self.key('sbatch_options')}: option names must be strings, got {option!r}")
            flag = option.lstrip("-").replace("_", "-")
            if flag in _RESERVED_SBATCH or option.lstrip("-") in _RESERVED_SBATCH:
                owner = _RESERVED_SBATCH.get(flag, _RESERVED_SBATCH.get(option.lstrip("-")))
                fix = f"use {self.prefix}.{owner} instead" if owner else "it is set by comprobust itself"
                raise UserError(f"{self.key('sbatch_options')}: option {option!r} cannot be set here; {fix}")
            if not isinstance(value, (str, int, float, bool)):
                raise UserError(f"{self.key('sbatch_options')}.{option} must be a string, a number or true/false, "
                                f"got {type(value).__name__}")


_TYPES: dict[str, tuple[type, ...]] = {
    "executor": (str,), "partition": (str, type(None)), "gpus_per_task": (int,), "cpus_per_task": (int,),
    "mem_gb": (int, float), "timeout_min": (int,), "array_parallelism": (int,), "max_requeues": (int,),
    "signal_delay_s": (int,), "sbatch_options": (dict,), "log_folder": (str, type(None)),
}
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", dict: "a mapping", type(None): "null"}



def cluster_config(experiment: ExperimentConfig, executor: str | None = None) -> ClusterConfig:
    """The experiment's `cluster:` block, validated, with an optional executor override."""
    raw = dict(experiment.cluster)
    if executor is not None:
        raw["executor"] = executor
    return ClusterConfig.from_dict(raw, source=str(experiment.path))


def _check_type(source: str, prefix: str, key: str, value: Any) -> None:
    expected = _TYPES[key]
    if isinstance(value, bool) or not isinstance(value, expected):
        words = " or ".join(dict.fromkeys(_TYPE_WORDS[t] for t in expected))
        raise UserError(f"{source}: {prefix}.{key} must be {words}, got {value!r} ({type(value).__name__})")


# ----------------------------------------------------------------------------------------------- the live cluster

def _run(cmd: Sequence[str], timeout_s: float = _SCONTROL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout_s, check=False)


def slurm_is_up(timeout_s: float = _SCONTROL_TIMEOUT_S) -> bool:
    """True when `scontrol ping` reports a controller that is UP (having the Slurm binaries is not enough)."""
    if shutil.which("scontrol") is None:
        return False
    try:
        answer = _run(["scontrol", "ping"], timeout_s)
    except (subprocess.TimeoutExpired, OSError):
        return False
    return answer.returncode == 0 and re.search(r"\bis UP\b", answer.stdout) is not None


def resolve_executor(config: ClusterConfig) -> str:
    """"slurm" or "local": what `make_executor` will use for this config (asks `scontrol ping` for "auto")."""
    if config.executor == "local":
        return "local"
    if slurm_is_up():
        return "slurm"
    if config.executor == "slurm":
        raise UserError(f"{config.key('executor')}=slurm but no Slurm controller answers `scontrol ping`; "
                        "start Slurm (for tests: bash scripts/local_slurm.sh start) or use executor: auto/local")
    return "local"


def _mem_string(mem_gb: float) -> str:
    return f"{int(mem_gb)}GB" if float(mem_gb).is_integer() else f"{math.ceil(mem_gb * 1024)}MB"


def slurm_executor_parameters(config: ClusterConfig) -> dict[str, Any]:
    """The keyword arguments given to `submitit.SlurmExecutor.update_parameters` for this config."""
    params: dict[str, Any] = {
        "time": config.timeout_min, "cpus_per_task": config.cpus_per_task, "mem": _mem_string(config.mem_gb),
        "signal_delay_s": config.signal_delay_s, "array_parallelism": config.array_parallelism,
    }
    if config.partition:
        params["partition"] = config.partition
    if config.gpus_per_task:
        params["gpus_per_task"] = config.gpus_per_task
    options = {k.lstrip("-").replace("-", "_"): v for k, v in config.sbatch_options.items() if v is not False}
    if options:
        params["additional_parameters"] = options
    return params


def _dependency_parameters(params: Mapping[str, Any], dependency: str) -> dict[str, Any]:
    """Parameters that make a submission wait for `dependency`, and die if it can never be satisfied."""
    additional = dict(params.get("additional_parameters") or {})
    additional["kill_on_invalid_dep"] = "yes"  # else a failed upstream job leaves it pending forever
    return {"dependency": dependency, "additional_parameters": additional}


def sbatch_parameters(config: ClusterConfig, folder: str | Path = "<log folder>", n_tasks: int = 1,
                      dependency: str | None = None, job_name: str = "submitit") -> dict[str, str]:
    """The `#SBATCH` options submitit will write for an array of `n_tasks` (for dry runs), as {option: value}.

    `dependency` is what `submit_array` would add for upstream jobs, e.g. "afterok:41:42".
    """
    params = slurm_executor_parameters(config)
    if dependency:
        params.update(_dependency_parameters(params, dependency))
    text = _sbatch_script(params, config.log_folder or folder, n_tasks, job_name=job_name)
    options: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH --"):
            flag, _, value = line[len("#SBATCH --"):].partition("=")
            options[flag] = " ".join(shlex.split(value)) if value else "true"
    return options


def _sbatch_script(params: Mapping[str, Any], folder: str | Path, n_tasks: int, **extra: Any) -> str:
    from submitit.slurm.slurm import _make_sbatch_string  # the exact text submitit 1.5.x writes

    return _make_sbatch_string(command="true", folder=folder, map_count=n_tasks if n_tasks > 1 else None,
                               **params, **extra)


def _slurm_time_to_min(text: str) -> float:
    """Minutes in a Slurm time limit ("UNLIMITED", "1-00:00:00", "2:30:00", "30:00", "30")."""
    if text.upper() in ("UNLIMITED", "INFINITE", "NONE"):
        return math.inf
    days, _, rest = text.rpartition("-")
    parts = [int(p) for p in rest.split(":")]
    if len(parts) == 1:  # "minutes", or "days-hours"
        parts = [parts[0], 0, 0] if days else [0, parts[0], 0]
    h, m, s = [0] * (3 - len(parts)) + parts
    return (int(days or 0) * 24 + h) * 60 + m + s / 60


def _slurm_config_value(name: str) -> str | None:
    answer = _run(["scontrol", "show", "config"], 10)
    for line in answer.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == name:
            return value.strip()
    return None


def _partitions() -> dict[str, dict[str, str]]:
    answer = _run(["scontrol", "show", "partition", "--oneliner"], 10)
    if answer.returncode != 0:
        raise UserError(f"cannot list the Slurm partitions: {answer.stderr.strip() or answer.stdout.strip()}")
    partitions = {}
    for line in answer.stdout.splitlines():
        fields = dict(tok.split("=", 1) for tok in line.split() if "=" in tok)
        if "PartitionName" in fields:
            partitions[fields["PartitionName"]] = fields
    return partitions


def _nodes(partition: str) -> list[tuple[str, int, int, int]]:
    """(name, cpus, memory MB, gpus) of each node of a partition, from sinfo."""
    answer = _run(["sinfo", "--noheader", "--Node", "--partition", partition, "--format", "%N|%c|%m|%G"], 10)
    nodes = []
    for line in answer.stdout.splitlines():
        name, cpus, mem, gres = (line.split("|") + ["", "", "", ""])[:4]
        gpus = sum(int(m.group(1)) for m in re.finditer(r"gpu(?::[^:,(]+)?:(\d+)", gres))
        with contextlib.suppress(ValueError):
            nodes.append((name, int(cpus.rstrip("+")), int(mem.rstrip("+")), gpus))
    return nodes


def validate_resources(config: ClusterConfig, n_tasks: int = 1) -> None:
    """Ask the live cluster whether it can run this config's jobs; raise a UserError naming the key if not.

    Checks the partition exists, timeout_min against its MaxTime, cpus_per_task/mem_gb/gpus_per_task against its
    largest node, then lets `sbatch --test-only` judge a whole `n_tasks` array (sbatch_options included, and the
    cluster's MaxArraySize). Nothing is submitted. Does nothing when the jobs will run locally.
    """
    if resolve_executor(config) != "slurm":
        return
    max_array = _slurm_config_value("MaxArraySize")
    if max_array and max_array.isdigit() and n_tasks > int(max_array) - 1:
        raise UserError(f"{config.source}: a stage of {n_tasks} tasks does not fit in one array on this cluster "
                        f"(MaxArraySize={max_array}); run fewer seeds/corruptions per experiment")
    partitions = _partitions()
    if config.partition:
        name = config.partition
        if name not in partitions:
            raise UserError(f"{config.key('partition')}={name!r} is not a partition of this cluster "
                            f"(available: {', '.join(sorted(partitions)) or 'none'})")
    else:
        defaults = [p for p, f in partitions.items() if f.get("Default") == "YES"]
        if not defaults:
            raise UserError(f"{config.key('partition')} is not set and the cluster has no default partition; "
                            f"choose one of {', '.join(sorted(partitions))}")
        name = defaults[0]
    part = partitions[name]
    max_min = _slurm_time_to_min(part.get("MaxTime", "UNLIMITED"))
    if config.timeout_min > max_min:
        raise UserError(f"{config.key('timeout_min')}={config.timeout_min} exceeds the MaxTime "
                        f"{part['MaxTime']} ({max_min:g} min) of partition {name}")
    nodes = _nodes(name)
    if nodes:
        cpus = max(n[1] for n in nodes)
        max_cpus = part.get("MaxCPUsPerNode", "UNLIMITED")
        if max_cpus.isdigit():
            cpus = min(cpus, int(max_cpus))
        if config.cpus_per_task > cpus:
            raise UserError(f"{config.key('cpus_per_task')}={config.cpus_per_task} exceeds the {cpus} CPUs of "
                            f"the largest node of partition {name}")
        mem_mb = max(n[2] for n in nodes)
        if config.mem_gb * 1024 > mem_mb:
            raise UserError(f"{config.key('mem_gb')}={config.mem_gb:g} exceeds the {mem_mb / 1024:.1f} GB memory "
                            f"of the largest node of partition {name}")
        gpus = max(n[3] for n in nodes)
        if config.gpus_per_task > gpus:
            raise UserError(f"{config.key('gpus_per_task')}={config.gpus_per_task} exceeds the {gpus} GPUs of "
                            f"the largest node of partition {name}")
    _sbatch_test_only(config, n_tasks)


def _sbatch_test_only(config: ClusterConfig, n_tasks: int) -> None:
    with tempfile.TemporaryDirectory(prefix="comprobust-sbatch-") as tmp:
        script = Path(tmp) / "test.sh"
        script.write_text(_sbatch_script(slurm_executor_parameters(config), tmp, n_tasks))
        try:
            answer = _run(["sbatch", "--test-only", str(script)], 30)
        except subprocess.TimeoutExpired:
            raise UserError(f"{config.source}: `sbatch --test-only` did not answer in 30 s; "
                            "is the Slurm controller overloaded?") from None
    if answer.returncode != 0:
        reason = " ".join((answer.stderr.strip() or answer.stdout.strip()).splitlines()[:2])
        hint = (f"{config.prefix}.sbatch_options" if config.sbatch_options
                else f"{config.prefix}.cpus_per_task/mem_gb/gpus_per_task and the number of tasks ({n_tasks})")
        raise UserError(f"{config.source}: the Slurm cluster refuses these {config.prefix} settings "
                        f"({reason}); check {hint}")


# ------------------------------------------------------------------------------------------------ submission

def make_executor(config: ClusterConfig, folder: str | Path) -> submitit.Executor:
    """A `submitit.SlurmExecutor` (Slurm chosen or auto-detected) or a `submitit.LocalExecutor`, configured.

    `folder` receives submitit's pickles and logs unless `config.log_folder` is set; with Slurm it must be on a
    filesystem that the compute nodes share, and so must the Python environment.
    """
    kind = resolve_executor(config)
    log_folder = Path(config.log_folder or folder)
    if kind == "slurm":
        executor: submitit.Executor = submitit.SlurmExecutor(folder=log_folder, max_num_timeout=config.max_requeues)
        executor.update_parameters(**slurm_executor_parameters(config))
    else:
        # LocalExecutor: gpus_per_task GPUs are made visible (CUDA_VISIBLE_DEVICES; 0 hides them); at most
        # array_parallelism, capped at the number of CPUs, of one stage's tasks run at once (see submit_array)
        executor = submitit.LocalExecutor(folder=log_folder, max_num_timeout=config.max_requeues)
        executor.update_parameters(timeout_min=config.timeout_min, gpus_per_node=config.gpus_per_task,
                                   signal_delay_s=config.signal_delay_s,
                                   array_parallelism=max(1, min(config.array_parallelism, os.cpu_count() or 1)))
    return executor


@contextlib.contextmanager
def _temporary_parameters(executor: submitit.Executor, **params: Any) -> Iterator[None]:
    saved = {k: executor.parameters[k] for k in params if k in executor.parameters}
    executor.parameters.update(params)
    try:
        yield
    finally:
        for k in params:
            executor.parameters.pop(k, None)
        executor.parameters.update(saved)


def submit_array(executor: submitit.Executor, fn: Callable[..., Any], args_list: Sequence[Sequence[Any]],
                 depends_on: Sequence[Job] = (), name: str | None = None) -> list[Job]:
    """Submit `fn(*args)` for each args tuple as ONE job array; return its jobs in order.

    On Slurm this returns at once: the array starts only after every job of `depends_on` COMPLETED
    (`--dependency=afterok:...`) and is cancelled if one of them fails (`--kill-on-invalid-dep=yes`). The local
    executor has neither dependencies nor arrays, so it first waits for `depends_on` (raising `JobFailed` if one
    failed), then starts the tasks as subprocesses, at most `array_parallelism` at a time: it returns once the
    last one has started.
    """
    if not args_list:
        return []
    calls = [tuple(args) for args in args_list]
    if not isinstance(executor, submitit.SlurmExecutor):
        if depends_on:
            wait_for_jobs(depends_on, label=f"{name or 'array'}: waiting for its dependencies", progress=None)
        return _submit_local(executor, fn, calls, int(executor.parameters.get("array_parallelism") or len(calls)))
    extra: dict[str, Any] = {"job_name": name} if name else {}
    if depends_on:
        if any(not isinstance(job, submitit.SlurmJob) for job in depends_on):
            raise TypeError("a Slurm array can only depend on Slurm jobs")
        ids = list(dict.fromkeys(str(job.job_id).split("_")[0] for job in depends_on))
        extra.update(_dependency_parameters(executor.parameters, "afterok:" + ":".join(ids)))
    with _temporary_parameters(executor, **extra):
        with executor.batch():
            jobs = [executor.submit(fn, *args) for args in calls]
    return jobs


def _submit_local(executor: submitit.Executor, fn: Callable[..., Any], calls: list[tuple[Any, ...]],
                  limit: int) -> list[Job]:
    jobs: list[Job] = []
    running: list[Job] = []
    for args in calls:
        while len(running) >= limit:
            time.sleep(0.2)
            for job in [job for job in running if job.done()]:
                running.remove(job)
                if _classify(job) == "failed":
                    raise _failure(job, "local array")  # do not start the rest of a failing stage
        job = executor.submit(fn, *args)
        jobs.append(job)
        running.append(job)
    return jobs


class Requeueable(submitit.helpers.Checkpointable):
    """Base for stage jobs that Slurm may preempt or stop at their time limit.

    When Slurm sends the signal (USR2, `signal_delay_s` before the limit, or on preemption), submitit calls
    `checkpoint`, which resubmits the same callable with the same arguments; the job is requeued and, when it runs
    again, `__call__` must resume from its own checkpoint file (written atomically every epoch). Subclasses
    implement `__call__` and may override `on_requeue` (e.g. to flush a log) — it must be quick.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "checkpoint":
            raise TypeError(f"{type(self).__name__}: 'checkpoint' is the method submitit calls on preemption; "
                            "name the checkpoint path attribute differently")
        super().__setattr__(name, value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__ (the job's work)")

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        self.on_requeue()
        print(f"comprobust: {type(self).__name__} signalled; requeueing, it resumes from its checkpoint",
              file=sys.stderr, flush=True)
        return submitit.helpers.DelayedSubmission(self, *args, **kwargs)

    def on_requeue(self) -> None:
        """Hook called just before the job is requeued (default: nothing)."""


class RequeueableCall(Requeueable):
    """`Requeueable` around any picklable callable: `RequeueableCall(run_stage)(*args)` calls `run_stage(*args)`."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


# ------------------------------------------------------------------------------------------------ waiting

_RUNNING = {"RUNNING", "COMPLETING", "STAGE_OUT", "SIGNALING"}
# submitit treats these as unfinished; everything else without a result file is a failure
_UNFINISHED = {"READY", "PENDING", "RUNNING", "UNKNOWN", "REQUEUED", "COMPLETING", "PREEMPTED", "CONFIGURING",
               "SUSPENDED", "RESIZING", "REQUEUE_HOLD", "REQUEUE_FED", "STAGE_OUT", "SIGNALING"}


def _state(job: Job) -> str:
    words = str(job.state).split()
    return words[0].upper() if words else "UNKNOWN"


def _classify(job: Job, force: bool = False) -> str:
    """"pending", "running", "done" or "failed" (reads the result file, or the Slurm state via sacct)."""
    if job.paths.result_pickle.exists():
        return "failed" if job.exception() is not None else "done"
    if isinstance(job, submitit.LocalJob):
        return "running" if _state(job) == "RUNNING" else "failed"
    if force:
        job.watcher.update_if_long_enough(mode="force")
    state = _state(job)
    if state in _RUNNING:
        return "running"
    if state in _UNFINISHED:
        return "pending"
    if state == "COMPLETED":  # finished but its result is not visible yet: let submitit wait for it
        return "failed" if job.exception() is not None else "done"
    return "failed"  # FAILED, CANCELLED (e.g. its dependency failed), TIMEOUT, OUT_OF_MEMORY, NODE_FAIL, ...


def job_states(jobs: Sequence[Job]) -> dict[str, int]:
    """Counts of the jobs that are pending, running, done (succeeded) and failed."""
    counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
    for job in jobs:
        counts[_classify(job)] += 1
    return counts


def _stderr_tail(job: Job, lines: int = 20) -> str:
    with contextlib.suppress(Exception):
        text = job.stderr() or job.stdout() or ""
        return "\n".join(text.rstrip().splitlines()[-lines:])
    return ""


def _final_slurm_state(job: Job, wait_s: float = 5.0) -> str:
    """The job's Slurm state once sacct has caught up with its end (at most `wait_s` seconds)."""
    deadline = time.monotonic() + wait_s
    while True:
        job.watcher.update_if_long_enough(mode="force")
        if _state(job) not in _UNFINISHED or time.monotonic() > deadline:
            return str(job.state)
        time.sleep(0.5)


def _failure(job: Job, label: str) -> JobFailed:
    where = "" if isinstance(job, submitit.LocalJob) else f" (Slurm state {_final_slurm_state(job)})"
    if job.paths.result_pickle.exists():
        error = job.exception()
        lines = [line for line in str(error).splitlines() if line.strip() and not line.startswith("-----")]
        # the last line of the remote traceback is the exception itself
        trace = [line for line in lines if not line.startswith(("You can check", "or at paths", "  - "))]
        summary = trace[-1].strip() if trace else "failed"
    else:
        summary = "ended without a result (killed, cancelled, or its dependency failed)"
    message = f"{label}: job {job.job_id} failed{where}: {summary}; its log: {job.paths.stderr}"
    tail = _stderr_tail(job)
    if tail:
        message += f"\n----- last lines of {job.paths.stderr} -----\n{tail}"
    return JobFailed(message, job, cause=f"{summary}{where}")


def wait_for_jobs(jobs: Sequence[Job], label: str = "jobs", poll_s: float = 1.0, sacct_every_s: float = 10.0,
                  timeout_s: float | None = None, progress: Callable[[str], None] | None = print) -> list[Any]:
    """Wait until every job finished; print a progress line when the counts change; return their results.

    Raises `JobFailed` (job id, Slurm state, error, stderr tail) as soon as one job fails, and TimeoutError after
    `timeout_s`. Slurm states are re-read with `sacct` at least every `sacct_every_s` seconds (submitit alone backs
    off to minutes), so a job killed without a result is noticed quickly.
    """
    jobs = list(jobs)
    start = last_force = time.monotonic()
    finished: dict[int, str] = {}
    last_line = ""
    while True:
        force = time.monotonic() - last_force >= sacct_every_s
        if force:
            last_force = time.monotonic()
        counts = {"pending": 0, "running": 0, "done": 0, "failed": 0}
        for index, job in enumerate(jobs):
            kind = finished.get(index)
            if kind is None:
                kind = _classify(job, force=force)
                force = False  # one sacct call refreshes every job of this process
            if kind == "failed":
                raise _failure(job, label)
            if kind == "done":
                finished[index] = kind
            counts[kind] += 1
        line = (f"{label}: {counts['done']}/{len(jobs)} done, {counts['running']} running, "
                f"{counts['pending']} pending, {counts['failed']} failed")
        if progress is not None and line != last_line:
            progress(line)
        last_line = line
        if counts["done"] == len(jobs):
            return [job.result() for job in jobs]
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"{label}: not finished after {timeout_s:g} s ({line})")
        time.sleep(poll_s)
