"""`launch.py run EXPERIMENT.yaml [--dry-run] [--detach]` and `launch.py status EXPERIMENT.yaml`."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="run an experiment: plan, skip finished runs, submit the rest")
    run.add_argument("experiment", help="experiment YAML, e.g. experiments/demo.yaml")
    run.add_argument(
        "--dry-run", action="store_true", help="print every planned run and sbatch options; submit nothing"
    )
    run.add_argument("--detach", action="store_true", help="submit and return without following the jobs")
    run.add_argument(
        "--stages", nargs="+", metavar="STAGE", help="only these stages (their inputs must exist)"
    )
    run.add_argument("--seeds", nargs="+", type=int, metavar="SEED", help="only these seeds")
    run.add_argument(
        "--executor",
        choices=("auto", "local", "slurm", "inline"),
        help="override cluster.executor (inline: run in this process, one after another)",
    )
    run.add_argument("--mode", choices=("auto", "online", "offline", "disabled"), help="W&B mode override")
    run.add_argument(
        "--rerun",
        nargs="+",
        metavar="RUN_ID",
        default=[],
        help="run these finished (or damaged) runs again; their done.json and model.pt are set aside",
    )
    run.add_argument("--no-report", action="store_true", help="do not build the report at the end")
    run.add_argument(
        "--smoke",
        action="store_true",
        help="tiny budget (1 epoch, 4/1/1 images per class, 17 compositions): checks the set-up in a minute or two",
    )
    run.set_defaults(handler=run_experiment)

    status = subparsers.add_parser("status", help="done / running / failed / missing, per planned run")
    status.add_argument("experiment", help="experiment YAML")
    status.add_argument("--smoke", action="store_true", help="the status of the --smoke variant")
    status.set_defaults(handler=show_status)


def run_experiment(args: argparse.Namespace) -> int:
    from comprobust.config import cue_model
    from comprobust.data.registry import check_dataset_files
    from comprobust.errors import UserError
    from comprobust.planning import resolve
    from comprobust.run_state import describe_plan, set_aside
    from comprobust.validation import check_output_folder, suggest

    experiment, runs = resolve(args.experiment, smoke=args.smoke, stages=args.stages, seeds=args.seeds)
    check_output_folder(experiment.output_dir, f"{experiment.path}: output_root")
    check_dataset_files(experiment.dataset, f"{experiment.path}: dataset", warn_only=args.dry_run)
    cluster = experiment.cluster.with_executor(args.executor)
    by_id = {run.run_id: run for run in runs}
    for run_id in args.rerun:
        if run_id not in by_id:
            raise UserError(f"--rerun {run_id}: not a run of {experiment.path}{suggest(run_id, by_id)}")
    if args.dry_run:
        describe_plan(experiment, runs, cluster)
        return 0
    from comprobust.pipeline import launch, output_paths  # the execution layer (torch) only when running

    for run_id in args.rerun:
        set_aside(experiment, by_id[run_id])
    launch(experiment, runs, cluster, mode=args.mode, detach=args.detach)
    if args.detach:
        return 0
    paths = output_paths(experiment)
    print(f"runs:   {paths['runs']}\nW&B:    {paths['wandb']}")
    if (
        not args.no_report
        and not args.stages
        and (experiment.evaluation.systems or cue_model(experiment.dataset.name))
    ):
        from comprobust.report import build_report

        build_report(experiment)  # prints the headline table and the report's path
    return 0


def show_status(args: argparse.Namespace) -> int:
    from comprobust.planning import resolve
    from comprobust.run_state import status_table

    experiment, runs = resolve(args.experiment, smoke=args.smoke)
    rows = status_table(experiment, runs)
    width = max(len(r["run_id"]) for r in rows)
    for row in rows:
        extra = row["metric"] or row["error"]
        print(f"{row['state']:8s} {row['run_id']:<{width}}  {extra}")
    counts = {
        state: sum(r["state"] == state for r in rows)
        for state in ("done", "damaged", "running", "failed", "missing")
    }
    print("  ".join(f"{k}: {v}" for k, v in counts.items() if v or k != "damaged"))
    damaged_logs = _damaged_wandb_logs(experiment)
    for line in damaged_logs:
        print(f"damaged W&B log: {line}")
    return 1 if counts["failed"] or counts["damaged"] or damaged_logs else 0


def _damaged_wandb_logs(experiment) -> list[str]:
    """What the experiment's local W&B logs that cannot be read say (the report would leave those runs out)."""
    from comprobust.results import OfflineRunStore

    wandb_dir = experiment.output_dir / "wandb"
    if not wandb_dir.is_dir():
        return []
    store = OfflineRunStore(
        wandb_dir, cache_dir=experiment.output_dir / "cache" / "results", group=experiment.name
    )
    store.runs()
    return [w for w in store.warnings if "corrupt" in w or "unreadable" in w or "damaged" in w]
