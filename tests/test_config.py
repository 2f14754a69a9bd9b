"""Every shipped experiment validates and plans; bad experiment files get one precise error naming file and key."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from comprobust.cli import main
from comprobust.config import load_experiment
from comprobust.errors import UserError
from comprobust.planning import plan

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_every_shipped_experiment_validates_and_plans(path: Path) -> None:
    experiment = load_experiment(path)
    runs = plan(experiment)
    assert len({r.run_id for r in runs}) == len(runs)
    assert len(experiment.compositions) == 167
    seen: set[str] = set()
    for run in runs:  # dependency order: every input planned before its consumer
        assert set(run.upstream) <= seen, run.run_id
        seen.add(run.run_id)
    smoke = load_experiment(path, smoke_budget=True)
    assert all(stage.params["max_epochs"] == 1 for stage in smoke.stages.values())
    assert smoke.output_dir != experiment.output_dir


def test_shipped_experiments_cover_the_paper() -> None:
    names = {p.stem for p in EXPERIMENTS}
    assert {"demo", "emnist", "cifar10", "facescrub"} <= names
    emnist = load_experiment(REPO / "experiments" / "emnist.yaml")
    assert emnist.seeds == (38164641, 13579111, 24681012)
    assert emnist.stages["contrastive"].params == {
        **emnist.stages["contrastive"].params,
        "lr": 0.01,
        "weight": 0.1,
        "max_epochs": 200,
        "batch_size": 256,
        "temperature": 0.15,
    }
    assert {s.label for s in emnist.evaluation.systems} == {
        "ERM",
        "Contrastive",
        "Modular",
        "ImgSpace-Identity",
        "ImgSpace-Joint",
    }


def test_identity_is_stable_and_changes_with_the_config() -> None:
    demo = load_experiment(REPO / "experiments" / "demo.yaml")
    ids = [r.run_id for r in plan(demo)]
    assert ids == [r.run_id for r in plan(load_experiment(REPO / "experiments" / "demo.yaml"))]
    changed = {r.run_id for r in plan(demo.with_stage_params("backbone", {"lr": 0.2}))}
    assert [i for i in ids if i.startswith("erm-")][0] in changed  # unrelated stage keeps its identity
    assert not any(i in changed for i in ids if i.startswith(("backbone-", "modules-", "eval-modular")))


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return path


BASE = """
name: t
dataset: {name: mnist5k}
stages:
  backbone: {method: backbone, lr: 0.1}
  modules: {method: modules, backbone: backbone, lr: 0.01}
