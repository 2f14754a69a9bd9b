"""One report of the recorded runs (`helpers.recorded_runs`), built once per session and shared by the report
tests and the browser test."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

from comprobust.report import build_report
from helpers.recorded_runs import build_fixture


@dataclass
class Built:
    fixture: object
    index: Path
    stdout: str


_BUILT: dict[str, Built] = {}


def built_report(tmp_path_factory) -> Built:
    """One report of a private copy of the fixture runs, built once per session (also used by the browser
    test)."""
    if "report" not in _BUILT:
        fixture = build_fixture(tmp_path_factory).copy(tmp_path_factory.mktemp("report") / "runs")
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            index = build_report(fixture.experiment())
        _BUILT["report"] = Built(fixture, index, buffer.getvalue())
    return _BUILT["report"]
