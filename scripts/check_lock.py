#!/usr/bin/env python3
"""Prove that this interpreter's environment is exactly the lock file, or (--write) write the lock file from it.

The lock lists every installed distribution as `name==version` (what `pip freeze --all` prints, the project
itself left out), so two fresh installs cannot differ. Checking is strict both ways: a package missing, extra or
at another version is listed and the exit status is 1. Every top-level pin of requirements.txt must also appear
in the lock at the same version, so the two files cannot drift apart.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

HEADER = """\
# The whole resolved environment, every transitive package pinned (pip freeze --all): `make` installs exactly
# this and `make check-lock` proves the venv matches it. Top-level choices live in requirements.txt;
# regenerate this file with `make lock` after changing them.
"""
PROJECT = "comprobust"
_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;#]+)")


def canonical(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, tuple[str, str]]:
    """Canonical name -> (name as distributed, version) for every distribution of this interpreter."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name and canonical(name) != PROJECT:
            found[canonical(name)] = (name, dist.version)
    return found


def read_pins(path: Path) -> dict[str, str]:
    """Canonical name -> version for every `name==version` line of a requirements-style file."""
    pins = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = _PIN_RE.match(line)
        if match is None:
            raise SystemExit(f"{path}:{number}: {line!r} is not an exact pin (name==version)")
        pins[canonical(match.group(1))] = match.group(2)
    return pins


def differences(lock: dict[str, str], env: dict[str, tuple[str, str]]) -> list[str]:
    """One line per package that is missing, extra, or at another version than the lock says."""
    lines = []
    for key in sorted(set(lock) | set(env)):
        if key not in env:
            lines.append(f"missing: {key}=={lock[key]} is locked but not installed")
        elif key not in lock:
            lines.append(f"extra: {env[key][0]}=={env[key][1]} is installed but not in the lock")
        elif lock[key] != env[key][1]:
            lines.append(f"version: {env[key][0]} is {env[key][1]}, the lock says {lock[key]}")
    return lines


def top_level_drift(requirements: Path, lock: dict[str, str]) -> list[str]:
    """Top-level pins of requirements.txt that the lock does not carry at the same version."""
    if not requirements.exists():
        return []
    return [
        f"requirements.txt pins {name}=={version}, the lock has {lock.get(name, 'nothing')}"
        for name, version in read_pins(requirements).items()
        if lock.get(name) != version
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path)
    parser.add_argument("--write", action="store_true", help="write the lock from this environment")
    args = parser.parse_args(argv)
    env = installed()
    if args.write:
        body = "".join(
            f"{name}=={version}\n" for name, version in sorted(env.values(), key=lambda p: p[0].lower())
        )
        tmp = args.lock.with_suffix(".tmp")
        tmp.write_text(HEADER + body)
        tmp.replace(args.lock)
        print(f"wrote {args.lock}: {len(env)} packages")
        return 0
    lock = read_pins(args.lock)
    problems = top_level_drift(args.lock.parent / "requirements.txt", lock) + differences(lock, env)
    for line in problems:
        print(f"{args.lock}: {line}", file=sys.stderr)
    if problems:
        print(
            f"{args.lock}: the environment is not the lock; rebuild it with `make clean-venv test`",
            file=sys.stderr,
        )
        return 1
    print(f"{args.lock}: all {len(lock)} installed packages match the lock")
    return 0


if __name__ == "__main__":
    sys.exit(main())
