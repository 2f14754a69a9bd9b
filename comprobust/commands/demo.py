"""`launch.py demo`: the main job. The paper's whole pipeline on the offline digits, on CPU, ending in the report."""
from __future__ import annotations

import argparse

DEMO = "experiments/demo.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help=f"run {DEMO} end to end (CPU, minutes) and build its report")
    parser.add_argument("--experiment", default=DEMO, help=f"experiment to run (default {DEMO})")
    parser.add_argument("--executor", default="inline", choices=("inline", "local", "slurm", "auto"),
                        help="where the runs execute (default: inline, one after another in this process)")
    parser.add_argument("--smoke", action="store_true", help="the tiny smoke budget (a minute or two)")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from comprobust.commands.run import run_experiment

    return run_experiment(argparse.Namespace(
        experiment=args.experiment, dry_run=False, detach=False, stages=None, seeds=None, executor=args.executor,
        mode=None, no_report=False, smoke=args.smoke))
