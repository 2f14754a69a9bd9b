"""Sub-commands of `launch.py`: one module per command group, each with `register(subparsers)`, listed in
`COMMANDS` (adding a command is a module here plus one line below).

A module registers its parser and sets `handler=<function(args) -> int>` with `set_defaults`. The modules are
thin and light: what a command does is imported when it runs, so `launch.py --help` starts fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from comprobust.commands import corruptions, data, demo, publish, report, run, stage, sweep
from comprobust.registry import Registry

COMMANDS: Registry[Callable[[argparse._SubParsersAction], None]] = Registry("command")
for _module in (corruptions, data, demo, publish, report, run, stage, sweep):
    COMMANDS.add(_module.__name__.rsplit(".", 1)[-1], _module.register)
