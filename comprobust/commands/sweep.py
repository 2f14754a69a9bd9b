"""`launch.py sweep SWEEP.yaml --agents N [--count K] [--dry-run] [--executor local|slurm|auto|inline]`,
`launch.py sweep-status SWEEP_DIR|SWEEP.yaml` and `launch.py sweep-agent SWEEP_DIR [--count K]`.

Online (W&B credentials configured) the sweep is created on the server and the agents are `wandb agent`s;
offline the local controller of `comprobust.sweeps` hands out the runs. Either way the N agents are one Slurm job
array (or local processes), and each run is `launch.py run-stage ...` with the suggested parameters.
"""

from __future__ import annotations

import argparse
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    sweep = subparsers.add_parser(
        "sweep", help="validate a W&B sweep YAML and run it with N agents (one job array)"
    )
    sweep.add_argument("sweep", help="sweep YAML in W&B's format, e.g. sweeps/demo-erm-lr.yaml")
    sweep.add_argument("--agents", type=int, default=1, help="agents to submit as one array (default 1)")
    sweep.add_argument("--count", type=int, help="runs per agent (default: until the sweep has no more)")
    sweep.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, print the first suggestions, commands and sbatch options; submit nothing",
    )
    sweep.add_argument(
        "--executor",
        choices=("auto", "local", "slurm", "inline"),
        help="override the experiment's cluster.executor (inline: one agent in this process)",
    )
    sweep.add_argument(
        "--mode",
        choices=("auto", "online", "offline"),
        help="online: a sweep on the W&B server; offline: the local controller (default: the "
        "experiment's wandb.mode, i.e. online when credentials are configured)",
    )
    sweep.add_argument(
        "--sweep-id",
        help="continue or name this sweep (offline: its folder name, default a hash "
        "of the config; online: the W&B sweep id or entity/project/id, default "
        "the sweep an earlier launch of this file created)",
    )
    sweep.add_argument(
        "--new-sweep",
        action="store_true",
        help="online: create a new W&B sweep even if this file's sweep exists already",
    )
    sweep.add_argument("--detach", action="store_true", help="submit and return without following the agents")
    sweep.set_defaults(handler=run_sweep)

    status = subparsers.add_parser("sweep-status", help="the runs of an offline sweep and its best run")
    status.add_argument("sweep", help="the sweep's folder, or its YAML file")
    status.add_argument("--sweep-id", help="with a YAML file: the sweep id given at launch, if any")
    status.set_defaults(handler=show_sweep_status)

    agent = subparsers.add_parser("sweep-agent", help="run one offline sweep agent in this process")
    agent.add_argument("folder", help="the sweep's folder (printed by `launch.py sweep`)")
    agent.add_argument("--count", type=int, help="at most this many runs")
    agent.set_defaults(handler=run_sweep_agent)


def run_sweep(args: argparse.Namespace) -> int:
    from comprobust.cluster import resolve_executor, sbatch_parameters
    from comprobust.errors import UserError
    from comprobust.sweeps.command import expand_preview
    from comprobust.sweeps.engine import preview
    from comprobust.sweeps.folder import prepare_offline, upstream_missing
    from comprobust.sweeps.validate import load_sweep
    from comprobust.tracking import resolve_mode

    if args.agents < 1:
        raise UserError(f"--agents {args.agents}: give at least 1")
    if args.count is not None and args.count < 1:
        raise UserError(
            f"--count {args.count}: give at least 1 (or leave it out: until the sweep has no more)"
        )
    spec = load_sweep(args.sweep)
    experiment, target = spec.experiment, spec.target
    assert target is not None  # load_sweep requires a run-stage command
    if not args.dry_run:
        from comprobust.data.registry import check_dataset_files
        from comprobust.validation import check_output_folder

        check_output_folder(experiment.output_dir, f"{experiment.path}: output_root")
        check_dataset_files(experiment.dataset, f"{experiment.path}: dataset")
    cluster = experiment.cluster.with_executor(None if args.executor == "inline" else args.executor)
    missing = upstream_missing(spec)
    if missing:
        needs = ", ".join(experiment.stages[target.stage].needs)
        message = (
            f"{args.sweep}: stage {target.stage!r} reads stage {needs}, whose run(s) {', '.join(missing[:3])} "
            f"have not finished; run `python launch.py run-stage {target.experiment} --stage {needs}` first"
        )
        if not args.dry_run:
            raise UserError(message)
        print(f"warning: {message}")
    mode = resolve_mode(experiment.wandb.mode, override=args.mode)
    n_show = min(max(args.agents, 3), 10)
    if mode == "online":
        return _run_online(args, spec, cluster, n_show)

    sweep_id, folder = prepare_offline(spec, args.sweep_id, create=not args.dry_run)
    records = []
    if (folder / "sweep.yaml").exists():
        from comprobust.sweeps.controller import SweepController

        records = SweepController(folder).records()
    print(
        f"sweep {sweep_id}: {spec.config['method']} over {', '.join(spec.config['parameters'])} "
        f"(offline controller) in {folder}"
    )
    if records:
        print(f"  continuing: {len(records)} runs so far")
    suggestions = preview(spec.config, sweep_id, n_show, records)
    print(
        f"next {len(suggestions)} suggestion(s):"
        if suggestions
        else "no more suggestions: the sweep is complete"
    )
    for params in suggestions:
        print("  " + " ".join(expand_preview(spec.config, params)))
    if not suggestions and not any(r.state == "running" for r in records) and not args.dry_run:
        from comprobust.sweeps.status import status_table

        print(status_table(folder))
        return 0
    kind = "inline" if args.executor == "inline" else resolve_executor(cluster)
    agent_call = f"comprobust.sweeps.agent.agent_job({str(folder)!r}, count={args.count})"
    if args.dry_run:
        print(f"executor: {kind}; {args.agents} agent(s), each running {agent_call}")
        options = sbatch_parameters(
            cluster, folder / "submitit", n_tasks=args.agents, job_name=f"sweep-{sweep_id}"
        )
        print(
            ("sbatch options:" if kind == "slurm" else "sbatch options (if submitted to Slurm):")
            + " "
            + " ".join(f"--{k}={v}" for k, v in options.items())
        )
        print("dry run: nothing submitted")
        return 0
    return _submit_offline(args, folder, sweep_id, cluster, kind)


