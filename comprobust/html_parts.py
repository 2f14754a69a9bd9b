"""The HTML building blocks the report's sections share: escaping, tables, numbers."""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any

import numpy as np


def esc(value: Any) -> str:
    """`value` as text safe inside HTML."""
    return html.escape(str(value), quote=True)


def html_table(header: list[str], rows: Iterable[list[str]], left: int = 1) -> str:
    """An HTML table; `rows` hold already-escaped cell HTML; the first `left` columns align left."""
    head = "".join(f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>"
        + "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def num(value: float, digits: int = 1) -> str:
    """A number with `digits` decimals, or a greyed "n/a" when it is not finite."""
    return f"{value:.{digits}f}" if np.isfinite(value) else '<span class="na">n/a</span>'
