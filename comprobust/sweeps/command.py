"""A sweep's command line: what `launch.py run-stage` target it names (parsed with run-stage's own arguments),
and its ${...} macros expanded exactly as `wandb agent` expands them."""

from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from comprobust.atomic import atomic_write_text
from comprobust.errors import UserError
from comprobust.stage_arguments import add_stage_arguments, parse_selection
from comprobust.validation import parse_overrides

ENV_VAR = "/usr/bin/env"


@dataclass(frozen=True)
class StageTarget:
    """What a sweep's command runs: `launch.py run-stage EXPERIMENT --stage STAGE [...] ${args}`."""

    experiment: str
    stage: str
    seed: int | None = None
    corruption: str | None = None
    select: Mapping[str, str] = field(default_factory=dict)  # --select axis=value in the command
    smoke: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)  # --set k=v in the command


def parse_command(config: Mapping[str, Any], where: str, require_stage: bool = True) -> StageTarget | None:
    """Find `launch.py run-stage EXPERIMENT --stage NAME ... ${args}` in the sweep's command."""
    command = config.get("command")
    if command is None:
        if require_stage:
            raise UserError(
                f"{where}: command: missing; use command: [${{env}}, ${{interpreter}}, launch.py, "
                "run-stage, experiments/<name>.yaml, --stage, <stage>, ${args}]"
            )
        return None
    if not isinstance(command, list) or not all(isinstance(c, (str, int, float)) for c in command):
        raise UserError(f"{where}: command must be a list of strings, got {command!r}")
    words = [str(c) for c in command]
    if "${program}" in words and not config.get("program"):
        raise UserError(f"{where}: command uses ${{program}} but program is not set")
    words = [str(config.get("program")) if w == "${program}" else w for w in words]
    if "run-stage" not in words:
        if require_stage:
            raise UserError(
                f"{where}: command must call `launch.py run-stage <experiment> --stage <stage> ${{args}}`"
                f", got {' '.join(words)}"
            )
        return None
    at = words.index("run-stage")
    if at == 0 or not words[at - 1].endswith("launch.py"):
        raise UserError(
            f"{where}: command: run-stage must follow launch.py (got {' '.join(words[: at + 1])})"
        )
    rest = words[at + 1 :]
    if "${args}" not in rest:
        raise UserError(
            f"{where}: command must end with ${{args}} (the sweep parameters as --name=value), got "
            f"{' '.join(words)}"
        )
    if any(w.startswith("${") for w in rest if w != "${args}"):
        bad = next(w for w in rest if w.startswith("${") and w != "${args}")
        raise UserError(f"{where}: command: {bad} cannot be passed to run-stage; use ${{args}}")
    parser = argparse.ArgumentParser(prog="launch.py run-stage", add_help=False, exit_on_error=False)
    add_stage_arguments(parser)
    try:
        parsed, extra = parser.parse_known_args([w for w in rest if w != "${args}"])
    except (argparse.ArgumentError, SystemExit) as err:
        raise UserError(
            f"{where}: command: run-stage arguments {' '.join(rest)} are invalid ({err})"
        ) from None
    overrides = parse_overrides([*parsed.overrides, *extra], where=f"{where}: command:")
    select = parse_selection(parsed.select, where=f"{where}: command: --select")
    return StageTarget(
        parsed.experiment, parsed.stage, parsed.seed, parsed.corruption, select, bool(parsed.smoke), overrides
    )


def expand_preview(config: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """The command an agent of the sweep `config` would run for `params` (without writing anything)."""
    return expand_command(config, {k: {"value": v} for k, v in params.items()})


def expand_command(
    config: Mapping[str, Any], args: Mapping[str, Any], json_file: Path | None = None
) -> list[str]:
    """The sweep's command with its ${...} macros expanded by wandb's own functions, as `wandb agent` does.

    ${interpreter} is this Python (a real agent uses `python` from PATH). With `json_file`, a command that uses
    ${args_json_file} gets the parameters written there.
    """
    from wandb.sdk.launch.sweeps.utils import (
        DEFAULT_SWEEP_COMMAND,
        create_sweep_command,
        create_sweep_command_args,
    )

    command = create_sweep_command(copy.deepcopy(config.get("command") or DEFAULT_SWEEP_COMMAND))
    macros = create_sweep_command_args({"args": dict(args)})
    macros.update(env=[ENV_VAR], interpreter=[sys.executable], program=[str(config.get("program"))])
    if json_file is not None and "${args_json_file}" in command:
        atomic_write_text(json_file, macros["args_json"][0])
        macros["args_json_file"] = [str(json_file)]
    argv: list[str] = []
    for word in map(str, command):
        argv += (macros.get(word[2:-1]) or []) if word.startswith("${") and word.endswith("}") else [word]
    return argv
