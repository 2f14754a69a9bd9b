"""The live Slurm cluster: whether a controller answers, which executor to use, the sbatch options of a job
array, and whether the cluster can run the requested resources before anything is submitted."""

from __future__ import annotations

import contextlib
import math
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from comprobust.cluster.config import ClusterConfig
from comprobust.errors import UserError

_SCONTROL_TIMEOUT_S = 5.0


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
    """ "slurm" or "local": what `make_executor` will use for this config (asks `scontrol ping` for "auto")."""
    if config.executor == "local":
        return "local"
    if slurm_is_up():
        return "slurm"
    if config.executor == "slurm":
        raise UserError(
            f"{config.key('executor')}=slurm but no Slurm controller answers `scontrol ping`; "
            "start Slurm (for tests: bash scripts/local_slurm.sh start) or use executor: auto/local"
        )
    return "local"


def _mem_string(mem_gb: float) -> str:
    return f"{int(mem_gb)}GB" if float(mem_gb).is_integer() else f"{math.ceil(mem_gb * 1024)}MB"


def slurm_executor_parameters(config: ClusterConfig) -> dict[str, Any]:
    """The keyword arguments given to `submitit.SlurmExecutor.update_parameters` for this config."""
    params: dict[str, Any] = {
        "time": config.timeout_min,
        "cpus_per_task": config.cpus_per_task,
        "mem": _mem_string(config.mem_gb),
        "signal_delay_s": config.signal_delay_s,
        "array_parallelism": config.array_parallelism,
    }
    if config.partition:
        params["partition"] = config.partition
    if config.gpus_per_task:
        params["gpus_per_task"] = config.gpus_per_task
    options = {k.lstrip("-").replace("-", "_"): v for k, v in config.sbatch_options.items() if v is not False}
    if options:
        params["additional_parameters"] = options
    return params


def dependency_parameters(params: Mapping[str, Any], dependency: str) -> dict[str, Any]:
    """Parameters that make a submission wait for `dependency`, and die if it can never be satisfied."""
    additional = dict(params.get("additional_parameters") or {})
    additional["kill_on_invalid_dep"] = "yes"  # else a failed upstream job leaves it pending forever
    return {"dependency": dependency, "additional_parameters": additional}


def sbatch_parameters(
    config: ClusterConfig,
    folder: str | Path = "<log folder>",
    n_tasks: int = 1,
    dependency: str | None = None,
    job_name: str = "submitit",
) -> dict[str, str]:
    """The `#SBATCH` options submitit will write for an array of `n_tasks` (for dry runs), as {option: value}.

    `dependency` is what `submit_array` would add for upstream jobs, e.g. "afterok:41:42".
    """
    params = slurm_executor_parameters(config)
    if dependency:
        params.update(dependency_parameters(params, dependency))
    text = _sbatch_script(params, config.log_folder or folder, n_tasks, job_name=job_name)
    options: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("#SBATCH --"):
            flag, _, value = line[len("#SBATCH --") :].partition("=")
            options[flag] = " ".join(shlex.split(value)) if value else "true"
    return options


def _sbatch_script(params: Mapping[str, Any], folder: str | Path, n_tasks: int, **extra: Any) -> str:
    from submitit.slurm.slurm import _make_sbatch_string  # the exact text submitit 1.5.x writes

    return _make_sbatch_string(
        command="true", folder=folder, map_count=n_tasks if n_tasks > 1 else None, **params, **extra
    )


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
        raise UserError(
            f"{config.source}: a stage of {n_tasks} tasks does not fit in one array on this cluster "
            f"(MaxArraySize={max_array}); run fewer seeds/corruptions per experiment"
        )
    partitions = _partitions()
    if config.partition:
        name = config.partition
        if name not in partitions:
            raise UserError(
                f"{config.key('partition')}={name!r} is not a partition of this cluster "
                f"(available: {', '.join(sorted(partitions)) or 'none'})"
            )
    else:
        defaults = [p for p, f in partitions.items() if f.get("Default") == "YES"]
        if not defaults:
            raise UserError(
                f"{config.key('partition')} is not set and the cluster has no default partition; "
                f"choose one of {', '.join(sorted(partitions))}"
            )
        name = defaults[0]
    part = partitions[name]
    max_min = _slurm_time_to_min(part.get("MaxTime", "UNLIMITED"))
    if config.timeout_min > max_min:
        raise UserError(
            f"{config.key('timeout_min')}={config.timeout_min} exceeds the MaxTime "
            f"{part['MaxTime']} ({max_min:g} min) of partition {name}"
        )
    nodes = _nodes(name)
    if nodes:
        cpus = max(n[1] for n in nodes)
        max_cpus = part.get("MaxCPUsPerNode", "UNLIMITED")
        if max_cpus.isdigit():
            cpus = min(cpus, int(max_cpus))
        if config.cpus_per_task > cpus:
            raise UserError(
                f"{config.key('cpus_per_task')}={config.cpus_per_task} exceeds the {cpus} CPUs of "
                f"the largest node of partition {name}"
            )
        mem_mb = max(n[2] for n in nodes)
        if config.mem_gb * 1024 > mem_mb:
            raise UserError(
                f"{config.key('mem_gb')}={config.mem_gb:g} exceeds the {mem_mb / 1024:.1f} GB memory "
                f"of the largest node of partition {name}"
            )
        gpus = max(n[3] for n in nodes)
        if config.gpus_per_task > gpus:
            raise UserError(
                f"{config.key('gpus_per_task')}={config.gpus_per_task} exceeds the {gpus} GPUs of "
                f"the largest node of partition {name}"
            )
    _sbatch_test_only(config, n_tasks)


def _sbatch_test_only(config: ClusterConfig, n_tasks: int) -> None:
    with tempfile.TemporaryDirectory(prefix="comprobust-sbatch-") as tmp:
        script = Path(tmp) / "test.sh"
        script.write_text(_sbatch_script(slurm_executor_parameters(config), tmp, n_tasks))
        try:
            answer = _run(["sbatch", "--test-only", str(script)], 30)
        except subprocess.TimeoutExpired:
            raise UserError(
                f"{config.source}: `sbatch --test-only` did not answer in 30 s; "
                "is the Slurm controller overloaded?"
            ) from None
    if answer.returncode != 0:
        reason = " ".join((answer.stderr.strip() or answer.stdout.strip()).splitlines()[:2])
        hint = (
            f"{config.prefix}.sbatch_options"
            if config.sbatch_options
            else f"{config.prefix}.cpus_per_task/mem_gb/gpus_per_task and the number of tasks ({n_tasks})"
        )
        raise UserError(
            f"{config.source}: the Slurm cluster refuses these {config.prefix} settings "
            f"({reason}); check {hint}"
        )
