"""The YAML switches of the fast paths: the stage parameters `bf16` and `channels_last` (to `fit`) and the
evaluation keys of the same names (to `evaluate`): validation, run identity, and one bf16 run end to end on CPU."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from helpers.experiments import run_ids, write_experiment

from comprobust import evaluation as evaluation_module
from comprobust.config import load_experiment
from comprobust.device import FP32, Precision
from comprobust.errors import UserError
from comprobust.methods import common
from comprobust.methods.common import StageContext
from comprobust.methods.specs import COMMON_PARAMS, METHODS
from comprobust.planning import plan
from comprobust.stages import execute


def test_every_method_takes_them_off_by_default() -> None:
    assert (COMMON_PARAMS["bf16"], COMMON_PARAMS["channels_last"]) == (False, False)
    assert all({"bf16", "channels_last"} <= set(spec.all_params) for spec in METHODS.values())


def test_off_written_or_not_leaves_params_and_ids_as_they_were(tmp_path: Path) -> None:
    plain = run_ids(write_experiment(tmp_path))
    off = {"bf16": False, "channels_last": False}
    assert run_ids(write_experiment(tmp_path, erm=off)) == plain
    assert run_ids(write_experiment(tmp_path, training=off)) == plain
    assert run_ids(write_experiment(tmp_path, evaluation=off)) == plain
    experiment = load_experiment(write_experiment(tmp_path, erm=off, evaluation=off))
    assert not {"bf16", "channels_last"} & set(experiment.stages["erm"].params)
    assert experiment.evaluation.identity() == {}


def test_a_stage_switched_on_is_another_run_and_only_its_own(tmp_path: Path) -> None:
    plain = run_ids(write_experiment(tmp_path))
    bf16 = run_ids(write_experiment(tmp_path, erm={"bf16": True}))
    nhwc = run_ids(write_experiment(tmp_path, erm={"channels_last": True}))
    changed = [i for i in plain if i not in bf16]
    assert [i.split("-s")[0] for i in changed] == ["erm", "eval-erm"]  # the stage and what evaluates it
    new_bf16, new_nhwc = set(bf16) - set(plain), set(nhwc) - set(plain)
    assert len(new_bf16) == len(new_nhwc) == 2 and not new_bf16 & new_nhwc
    experiment = load_experiment(write_experiment(tmp_path, erm={"bf16": True, "channels_last": True}))
    assert {k: experiment.stages["erm"].params[k] for k in ("bf16", "channels_last")} == {
        "bf16": True,
        "channels_last": True,
    }
    [erm] = [r for r in plan(experiment) if r.kind == "train" and r.stage == "erm"]
    assert erm.config["params"]["bf16"] is True
    everywhere = load_experiment(write_experiment(tmp_path, training={"bf16": True}))
    assert all(stage.params["bf16"] is True for stage in everywhere.stages.values())
    overridden = experiment.with_stage_params("erm", {"bf16": False})
    assert "bf16" not in overridden.stages["erm"].params  # back at the default: out of the params again


def test_the_evaluation_switched_on_renames_the_evaluations_only(tmp_path: Path) -> None:
    plain = run_ids(write_experiment(tmp_path))
    for switch in ({"bf16": True}, {"channels_last": True}, {"bf16": True, "channels_last": True}):
        switched = run_ids(write_experiment(tmp_path, evaluation=switch))
        assert [i for i in switched if not i.startswith("eval-")] == [
            i for i in plain if not i.startswith("eval-")
        ]
        evals = [i for i in switched if i.startswith("eval-")]
        assert evals and not set(evals) & set(plain)
    experiment = load_experiment(write_experiment(tmp_path, evaluation={"bf16": True}))
    assert (experiment.evaluation.bf16, experiment.evaluation.channels_last) == (True, False)
    assert all(
        r.config["bf16"] is True and "channels_last" not in r.config
        for r in plan(experiment)
        if r.kind == "evaluate"
    )


@pytest.mark.parametrize(
    ("erm", "evaluation", "training", "message"),
    [
        (
            {"bf16": "yes"},
            None,
            None,
            r"stages\.erm\.bf16: expected true or false, got 'yes'; write bf16: true",
        ),
        ({"channels_last": 1}, None, None, r"stages\.erm\.channels_last: expected true or false, got 1"),
        (None, None, {"bf16": "on"}, r"training\.bf16: expected true or false, got 'on'"),
        (None, {"bf16": 1}, None, r"evaluation\.bf16: expected true or false, got 1; write bf16: true"),
        (None, {"channels_last": None}, None, r"evaluation\.channels_last: expected true or false, got None"),
        (None, {"bf61": True}, None, r"evaluation: unknown key 'bf61'; did you mean 'bf16'"),
        ({"bf61": True}, None, None, r"stages\.erm: unknown key 'bf61'; did you mean 'bf16'"),
    ],
)
def test_bad_values_are_one_error_naming_file_key_and_fix(
    tmp_path: Path, erm: dict | None, evaluation: dict | None, training: dict | None, message: str
) -> None:
    top = {"training": training} if training else {}
    path = write_experiment(tmp_path, erm=erm, evaluation=evaluation, **top)
    with pytest.raises(UserError, match=message) as caught:
        load_experiment(path)
    assert str(caught.value).startswith(str(path))


def test_a_set_override_is_checked_like_the_files_values(tmp_path: Path) -> None:
    experiment = load_experiment(write_experiment(tmp_path))
    with pytest.raises(UserError, match=r"override bf16='true' for stage 'erm': expected true or false"):
        experiment.with_stage_params("erm", {"bf16": "true"})
    assert experiment.with_stage_params("erm", {"bf16": True}).stages["erm"].params["bf16"] is True


def test_the_stage_context_resolves_its_precision() -> None:
    def ctx(**params: Any) -> StageContext:
        return StageContext("r", "s", 0, None, params, {}, None, "small", None, Path("."))  # type: ignore[arg-type]

    assert ctx().precision() == FP32
    assert ctx(bf16=True).precision() == Precision(bf16=True)
    assert ctx(channels_last=True, bf16=False).precision() == Precision(channels_last=True)


TINY = {
    "name": "tiny-bf16",
    "dataset": {"name": "mnist5k", "split_sizes": {"train": 8, "valid": 2, "test": 2}},
    "architecture": "small",
    "seeds": [3],
    "compositions": ["Identity", "Contrast", "Invert", "Contrast-Rotate90"],
    "wandb": {"project": "comprobust-tests", "mode": "offline"},
    "cluster": {"executor": "inline"},
    "training": {"max_epochs": 1, "batch_size": 28},
    "stages": {
        "contrastive": {
            "method": "contrastive",
            "lr": 0.05,
            "weight": 0.1,
            "bf16": True,
            "channels_last": True,
        }
    },
    "evaluation": {
        "systems": {"Contrastive": {"classifier": "contrastive"}},
        "bf16": True,
        "channels_last": True,
    },
}


def test_a_bf16_channels_last_stage_and_evaluation_run_end_to_end_on_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: dict[str, Any] = {}
    fit, evaluate = common.fit, evaluation_module.evaluate

    def spy_fit(*args: Any, **kwargs: Any):
        used["fit"] = kwargs["precision"]
        return fit(*args, **kwargs)

    def spy_evaluate(*args: Any, **kwargs: Any):
        used["evaluate"] = kwargs["precision"]
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(common, "fit", spy_fit)
    monkeypatch.setattr(evaluation_module, "evaluate", spy_evaluate)
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                **TINY,
                "output_root": str(tmp_path / "out"),
                "dataset": {**TINY["dataset"], "root": str(tmp_path / "data")},
            }
        )
    )
    experiment = load_experiment(path)
    train, evaluation = plan(experiment)
    trained = execute(experiment, train)
    assert used["fit"] == Precision(bf16=True, channels_last=True)
    assert np.isfinite(trained.metrics["val_loss"])
    scored = execute(experiment, evaluation)
    assert used["evaluate"] == Precision(bf16=True, channels_last=True)
    assert evaluation.config["bf16"] is True and evaluation.config["channels_last"] is True
    rows = scored.outputs["rows"]
    assert sorted(r["composition"] for r in rows) == ["Contrast", "Contrast-Rotate90", "Identity", "Invert"]
    assert all(np.isfinite(r["loss"]) and 0 <= r["accuracy"] <= 100 for r in rows)
