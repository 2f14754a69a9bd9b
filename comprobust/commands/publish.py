"""`launch.py publish EXPERIMENT.yaml|WANDB_DIR [--dry-run]`: sync offline runs to a W&B server."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    publish = subparsers.add_parser(
        "publish",
        help="upload offline W&B runs to a server (wandb sync, checked on the server)",
        description="Runs `wandb sync` on the newest folder of each offline run of the experiment (or of a W&B "
        "folder) with bounded retries and a timeout. A run counts as published only when the server "
        "shows it whole (state, every history row, every artifact committed): wandb sync exits 0 and "
        "marks runs synced even when an upload failed. Failed runs are retried with backoff (a partial "
        "copy on the server is deleted first); exits 1 if any failed. Offline sweeps are then created "
        "on the server with their runs. Needs `wandb login` (and WANDB_BASE_URL for a self-hosted "
        "server).",
    )
    publish.add_argument("target", help="experiment YAML, or a W&B folder (<output_dir>/wandb) or run folder")
    publish.add_argument("--dry-run", action="store_true", help="list what would be synced; upload nothing")
    publish.add_argument("--attempts", type=int, default=3, help="tries per run folder (default 3)")
    publish.add_argument(
        "--timeout",
        type=float,
        default=1800.0,
        metavar="S",
        help="seconds one `wandb sync` may take before it is killed (default 1800)",
    )
    publish.add_argument(
        "--backoff",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds before the first retry, doubled each time (default 5)",
    )
    publish.add_argument(
        "--include-unfinished",
        action="store_true",
        help="also sync runs without an exit record (killed runs; a live run would be partial)",
    )
    publish.add_argument("--entity", help="W&B entity to sync into (default: the experiment's wandb.entity)")
    publish.add_argument("--project", help="override the runs' W&B project")
    publish.add_argument("--smoke", action="store_true", help="the runs of the --smoke variant")
    publish.set_defaults(handler=run_publish)


def run_publish(args: argparse.Namespace) -> int:
    from comprobust.publish import publish, publish_sweeps

    target, entity, sweeps_dir = Path(args.target), args.entity, None
    if target.suffix in (".yaml", ".yml"):
        from comprobust.planning import resolve

        experiment = resolve(target, smoke=args.smoke).experiment
        target = experiment.output_dir / "wandb"
        entity = entity or experiment.wandb.entity
        sweeps_dir = experiment.output_dir / "sweeps"
    outcomes = publish(
        target,
        entity=entity,
        project=args.project,
        dry_run=args.dry_run,
        attempts=args.attempts,
        timeout_s=args.timeout,
        backoff_s=args.backoff,
        include_unfinished=args.include_unfinished,
    )
    if sweeps_dir is not None and sweeps_dir.is_dir() and not args.dry_run:
        publish_sweeps(sweeps_dir, outcomes, entity=entity, project=args.project)
    return 1 if any(o.status == "failed" for o in outcomes) else 0
