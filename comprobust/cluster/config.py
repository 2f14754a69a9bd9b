"""The `cluster:` block of an experiment as a validated `ClusterConfig` (resources, placement, executor)."""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from comprobust.errors import UserError

EXECUTORS = ("auto", "local", "slurm", "inline")  # inline: run in the launching process (comprobust.pipeline)
# sbatch options that have their own key in the cluster block, or that submitit manages itself
_RESERVED_SBATCH = {
    "partition": "partition",
    "p": "partition",
    "time": "timeout_min",
    "t": "timeout_min",
    "cpus-per-task": "cpus_per_task",
    "c": "cpus_per_task",
    "mem": "mem_gb",
    "gpus-per-task": "gpus_per_task",
    "array": "array_parallelism",
    "signal": "signal_delay_s",
    "dependency": None,
    "output": "log_folder",
    "o": "log_folder",
    "error": "log_folder",
    "e": "log_folder",
    "job-name": None,
    "J": None,
    "open-mode": None,
}


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
    def from_dict(
        cls, data: Mapping[str, Any] | None, source: str = "<cluster config>", prefix: str = "cluster"
    ) -> ClusterConfig:
        """Validate a `cluster:` mapping (keys, types, ranges); errors are UserErrors naming `source` and the key."""
        data = {} if data is None else data
        if not isinstance(data, Mapping):
            raise UserError(
                f"{source}: {prefix} must be a mapping of cluster settings, got {type(data).__name__}"
            )
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

    def with_executor(self, executor: str | None) -> ClusterConfig:
        """This config with its executor replaced (a command line's --executor), or unchanged for None."""
        if executor is None:
            return self
        config = dataclasses.replace(self, executor=executor)
        config._check_values()
        return config

    def key(self, name: str) -> str:
        """`<file>: cluster.<name>`, the way error messages name a setting."""
        return f"{self.source}: {self.prefix}.{name}"

    def _check_values(self) -> None:
        if self.executor not in EXECUTORS:
            raise UserError(f"{self.key('executor')}={self.executor!r} is not one of {', '.join(EXECUTORS)}")
        for name, low in (
            ("gpus_per_task", 0),
            ("cpus_per_task", 1),
            ("timeout_min", 1),
            ("array_parallelism", 1),
            ("max_requeues", 0),
            ("signal_delay_s", 0),
        ):
            if getattr(self, name) < low:
                raise UserError(f"{self.key(name)}={getattr(self, name)} must be at least {low}")
        if not self.mem_gb > 0 or not math.isfinite(self.mem_gb):
            raise UserError(f"{self.key('mem_gb')}={self.mem_gb} must be a positive number of GB")
        if self.signal_delay_s >= self.timeout_min * 60:
            raise UserError(
                f"{self.key('signal_delay_s')}={self.signal_delay_s} must be shorter than "
                f"timeout_min ({self.timeout_min * 60} s), or jobs are signalled as soon as they start"
            )
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
                raise UserError(
                    f"{self.key('sbatch_options')}.{option} must be a string, a number or true/false, "
                    f"got {type(value).__name__}"
                )


_TYPES: dict[str, tuple[type, ...]] = {
    "executor": (str,),
    "partition": (str, type(None)),
    "gpus_per_task": (int,),
    "cpus_per_task": (int,),
    "mem_gb": (int, float),
    "timeout_min": (int,),
    "array_parallelism": (int,),
    "max_requeues": (int,),
    "signal_delay_s": (int,),
    "sbatch_options": (dict,),
    "log_folder": (str, type(None)),
}
_TYPE_WORDS = {int: "an integer", float: "a number", str: "a string", dict: "a mapping", type(None): "null"}


def _check_type(source: str, prefix: str, key: str, value: Any) -> None:
    expected = _TYPES[key]
    if isinstance(value, bool) or not isinstance(value, expected):
        words = " or ".join(dict.fromkeys(_TYPE_WORDS[t] for t in expected))
        raise UserError(f"{source}: {prefix}.{key} must be {words}, got {value!r} ({type(value).__name__})")
