"""`launch.py report EXPERIMENT.yaml [--out DIR]` and `launch.py report --project P --group G --out DIR`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    report = subparsers.add_parser(
        "report",
        help="build the HTML report (box plots, heatmap, invariance plots, tables) from the runs",
        description="Read the evaluation runs (the offline run folders, or the W&B API when the experiment "
        "runs online; --project/--group always read the API), write figures, tables and a "
        "self-contained index.html, print the headline table and log the report to W&B.",
    )
    report.add_argument("experiment", nargs="?", help="experiment YAML, e.g. experiments/demo.yaml")
    report.add_argument("--out", metavar="DIR", help="report folder (default: <output_dir>/report)")
    report.add_argument("--project", help="read the runs of this W&B project through the API instead")
    report.add_argument("--entity", help="W&B entity of --project (default: your default entity)")
    report.add_argument("--group", help="W&B group (the experiment name) of the runs, with --project")
    report.add_argument("--smoke", action="store_true", help="the report of the --smoke variant")
    report.add_argument("--no-wandb", action="store_true", help="do not log the report back to W&B")
    report.add_argument(
        "--source",
        choices=("auto", "offline", "wandb"),
        default="auto",
        help="where an experiment's runs are read from: its local W&B logs (offline), the W&B "
        "server (wandb), or auto: the server when the experiment runs online (default)",
    )
    report.set_defaults(handler=build)


def build(args: argparse.Namespace) -> int:
    from comprobust.errors import UserError

    if args.experiment and args.project:
        raise UserError("give either an experiment YAML or --project/--group, not both")
    if args.experiment:
        from comprobust.planning import resolve
        from comprobust.report import build_report

        experiment = resolve(args.experiment, smoke=args.smoke).experiment
        build_report(experiment, out_dir=args.out, log_to_wandb=not args.no_wandb, source=args.source)
        return 0
    if not args.project:
        raise UserError(
            "launch.py report needs an experiment YAML (e.g. experiments/demo.yaml) or "
            "--project P --group G --out DIR"
        )
    if not args.group or not args.out:
        raise UserError("launch.py report --project needs --group (the experiment name) and --out DIR")
    from comprobust.report import render_report
    from comprobust.results import ApiRunStore

    out = Path(args.out)
    store = ApiRunStore(args.project, entity=args.entity, group=args.group, cache_dir=out / ".cache")
    target = (
        None
        if args.no_wandb
        else {"out_dir": out / ".wandb", "project": args.project, "group": args.group, "mode": "online"}
    )
    render_report(
        store,
        out,
        title=args.group,
        log_target=target,
        hint="check --project, --entity and --group (the experiment's name)",
    )
    return 0
