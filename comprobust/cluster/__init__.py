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

from comprobust.cluster.config import EXECUTORS, ClusterConfig, cluster_config
from comprobust.cluster.slurm import resolve_executor, sbatch_parameters, slurm_is_up, validate_resources
from comprobust.cluster.submit import Requeueable, RequeueableCall, make_executor, submit_array
from comprobust.cluster.wait import JobFailed, job_states, wait_for_jobs

__all__ = [
    "EXECUTORS",
    "ClusterConfig",
    "JobFailed",
    "Requeueable",
    "RequeueableCall",
    "cluster_config",
    "job_states",
    "make_executor",
    "resolve_executor",
    "sbatch_parameters",
    "slurm_is_up",
    "submit_array",
    "validate_resources",
    "wait_for_jobs",
]
