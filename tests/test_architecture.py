"""The shape of the house: comprobust's import graph (every import, module-level or deferred inside a function)
has no cycle, nothing below the command layer imports it, every method's name leads to its `train`, and checking
and dry-running an experiment stays light."""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

from comprobust.architectures import ARCHITECTURES
from comprobust.methods import trainer
from comprobust.methods.specs import METHODS
from comprobust.models import num_levels

PACKAGE = Path(__file__).resolve().parents[1] / "comprobust"
COMMAND_LAYER = ("comprobust.commands", "comprobust.cli")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _owner(name: str, modules: dict[str, Path]) -> str:
    """The comprobust module that `name` (a module, or a name imported from one) lives in."""
    while name not in modules:
        name = name.rpartition(".")[0]
    return name


def import_graph() -> dict[str, set[str]]:
    """module -> the comprobust modules it imports (a package's `__init__` importing its own submodules aside)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.level == 0
                and (node.module or "").startswith("comprobust")
            ):
                targets |= {_owner(f"{node.module}.{alias.name}", modules) for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {_owner(a.name, modules) for a in node.names if a.name.startswith("comprobust")}
        is_package = path.name == "__init__.py"
        graph[module] = {
            t for t in targets if t != module and not (is_package and t.startswith(f"{module}."))
        }
    return graph


def test_the_graph_sees_known_edges() -> None:
    graph = import_graph()
    assert "comprobust.planning" in graph["comprobust.commands.run"]  # a deferred import inside a function
    assert "comprobust.runs" in graph["comprobust.planning"]
    assert "comprobust.tracking.credentials" in graph["comprobust.wandb_connection"]


def test_imports_have_no_cycle() -> None:
    try:
        tuple(graphlib.TopologicalSorter(import_graph()).static_order())
    except graphlib.CycleError as err:
        pytest.fail(f"import cycle: {' -> '.join(err.args[1])}")


def test_nothing_below_the_command_layer_imports_it() -> None:
    upward = {
        module: sorted(t for t in targets if t.startswith(COMMAND_LAYER))
        for module, targets in import_graph().items()
        if not module.startswith(COMMAND_LAYER)
    }
    assert {m: t for m, t in upward.items() if t} == {}


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_named_architecture_can_be_built(arch: str) -> None:
    assert num_levels(arch) >= 2


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_name_leads_to_its_train(method: str) -> None:
    train = trainer(method)
    assert train.__name__ == "train" and train.__module__ == f"comprobust.methods.{method}"


DRY_RUN = """
import io, sys
from pathlib import Path
from comprobust.config import load_experiment
from comprobust.planning import plan
from comprobust.run_state import describe_plan
experiment = load_experiment(Path(sys.argv[1]))
describe_plan(experiment, plan(experiment), experiment.cluster.with_executor("local"), out=io.StringIO())
heavy = sorted(set(sys.argv[2].split(",")) & set(sys.modules))
assert not heavy, f"imported {heavy}"
"""


@pytest.mark.parametrize(
    ("experiment", "heavy"),
    [
        ("demo.yaml", "torch,numpy,pandas,wandb"),
        ("emnist.yaml", "torch,numpy,pandas,wandb"),
        ("distill-demo.yaml", "torch,pandas,wandb"),  # a cue dataset's condition model is numpy's
    ],
)
def test_checking_and_dry_running_an_experiment_imports_no_heavy_library(experiment: str, heavy: str) -> None:
    """What makes `launch.py run --dry-run` and `status` start in well under a second: none of these libraries
    on the path from the YAML to the printed plan."""
    path = PACKAGE.parent / "experiments" / experiment
    result = subprocess.run([sys.executable, "-c", DRY_RUN, str(path), heavy], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
