"""Command-line dispatcher: every command in `comprobust.commands.COMMANDS` adds its own sub-command, so adding a
command never touches this file.

Every failure is one line on stderr: a mistake in the input (`UserError`, a folder that cannot be written) exits
with status 2, failed work (`WorkFailed`, or any unexpected error) with status 1. `--debug` re-raises instead, with
the Python traceback.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Sequence

from comprobust.commands import COMMANDS
from comprobust.errors import UserError, WorkFailed

# OSErrors that mean "this path cannot be used", which the user fixes (permissions, a full or read-only disk)
_PATH_ERRNOS = {
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EISDIR,
    errno.ENOTDIR,
}


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with one sub-command per module of `comprobust.commands`."""
    parser = argparse.ArgumentParser(
        prog="launch.py",
        description="comprobust: compositional-robustness experiments, sweeps and reports on W&B.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the Python traceback of a failure instead of the one-line error",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for register in COMMANDS.values():
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv`, run the chosen command and return its exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:  # accepted anywhere on the line, not only before the command
        argv = ["--debug", *(arg for arg in argv if arg != "--debug")]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "accepts_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001  every failure becomes one line, unless --debug
        if args.debug:
            raise
        status, line = describe_failure(err)
        print(f"error: {line}", file=sys.stderr)
        return status


def describe_failure(err: Exception) -> tuple[int, str]:
    """(exit status, one line) for a failure: 2 for the user's input or folders, 1 for failed work."""
    first = (str(err).strip().splitlines() or [""])[0]
    if isinstance(err, UserError):
        return 2, first
    if isinstance(err, OSError) and err.errno in _PATH_ERRNOS:
        path = err.filename or "a file"
        return 2, (
            f"cannot use {path}: {err.strerror}; make it writable (or free space there), or point "
            "output_root / --out at another folder"
        )
    if isinstance(err, WorkFailed):
        return 1, first
    return 1, f"{type(err).__name__}: {first} (an unexpected failure; rerun with --debug for the traceback)"
