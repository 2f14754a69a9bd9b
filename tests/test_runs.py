"""The run contract: typed runs from the planner, their paths and artifact names, the W&B config written for them
and read back by results, and `resolve`, the one way from an experiment file to runs."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest

from comprobust.errors import UserError
from comprobust.planning import canonical_json, config_hash, resolve, resolve_stage
from comprobust.results.records import RunRecord
from comprobust.runs import (
    EvalRun,
    RunPaths,
    TrainRun,
    method_label,
    model_input,
    run_id_of_model,
    wandb_config,
)

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"


def test_the_planner_makes_typed_runs_with_their_own_fields() -> None:
    experiment, runs = resolve(DEMO)
    train = [r for r in runs if isinstance(r, TrainRun)]
    evals = [r for r in runs if isinstance(r, EvalRun)]
    assert len(train) + len(evals) == len(runs) and train and evals
    modular = next(r for r in evals if r.label == "Modular")
    assert (modular.system, modular.kind, modular.group, modular.job_type) == (
        "modular",
        "evaluate",
        "Modular",
        "evaluate",
    )
    assert modular.shard == 0 and modular.shards == experiment.evaluation.shards
    module = next(r for r in train if r.stage == "modules")
    assert module.corruption is not None and module.group == module.job_type == "modules"
    assert set(module.upstream) == {r.run_id for r in train if r.stage == "backbone"}


def test_paths_and_artifact_names_round_trip(tmp_path: Path) -> None:
    _, runs = resolve(DEMO)
    run = runs[0]
    paths = RunPaths.of(tmp_path, run)
    assert paths.folder == tmp_path / "runs" / run.run_id
    assert {paths.done.name, paths.failed.name, paths.lock.name} == {
        "done.json",
        "failed.json",
        "running.lock",
    }
    assert run_id_of_model(model_input(run.run_id)) == run.run_id
    assert run.artifact == f"model-{run.run_id}"


def test_the_wandb_config_names_each_run_the_way_results_reads_it() -> None:
    experiment, runs = resolve(DEMO)
    for run in runs:
        config = wandb_config(run, experiment.name, {"sweep": {"id": "s"}})
        assert (
            config["run_id"] == run.run_id and config["kind"] == run.kind and config["sweep"] == {"id": "s"}
        )
        assert method_label(config) == run.group
        record = RunRecord(
            run.run_id, run.run_id, "p", "e", experiment.name, run.job_type, "finished", 0.0, "", config, {}
        )
        assert record.method == run.group and record.is_evaluation == isinstance(run, EvalRun)


def test_resolve_applies_smoke_overrides_and_a_corruption() -> None:
    experiment, runs = resolve(DEMO, smoke=True, stages=["modules"], overrides={"lr": 0.5}, corruption="IN")
    assert experiment.smoke and experiment.stages["modules"].params["lr"] == 0.5
    assert [r.corruption for r in runs] == ["Invert"] * len(experiment.seeds)
    with pytest.raises(UserError, match="nonesuch"):
        resolve(DEMO, stages=["nonesuch"])


def test_resolve_stage_takes_the_first_seed_unless_told(tmp_path: Path) -> None:
    text = DEMO.read_text().replace("seeds: [38164641]", "seeds: [5, 6]")
    path = tmp_path / "two-seeds.yaml"
    path.write_text(text)
    assert {r.seed for r in resolve_stage(path, "erm").runs} == {5}
    assert {r.seed for r in resolve_stage(path, "erm", seed=6).runs} == {6}
    assert {r.seed for r in resolve(path, stages=["erm"]).runs} == {5, 6}


def test_a_job_receives_its_run_as_planned() -> None:
    experiment, runs = resolve(DEMO)
    shipped = pickle.loads(pickle.dumps((experiment, runs[-1])))
    assert shipped == (experiment, runs[-1])


def test_config_hash_hashes_the_canonical_json_whether_values_come_encoded_or_not() -> None:
    """Run ids hash this text: encoding a shared value once (the evaluation runs' compositions) must not change
    one id."""
    payload = {
        "system": "modular",
        "compositions": ["Identity", "Contrast-Invert", "Swirl-Ïmpulse"],
        "dataset": {"split_sizes": {"valid": 0.5, "train": 100}, "name": "mnist5k"},
        "seed": 7,
        "path": Path("/x"),  # encoded as its str, as json.dumps(default=str) does
        "input_hashes": {"modules": ["b", "a"]},
    }
    expected = hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:10]
    assert config_hash(payload) == expected
    assert config_hash(payload, {"compositions": canonical_json(payload["compositions"])}) == expected
    assert config_hash({**payload, "seed": 8}) != expected
