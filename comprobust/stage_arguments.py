"""The command line of `launch.py run-stage`, shared by the command itself and by sweep validation, which parses
a sweep's `command` with exactly these arguments."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from comprobust.errors import UserError


def parse_selection(picks: Sequence[str], where: str = "--select") -> dict[str, str]:
    """`["mechanisms=IAB", ...]` -> {"mechanisms": "IAB"}; a pick without `=` or named twice is an error."""
    selection: dict[str, str] = {}
    for pick in picks:
        name, sep, value = pick.partition("=")
        if not sep or not name or not value:
            raise UserError(f"{where} {pick}: write AXIS=VALUE, e.g. --select mechanisms=IAB")
        if name in selection:
            raise UserError(f"{where} {pick}: {name} is selected twice; give each axis once")
        selection[name] = value
    return selection


def add_stage_arguments(parser: argparse.ArgumentParser) -> None:
    """Add run-stage's arguments (experiment, --stage, --seed, --corruption, --select, --set, --mode, --smoke,
    --force)."""
    parser.add_argument("experiment", help="experiment YAML, e.g. experiments/demo.yaml")
    parser.add_argument("--stage", required=True, help="stage name from the experiment's stages")
    parser.add_argument("--seed", type=int, help="one of the experiment's seeds (default: the first)")
    parser.add_argument("--corruption", help="for per-corruption stages: run only this elemental")
    parser.add_argument(
        "--select",
        action="append",
        default=[],
        metavar="AXIS=VALUE",
        help="for stages with axes: run only the runs with this value, e.g. --select mechanisms=IAB or "
        "--select teacher.mechanisms=I (repeatable)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a stage parameter, e.g. --set lr=0.05 (repeatable)",
    )
    parser.add_argument("--mode", choices=("auto", "online", "offline", "disabled"), help="W&B mode override")
    parser.add_argument("--smoke", action="store_true", help="the experiment at its smoke budget")
    parser.add_argument(
        "--force",
        action="store_true",
        help="run again even if done (its done.json and model.pt are set aside, not deleted)",
    )
