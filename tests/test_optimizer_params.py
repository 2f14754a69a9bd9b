"""Stage parameters `optimizer`, `warmup_epochs` and `min_improvement`: validation, the path to `TrainConfig`, and unchanged run ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comprobust.config import load_experiment
from comprobust.errors import UserError
from comprobust.methods.common import StageContext
from comprobust.methods.specs import COMMON_PARAMS, METHODS
from comprobust.optim import OPTIMIZERS as TRAINING_OPTIMIZERS
from comprobust.planning import plan, resolve
from comprobust.stage_config import OPTIMIZERS

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "experiments" / "demo.yaml"

# The run ids of experiments/demo.yaml as `planning.resolve` gave them at commit ff88e8b, before `optimizer` and
# `warmup_epochs` existed (the full budget, then --smoke). Adding a parameter must not rename existing runs: their
# ids name output folders, W&B runs and artifacts, and a relaunch finds its finished runs by them.
DEMO_IDS = (
    "erm-s38164641-08e33e438d",
    "contrastive-s38164641-615631a78f",
    "backbone-s38164641-22fa70e2b1",
    "modules-co-s38164641-82ee73acf8",
    "modules-gb-s38164641-69e2ae56d5",
    "modules-im-s38164641-ba9d52771d",
    "modules-in-s38164641-55715c7b8f",
    "modules-r90-s38164641-51ecff350a",
    "modules-sw-s38164641-d91692cbcb",
    "autoencoders-co-s38164641-eacdccb547",
    "autoencoders-gb-s38164641-a6121f0771",
    "autoencoders-im-s38164641-9bee00b72c",
    "autoencoders-in-s38164641-fa46d4a710",
    "autoencoders-r90-s38164641-5e247a39db",
    "autoencoders-sw-s38164641-b1404dd9fb",
    "imgspace-s38164641-3016595046",
    "eval-erm-s38164641-e9b2178e09",
    "eval-contrastive-s38164641-0b4a2ffc4f",
    "eval-modular-s38164641-69d18e19db",
    "eval-imgspace-identity-s38164641-7f3e616829",
    "eval-imgspace-joint-s38164641-f209b69b46",
)
DEMO_SMOKE_IDS = (
    "erm-s38164641-576f8f5c6b",
    "contrastive-s38164641-7a777bb14a",
    "backbone-s38164641-9346767b91",
    "modules-co-s38164641-0be9b61437",
    "modules-gb-s38164641-27bc0174e4",
    "modules-im-s38164641-0e565b7461",
    "modules-in-s38164641-c1985f1905",
    "modules-r90-s38164641-9886dc37bb",
    "modules-sw-s38164641-22924b4d7e",
    "autoencoders-co-s38164641-1e9c245b3f",
    "autoencoders-gb-s38164641-d53a1a7a06",
    "autoencoders-im-s38164641-89e00844d8",
    "autoencoders-in-s38164641-3f247e10fd",
    "autoencoders-r90-s38164641-ab6b074f0c",
    "autoencoders-sw-s38164641-e70505dfe9",
    "imgspace-s38164641-bb5781e6fc",
    "eval-erm-s38164641-0a03d22455",
    "eval-contrastive-s38164641-294488d3b7",
    "eval-modular-s38164641-c34e3d808e",
    "eval-imgspace-identity-s38164641-a8e256c3b1",
    "eval-imgspace-joint-s38164641-85cac5e06d",
)


def write(tmp_path: Path, stage: str, training: str = "") -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(
        f"name: t\ndataset: {{name: mnist5k}}\n{training}stages:\n  erm: {{method: erm, lr: 0.01{stage}}}\n"
        "  backbone: {method: backbone, lr: 0.1}\n"
        "  modules: {method: modules, backbone: backbone, lr: 0.01}\n"
    )
    return path


def ids(path: Path, smoke: bool = False) -> list[str]:
    return [run.run_id for run in resolve(path, smoke=smoke).runs]


def test_the_demos_run_ids_are_those_from_before_the_new_parameters() -> None:
    assert tuple(ids(DEMO)) == DEMO_IDS
    assert tuple(ids(DEMO, smoke=True)) == DEMO_SMOKE_IDS


def test_every_method_takes_them_and_the_choices_match_the_training_loop() -> None:
    assert OPTIMIZERS == TRAINING_OPTIMIZERS
    assert (COMMON_PARAMS["optimizer"], COMMON_PARAMS["warmup_epochs"]) == ("sgd", 0)
    assert all({"optimizer", "warmup_epochs"} <= set(spec.all_params) for spec in METHODS.values())


def test_defaults_stay_out_of_the_params_and_the_ids_whether_written_or_not(tmp_path: Path) -> None:
    plain = ids(write(tmp_path, ""))
    explicit = ids(write(tmp_path, ", optimizer: sgd, warmup_epochs: 0, min_improvement: 0.0"))
    assert explicit == plain
    in_training = ids(write(tmp_path, "", training="training: {optimizer: sgd, warmup_epochs: 0}\n"))
    assert in_training == plain
    experiment = load_experiment(write(tmp_path, ", optimizer: sgd"))
    assert "optimizer" not in experiment.stages["erm"].params
    assert "warmup_epochs" not in experiment.stages["erm"].params
    assert "min_improvement" not in experiment.stages["erm"].params


def test_set_values_are_params_and_change_only_that_stages_ids(tmp_path: Path) -> None:
    plain = ids(write(tmp_path, ""))
    adamw = ids(write(tmp_path, ", optimizer: adamw, warmup_epochs: 1, weight_decay: 0.05"))
    erm = [i for i in plain if i.startswith("erm-")]
    assert [i for i in adamw if i.startswith("erm-")] != erm
    assert [i for i in adamw if i.startswith(("backbone-", "modules-"))] == [
        i for i in plain if i.startswith(("backbone-", "modules-"))
    ]
    experiment = load_experiment(write(tmp_path, ", optimizer: adamw, warmup_epochs: 1"))
    params = experiment.stages["erm"].params
    assert (params["optimizer"], params["warmup_epochs"]) == ("adamw", 1)
    assert ids(write(tmp_path, ", warmup_epochs: 1")) != ids(write(tmp_path, ", warmup_epochs: 2"))
    assert ids(write(tmp_path, ", min_improvement: 0.001")) != plain
    for run in plan(experiment):
        if run.run_id.startswith("erm-"):
            assert run.config["params"]["optimizer"] == "adamw"


def test_stage_overrides_resolve_the_same_way(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, ""))
    same = experiment.with_stage_params("erm", {"optimizer": "sgd", "warmup_epochs": 0})
    assert same.stages["erm"].params == experiment.stages["erm"].params
    changed = experiment.with_stage_params("erm", {"optimizer": "adamw"})
    assert changed.stages["erm"].params["optimizer"] == "adamw"
    back = changed.with_stage_params("erm", {"optimizer": "sgd"})
    assert back.stages["erm"].params == experiment.stages["erm"].params
    with pytest.raises(UserError, match=r"optimizer='adam'.*'adam' is not one of sgd, adamw"):
        experiment.with_stage_params("erm", {"optimizer": "adam"})


@pytest.mark.parametrize(
    "stage, message",
    [
        (
            ", optimizer: adam",
            r"exp\.yaml: stages\.erm\.optimizer: 'adam' is not one of sgd, adamw; did you mean 'adamw'\?$",
        ),
        (", optimizer: 1", r"exp\.yaml: stages\.erm\.optimizer: expected str, got 1 \(int\)$"),
        (
            ", min_improvement: 0.9",
            r"exp\.yaml: stages\.erm\.min_improvement: must be at most 0\.5, got 0\.9; a larger value is almost "
            r"certainly a typo$",
        ),
        (", warmup_epochs: -1", r"exp\.yaml: stages\.erm\.warmup_epochs: must not be negative, got -1$"),
        (", warmup_epochs: 1.5", r"exp\.yaml: stages\.erm\.warmup_epochs: expected int, got 1\.5 \(float\)$"),
        (
            ", warmup_epochs: 200",
            r"exp\.yaml: stages\.erm: warmup_epochs 200 leaves no epoch for the cosine; it must be below "
            r"max_epochs \(200\)$",
        ),
    ],
)
def test_a_bad_value_is_one_error_naming_the_key(tmp_path: Path, stage: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        load_experiment(write(tmp_path, stage))
    assert "\n" not in str(caught.value)


def test_the_smoke_budget_drops_a_warmup_it_has_no_room_for(tmp_path: Path) -> None:
    path = write(tmp_path, ", optimizer: adamw, warmup_epochs: 2")
    smoke = load_experiment(path, smoke_budget=True)
    assert smoke.stages["erm"].params["max_epochs"] == 1
    assert smoke.stages["erm"].params["warmup_epochs"] == 0
    assert "warmup_epochs" not in smoke.stages["backbone"].params


def _context(params: dict[str, Any]) -> StageContext:
    return StageContext(
        run_id="r",
        stage="erm",
        seed=0,
        corruption=None,
        params=params,
        identity={},
        data=None,  # type: ignore[arg-type]
        arch="small",
        device=None,  # type: ignore[arg-type]
        out_dir=Path("."),
    )


def test_stage_params_reach_the_train_config(tmp_path: Path) -> None:
    plain = load_experiment(write(tmp_path, "")).stages["erm"].params
    config = _context(dict(plain)).train_config()
    assert (config.optimizer, config.warmup_epochs, config.lr, config.min_improvement) == (
        "sgd",
        0,
        0.01,
        0.0,
    )
    tolerant = load_experiment(write(tmp_path, ", min_improvement: 0.002")).stages["erm"].params
    assert _context(dict(tolerant)).train_config().min_improvement == 0.002
    set_ = load_experiment(write(tmp_path, ", optimizer: adamw, warmup_epochs: 3, weight_decay: 0.05"))
    config = _context(dict(set_.stages["erm"].params)).train_config()
    assert (config.optimizer, config.warmup_epochs, config.weight_decay) == ("adamw", 3, 0.05)
    search = _context(dict(set_.stages["erm"].params)).train_config(max_epochs=1, cosine_epochs=200)
    assert search.schedule_epochs == 200 and search.warmup_epochs == 3
