"""A small GraphQL document parser and a projector that shapes plain Python data like the query asks.

Handlers build a superset of the data a client may ask for (dicts, lists, scalars; a callable stands for a field
that takes arguments and is called with them); `project` keeps exactly the selected fields, follows fragments,
aliases and `@include`/`@skip`, and reports fields the data lacked. No schema and no type checking: the point is
to answer wandb's own queries with the shape they expect, not to validate them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_TOKEN = re.compile(
    r'''
    (?P<skip>[\s,]+|\#[^\n]*)
  | (?P<block>"""(?:\\"""|[^"]|"(?!""))*""")
  | (?P<string>"(?:\\.|[^"\\])*")
  | (?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
  | (?P<spread>\.\.\.)
  | (?P<name>[_A-Za-z][_0-9A-Za-z]*)
  | (?P<punct>[!$():=@\[\]{}|&])
''',
    re.VERBOSE,
)


@dataclass
class Field:
    """One selected field: `alias: name(args) @directives { selections }`."""

    name: str
    alias: str | None = None
    args: dict[str, Any] = field(default_factory=dict)
    directives: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    selections: list[Any] | None = None

    @property
    def key(self) -> str:
        return self.alias or self.name


@dataclass
class Spread:
    """`...Name` (a named fragment) or `... on Type { }` (inline, name is None)."""

    name: str | None
    type_condition: str | None = None
    directives: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    selections: list[Any] | None = None


@dataclass
class Var:
    """A `$name` reference inside an argument value, resolved at projection time."""

    name: str


@dataclass
class Operation:
    """The parsed operation: kind (query/mutation), name, selections, and the document's fragments."""

    kind: str
    name: str | None
    selections: list[Any]
    fragments: dict[str, Spread]
    defaults: dict[str, Any] = field(default_factory=dict)


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise ValueError(f"GraphQL syntax error at {pos}: {text[pos : pos + 20]!r}")
            pos = m.end()
            if m.lastgroup != "skip":
                self.tokens.append((m.lastgroup or "", m.group()))
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        return self.i < len(self.tokens) and (value is None or self.tokens[self.i][1] == value)

    def take(self, value: str | None = None) -> str:
        if self.i >= len(self.tokens):
            raise ValueError("GraphQL syntax error: unexpected end")
        kind, text = self.tokens[self.i]
        if value is not None and text != value:
            raise ValueError(f"GraphQL syntax error: expected {value!r}, got {text!r}")
        self.i += 1
        return text

    def document(self) -> tuple[list[Operation], dict[str, Spread]]:
        operations, fragments = [], {}
        while self.peek():
            if self.peek("fragment"):
                self.take()
                name = self.take()
                self.take("on")
                frag = Spread(name, self.take(), self.directives(), self.selection_set())
                fragments[name] = frag
            elif self.peek("{"):
                operations.append(Operation("query", None, self.selection_set(), fragments))
            else:
                kind = self.take()
                name = None if self.peek("(") or self.peek("{") or self.peek("@") else self.take()
                defaults = self.variable_defaults() if self.peek("(") else {}
                self.directives()
                operations.append(Operation(kind, name, self.selection_set(), fragments, defaults))
        return operations, fragments

    def variable_defaults(self) -> dict[str, Any]:
        """`($a: Int = 50, $b: [String!]!)` -> {"a": 50}."""
        defaults: dict[str, Any] = {}
        self.take("(")
        while not self.peek(")"):
            self.take("$")
            name = self.take()
            self.take(":")
            while self.tokens[self.i][1] in "[]!" or self.tokens[self.i][0] == "name":
                if self.tokens[self.i][0] == "name" and self.tokens[self.i - 1][1] not in ":[":
                    break
                self.take()
            if self.peek("="):
                self.take()
                defaults[name] = self.value()
        self.take(")")
        return defaults

    def selection_set(self) -> list[Any]:
        self.take("{")
        out: list[Any] = []
        while not self.peek("}"):
            if self.peek("..."):
                self.take()
                if self.peek("on"):
                    self.take()
                    cond = self.take()
                    out.append(Spread(None, cond, self.directives(), self.selection_set()))
                elif self.peek("@") or self.peek("{"):
                    out.append(Spread(None, None, self.directives(), self.selection_set()))
                else:
                    out.append(Spread(self.take(), None, self.directives()))
                continue
            name, alias = self.take(), None
            if self.peek(":"):
                self.take()
                alias, name = name, self.take()
            args = self.arguments()
            directives = self.directives()
            subs = self.selection_set() if self.peek("{") else None
            out.append(Field(name, alias, args, directives, subs))
        self.take("}")
        return out

    def arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {}
        if self.peek("("):
            self.take()
            while not self.peek(")"):
                key = self.take()
                self.take(":")
                args[key] = self.value()
            self.take()
        return args

    def directives(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        while self.peek("@"):
            self.take()
            out.append((self.take(), self.arguments()))
        return out

    def value(self) -> Any:
        kind, text = self.tokens[self.i]
        if text == "$":
            self.take()
            return Var(self.take())
        if text == "[":
            self.take()
            items = []
            while not self.peek("]"):
                items.append(self.value())
            self.take()
            return items
        if text == "{":
            self.take()
            obj = {}
            while not self.peek("}"):
                key = self.take()
                self.take(":")
                obj[key] = self.value()
            self.take()
            return obj
        self.take()
        if kind == "number":
            return float(text) if any(c in text for c in ".eE") else int(text)
        if kind == "string":
            import json

            return json.loads(text)
        if kind == "block":
            return text[3:-3]
        return {"true": True, "false": False, "null": None}.get(text, text)  # enums stay strings


def parse(text: str, operation_name: str | None = None) -> Operation:
    """The operation named `operation_name` (or the first) of a GraphQL document."""
    operations, _ = _Parser(text).document()
    if not operations:
        raise ValueError("GraphQL document without an operation")
    if operation_name:
        for op in operations:
            if op.name == operation_name:
                return op
    return operations[0]


def resolve(value: Any, variables: dict[str, Any]) -> Any:
    """An argument value with its `$variables` replaced."""
    if isinstance(value, Var):
        return variables.get(value.name)
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, variables) for k, v in value.items()}
    return value


def _included(directives: list[tuple[str, dict[str, Any]]], variables: dict[str, Any]) -> bool:
    for name, args in directives:
        cond = bool(resolve(args.get("if"), variables))
        if (name == "include" and not cond) or (name == "skip" and cond):
            return False
    return True


def _merge(old: Any, new: Any) -> Any:
    if isinstance(old, dict) and isinstance(new, dict):
        out = dict(old)
        for k, v in new.items():
            out[k] = _merge(out.get(k), v) if k in out else v
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [_merge(a, b) for a, b in zip(old, new)]
    return new


def project(
    value: Any,
    selections: list[Any] | None,
    op: Operation,
    variables: dict[str, Any],
    missing: Callable[[str], None] | None = None,
    path: str = "",
) -> Any:
    """`value` reduced to the `selections` (the reply's `data` when called with the operation's root)."""
    if selections is None or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [project(v, selections, op, variables, missing, path) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for sel in selections:
        if not _included(sel.directives, variables):
            continue
        if isinstance(sel, Spread):
            frag = op.fragments.get(sel.name) if sel.name else sel
            if frag is None:
                raise ValueError(f"unknown fragment {sel.name}")
            # type conditions are not checked: interfaces (ArtifactCollection) would need a schema
            out = _merge(out, project(value, frag.selections, op, variables, missing, path))
            continue
        if sel.name == "__typename":
            out[sel.key] = value.get("__typename")
            continue
        if sel.name not in value:
            if missing is not None:
                missing(f"{path}.{sel.name}".lstrip("."))
            out[sel.key] = None
            continue
        item = value[sel.name]
        if callable(item):
            item = item(**{k: resolve(v, variables) for k, v in sel.args.items()})
        sub = project(item, sel.selections, op, variables, missing, f"{path}.{sel.name}")
        out[sel.key] = _merge(out[sel.key], sub) if sel.key in out else sub
    return out
