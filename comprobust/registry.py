"""`Registry`: the one mechanism behind every table of named things a user picks from a YAML file or the command
line (corruptions, datasets, networks, methods, commands).

A registry is a read-only mapping from name to entry, filled with `add` when its module is imported. Adding a
second, different entry under a taken name is a programming error (TypeError); looking up an unknown name with
`require` is the user's (one `UserError` naming the value, the closest known name and the choices).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from typing import Generic, TypeVar

from comprobust.errors import UserError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """Named entries of one kind, in the order they were added."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, T] = {}

    def add(self, name: str, entry: T) -> T:
        """Register `entry` as `name` (again registering the same entry is allowed); returns `entry`."""
        if name in self._entries and self._entries[name] != entry:
            raise TypeError(f"a {self.kind} named {name!r} is already registered")
        self._entries[name] = entry
        return entry

    def require(self, name: object, where: str | None = None) -> T:
        """The entry of `name`; a UserError (prefixed with `where`) for an unknown name."""
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        close = difflib.get_close_matches(str(name), list(self._entries), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        prefix = f"{where}: " if where else ""
        raise UserError(
            f"{prefix}unknown {self.kind} {name!r}{hint} (known {self.plural}: {', '.join(self._entries)})"
        )

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"
