"""Small helpers for validating YAML mappings with one precise error per mistake."""
from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from comprobust.errors import UserError


def load_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}:{where} is not valid YAML: {getattr(err, 'problem', err)}") from err
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level, got {type(data).__name__}")
    return data


def check_keys(mapping: Mapping[str, Any], allowed: Iterable[str], where: str, required: Iterable[str] = ()) -> None:
    """Refuse unknown keys (suggesting the closest allowed one) and missing required keys."""
    allowed = list(allowed)
    for key in mapping:
        if key not in allowed:
            raise UserError(f"{where}: unknown key {key!r}{suggest(str(key), allowed)}")
    for key in required:
        if key not in mapping:
            raise UserError(f"{where}: missing required key {key!r}")


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


def suggest(name: str, known: Iterable[str]) -> str:
    """A hint: "; did you mean 'x'?" for the closest known name, else the list of known names."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; allowed: {', '.join(known)}"