def _submit_offline(args: argparse.Namespace, folder, sweep_id: str, cluster, kind: str) -> int:
    from comprobust.cluster.submit import RequeueableCall, make_executor, submit_array
    from comprobust.cluster.wait import wait_for_jobs
    from comprobust.sweeps.agent import agent_job, run_agent
    from comprobust.sweeps.status import status_table

    if kind == "inline":
        print(run_agent(folder, args.count))
        print(status_table(folder))
        return 0
    executor = make_executor(cluster, folder / "submitit")
    jobs = submit_array(
        executor,
        RequeueableCall(agent_job),
        [(str(folder), args.count)] * args.agents,
        name=f"sweep-{sweep_id}",
    )
    print(
        f"submitted {len(jobs)} agent(s) ({kind}): {', '.join(str(j.job_id) for j in jobs[:4])}"
        f"{' ...' if len(jobs) > 4 else ''}"
    )
    print(f"progress: python launch.py sweep-status {folder}")
    if args.detach:
        return 0
    _follow(jobs, folder)
    wait_for_jobs(
        jobs, label=f"sweep {sweep_id} agents", progress=None
    )  # raises JobFailed with the stderr tail
    print(status_table(folder))
    return 0


def _follow(jobs, folder, poll_s: float = 2.0) -> None:
    from comprobust.cluster.wait import job_states
    from comprobust.sweeps.status import summarize

    last = ""
    while True:
        agents = job_states(jobs)
        runs = summarize(folder)["counts"]
        line = (
            f"agents: {agents['running']} running, {agents['pending']} pending, {agents['done']} done, "
            f"{agents['failed']} failed | runs: " + ", ".join(f"{n} {s}" for s, n in runs.items() if n)
        )
        if line != last:
            print(line, flush=True)
            last = line
        if agents["running"] + agents["pending"] == 0:
            return
        time.sleep(poll_s)


def _run_online(args: argparse.Namespace, spec, cluster, n_show: int) -> int:
    import os
    from pathlib import Path

    from comprobust.cluster import resolve_executor, sbatch_parameters
    from comprobust.cluster.submit import RequeueableCall, make_executor, submit_array
    from comprobust.sweeps.command import expand_preview
    from comprobust.sweeps.engine import preview
    from comprobust.sweeps.online import online_sweep, wandb_agent_command, wandb_agent_job
    from comprobust.wandb_connection import require_reachable

    print(
        f"sweep: {spec.config['method']} over {', '.join(spec.config['parameters'])} (W&B server, project "
        f"{spec.config['project']})"
    )
    for params in preview(spec.config, "preview", n_show):
        print("  e.g. " + " ".join(expand_preview(spec.config, params)))
    kind = "inline" if args.executor == "inline" else resolve_executor(cluster)
    folder = Path(spec.experiment.output_dir).resolve() / "sweeps" / "online"
    if args.dry_run:
        print(
            f"executor: {kind}; {args.agents} agent(s), each running: "
            + " ".join(wandb_agent_command("<entity/project/new sweep id>", args.count))
        )
        options = sbatch_parameters(cluster, folder / "submitit", n_tasks=args.agents, job_name="sweep-wandb")
        print("sbatch options: " + " ".join(f"--{k}={v}" for k, v in options.items()))
        print("dry run: no sweep created, nothing submitted")
        return 0
    require_reachable(f"sweep {args.sweep}")
    sweep = online_sweep(spec, folder, sweep_path=args.sweep_id, new=args.new_sweep)
    print(f"{'created' if sweep.created else 'continuing'} W&B sweep {sweep.path}: {sweep.url}", flush=True)
    path = sweep.path
    if kind == "inline":
        return wandb_agent_job(path, args.count, os.getcwd())
    executor = make_executor(cluster, folder / "submitit")
    jobs = submit_array(
        executor,
        RequeueableCall(wandb_agent_job),
        [(path, args.count, os.getcwd())] * args.agents,
        name=f"sweep-{path.rsplit('/', 1)[-1]}",
    )
    print(f"submitted {len(jobs)} `wandb agent`(s) ({kind}); follow the sweep on the W&B dashboard")
    return 0


def show_sweep_status(args: argparse.Namespace) -> int:
    from pathlib import Path

    from comprobust.sweeps.folder import prepare_offline
    from comprobust.sweeps.status import status_table
    from comprobust.sweeps.validate import load_sweep

    folder = Path(args.sweep)
    if folder.is_file():
        _, folder = prepare_offline(load_sweep(folder), args.sweep_id, create=False)
        if not folder.exists():
            print(f"sweep not started yet (would live in {folder})")
            return 1
    print(status_table(folder))
    return 0


def run_sweep_agent(args: argparse.Namespace) -> int:
    from comprobust.sweeps.agent import run_agent

    print(run_agent(args.folder, args.count))
    return 0
