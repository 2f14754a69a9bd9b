"""Small helpers for validating user input with one precise error per mistake: YAML files (duplicate keys
refused), keys, types, numeric ranges, `key=value` overrides (parsed one way for every command) and output
folders."""

from __future__ import annotations

import contextlib
import difflib
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from comprobust.errors import UserError


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            with contextlib.suppress(TypeError):  # unhashable keys are left to PyYAML's own error
                if key in seen:
                    raise UserError(
                        f"line {line}: key {key!r} is given twice (first at line {seen[key]}); "
                        "keep one (YAML would silently keep only the last)"
                    )
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file and the line."""
    path = Path(path)
    if path.is_dir():
        raise UserError(
            f"{path}: is a folder, not a YAML file; give the file itself, e.g. {path}/<name>.yaml"
        )
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = yaml.load(path.read_text(), Loader=_StrictLoader)  # noqa: S506  (a SafeLoader subclass)
    except UserError as err:
        raise UserError(f"{path}: {err}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{path}: is not a text file ({err.reason}); give a YAML file") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}:{where} is not valid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def check_keys(
    mapping: Mapping[str, Any], allowed: Iterable[str], where: str, required: Iterable[str] = ()
) -> None:
    """Refuse unknown keys (suggesting the closest allowed one) and missing required keys."""
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            raise UserError(f"{where}: unknown key {key!r}{suggest(str(key), allowed)}")
    for key in required:
        if key not in mapping:
            raise UserError(f"{where}: missing required key {key!r}")


def expect_switch(value: Any, key: str, where: str) -> bool:
    """Return `value` if it is true or false (a YAML switch such as `bf16`), else one error naming the fix."""
    if not isinstance(value, bool):
        raise UserError(
            f"{where}: expected true or false, got {value!r}; write {key}: true (or false, the default)"
        )
    return value


def expect(value: Any, kind: type | tuple[type, ...], where: str) -> Any:
    """Return `value` if it has type `kind` (bools are not numbers; ints are accepted as floats)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and bool not in kinds:
        ok = False
    else:
        ok = isinstance(value, kinds)
    if not ok:
        names = " or ".join(k.__name__ for k in kinds)
        raise UserError(f"{where}: expected {names}, got {value!r} ({type(value).__name__})")
    return value


def check_range(
    value: int | float, where: str, low: float, high: float, low_open: bool = False, high_open: bool = False
) -> int | float:
    """Refuse NaN, infinities and numbers outside [low, high] (ends excluded when open), naming the range."""
    if not math.isfinite(value):
        raise UserError(f"{where}: must be a finite number, got {value!r}")
    if (value <= low) if low_open else (value < low):
        need = (
            "be positive"
            if low == 0 and low_open
            else "not be negative"
            if low == 0
            else f"be at least {low:g}"
        )
        raise UserError(f"{where}: must {need}, got {value!r}")
    if (value >= high) if high_open else (value > high):
        raise UserError(
            f"{where}: must be {'below' if high_open else 'at most'} {high:g}, got {value!r}; "
            "a larger value is almost certainly a typo"
        )
    return value


def parse_value(text: str) -> Any:
    """One `key=value` value as every command reads it: a YAML scalar (0.1 -> float, 3 -> int, true -> bool,
    null -> None), except that numbers YAML 1.1 keeps as strings (`1e-05`, `1E3`) are floats."""
    parsed = yaml.safe_load(text)
    if isinstance(parsed, str):
        with contextlib.suppress(ValueError):
            number = float(parsed)
            if parsed.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
                return number
    return parsed


def parse_overrides(pairs: Iterable[str], where: str = "--set") -> dict[str, Any]:
    """`key=value` strings (or `--key=value`, the form sweep agents pass) -> {key: parse_value(value)}."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise UserError(f"{where} {pair!r}: expected key=value, e.g. lr=0.05")
        try:
            out[key] = parse_value(value)
        except yaml.YAMLError:
            raise UserError(
                f"{where} {pair!r}: {value!r} is not a value; quote it or write e.g. lr=0.05"
            ) from None
    return out


def check_output_folder(path: Path, where: str, write: bool = True) -> None:
    """Refuse an output folder that is a file (or under one) and, when `write`, one this user cannot write."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise UserError(f"{where}: {existing} is a file, not a folder; point output_root at a folder")
    if write and existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(
            f"{where}: cannot write to {existing} (permission denied); make it writable or point "
            "output_root at a folder you can write"
        )


def suggest(name: str, known: Iterable[str]) -> str:
    """A hint: "; did you mean 'x'?" for the closest known name, else the list of known names."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(known)}"
