"""`launch.py demo`: the main job. The paper's whole pipeline on the offline digits, on CPU, ending in the report."""

from __future__ import annotations

import argparse

DEMO = "experiments/demo.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help=f"run {DEMO} end to end (CPU, minutes) and build its report")
    parser.add_argument("--experiment", default=DEMO, help=f"experiment to run (default {DEMO})")
    parser.add_argument(
        "--executor",
        default="inline",
        choices=("inline", "local", "slurm", "auto"),
        help="where the runs execute (default: inline, one after another in this process)",
    )
    parser.add_argument("--smoke", action="store_true", help="the tiny smoke budget (a minute or two)")
    parser.set_defaults(handler=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from comprobust.cli import build_parser
    from comprobust.commands.run import run_experiment

    # parsed by `run`'s own parser, so every option of `run` has its default here too
    argv = ["run", args.experiment, "--executor", args.executor, *(["--smoke"] if args.smoke else [])]
    return run_experiment(build_parser().parse_args(argv))
