"""Sub-commands of `launch.py`: one module per command group, each with `register(subparsers)`.

A module registers its parser and sets `handler=<function(args) -> int>` with `set_defaults`.
"""
