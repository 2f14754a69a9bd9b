"""Command-line dispatcher: every module in `comprobust.commands` that defines `register(subparsers)`
adds its own sub-command, so adding a command never touches this file."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from typing import Sequence

from comprobust import commands
from comprobust.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with one sub-command per module of `comprobust.commands`."""
    parser = argparse.ArgumentParser(
        prog="launch.py",
        description="comprobust: compositional-robustness experiments, sweeps and reports on W&B.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{module_info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the chosen command and return its exit status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
