"""Where stage runs execute: submitit executors for Slurm (when a controller answers) or local subprocesses.

The `cluster:` block of an experiment becomes a `ClusterConfig`. `make_executor` returns a `submitit.SlurmExecutor`
when the config asks for Slurm (or says `auto` and `scontrol ping` reports a live controller), otherwise a
`submitit.LocalExecutor`. `submit_array` submits one stage as ONE Slurm job array, chained to earlier stages with
`afterok` dependencies (on the local executor it waits for them instead). `validate_resources` asks the live
cluster whether it can run the requested resources before anything is submitted. `Requeueable` marks a job that
submitit requeues when Slurm sends its preemption/time-limit signal (USR2); the job resumes from its own
checkpoint file. `wait_for_jobs` prints progress and raises `JobFailed` with the failing job's stderr tail.

The package itself holds the light part (the config and Slurm's own commands; what `status` and the dry run need);
import submission from `comprobust.cluster.submit` and waiting from `comprobust.cluster.wait` (they load submitit).
"""

from __future__ import annotations

from comprobust.cluster.config import EXECUTORS, ClusterConfig
from comprobust.cluster.slurm import resolve_executor, sbatch_parameters, slurm_is_up, validate_resources

__all__ = [
    "EXECUTORS",
    "ClusterConfig",
    "resolve_executor",
    "sbatch_parameters",
    "slurm_is_up",
    "validate_resources",
]