"""


@pytest.mark.parametrize(
    "text, message",
    [
        (BASE + "stagez: {}\n", "exp.yaml: unknown key 'stagez'; did you mean 'stages'?"),
        (
            BASE.replace("lr: 0.1}", "lr: 0.1, lrr: 2}"),
            "stages.backbone: unknown key 'lrr'; did you mean 'lr'?",
        ),
        (BASE.replace("lr: 0.1}", "lr: fast}"), r"stages.backbone.lr: expected float, got 'fast'"),
        (BASE.replace("lr: 0.1}", "lr: -1}"), "stages.backbone.lr: must be positive"),
        (
            BASE.replace("method: backbone, lr", "method: backbon, lr"),
            "unknown method 'backbon'; did you mean 'backbone'",
        ),
        (
            BASE.replace("backbone: backbone,", "backbone: trunk,"),
            "names stage 'trunk', which is not defined",
        ),
        (BASE.replace("backbone: backbone,", ""), "stages.modules: missing required key 'backbone'"),
        (
            BASE.replace("{method: backbone, lr: 0.1}", "{method: erm, lr: 0.1}"),
            "stage 'backbone' has method 'erm'; backbone needs a 'backbone' stage",
        ),
        (BASE + "seeds: [1, 1]\n", "seeds: seeds repeat"),
        (
            BASE + "wandb: {mode: sometimes}\n",
            "wandb.mode: 'sometimes' is not one of auto, online, offline, disabled",
        ),
        (BASE + "compositions: [Contrast-Fog]\n", "compositions: .*unknown corruption 'Fog'"),
        (BASE + "evaluation: {systems: {M: {backbone: backbone}}}\n", "match no kind of system"),
        (
            BASE + "evaluation: {systems: {M: {classifier: modules}}}\n",
            "stage 'modules' \\(modules\\) cannot be a classifier",
        ),
        (
            BASE
            + "evaluation: {systems: {M: {backbone: backbone, modules: modules, module_order: random}}}\n",
            "systems.M.module_order: 'random' is not allowed; only a modular system takes it, one of composition, reverse",
        ),
        (
            BASE + "evaluation: {systems: {M: {classifier: backbone, module_order: reverse}}}\n",
            "systems.M.module_order: 'reverse' is not allowed; only a modular system",
        ),
        ("name: t\ndataset: {name: mnist5k}\nstages: {}\n", "stages is empty"),
        ("name: [t\n", "exp.yaml: line 2 is not valid YAML: expected ',' or ']'"),
        (
            BASE.replace("lr: 0.01}", "lr: 0.01, corruptions: [Fog]}"),
            "stages.modules.corruptions: unknown corruption 'Fog'; known corruptions: Identity",
        ),
    ],
)
def test_bad_experiment_files_get_one_precise_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        load_experiment(write(tmp_path, text))


def test_reverse_module_order_is_its_own_evaluation_and_the_default_keeps_run_ids(tmp_path: Path) -> None:
    systems = "evaluation: {{systems: {{M: {{backbone: backbone, modules: modules{}}}}}}}\n"
    default, explicit, reverse = (
        plan(load_experiment(write(tmp_path, BASE + systems.format(extra))))
        for extra in ("", ", module_order: composition", ", module_order: reverse")
    )
    assert [r.run_id for r in default] == [r.run_id for r in explicit]
    [(evaluated, reversed_)] = [(a, b) for a, b in zip(default, reverse) if a.kind == "evaluate"]
    assert evaluated.run_id != reversed_.run_id and reversed_.config["module_order"] == "reverse"
    assert [r.run_id for r in default if r.kind == "train"] == [
        r.run_id for r in reverse if r.kind == "train"
    ]


def test_a_dependency_cycle_is_named(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, BASE))
    backbone = dataclasses.replace(experiment.stages["backbone"], refs={"trunk": "modules"})
    cyclic = dataclasses.replace(experiment, stages={**experiment.stages, "backbone": backbone})
    with pytest.raises(
        UserError, match="cycle: (backbone -> modules -> backbone|modules -> backbone -> modules)"
    ):
        plan(cyclic)


def test_cli_prints_the_error_without_a_traceback(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, BASE.replace("lr: 0.1}", "lr: 0.1, lrr: 2}"))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "did you mean 'lr'" in err


def test_dry_run_plans_without_submitting(tmp_path: Path, capsys) -> None:
    assert main(["run", str(REPO / "experiments" / "emnist.yaml"), "--dry-run", "--executor", "local"]) == 0
    out = capsys.readouterr().out
    assert (
        "111 runs; nothing submitted (dry run)" in out
    )  # 3 seeds x (17 training runs + 5 systems x 4 shards)
    assert "--array=0-17%16" in out and "--dependency=afterok" in out and "--gpus-per-task=1" in out
    assert not (REPO / "outputs" / "emnist" / "jobs").exists()


def test_planning_a_large_grid_is_fast() -> None:
    """Not a timed assertion: a sanity bound two orders of magnitude above the measured time (benchmarks/launch.py)."""
    experiment = load_experiment(REPO / "experiments" / "emnist.yaml")
    many = dataclasses.replace(experiment, seeds=tuple(range(10)))
    started = time.perf_counter()
    runs = plan(many)
    assert len(runs) == 370  # per seed: 17 training runs + 5 systems x 4 shards
    assert time.perf_counter() - started < 30
