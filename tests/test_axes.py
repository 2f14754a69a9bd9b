"""Run axes: a stage fans out into one run per value of its listed axes (and architectures), each run holding one
value in its identity, W&B tags and config; a role read `each` gives one downstream run per upstream run; systems
are evaluated once per model run; `--select` picks runs; mistakes are one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from comprobust.config import load_experiment
from comprobust.errors import UserError
from comprobust.planning import plan, resolve, resolve_stage, select_axes
from comprobust.runs import EvalRun, TrainRun, wandb_config

CORRUPTION_EXPERIMENT = {
    "name": "axes",
    "dataset": "mnist5k",
    "architecture": "small",
    "seeds": [0],
    "compositions": ["Identity", "Contrast", "Contrast-Invert"],
    "training": {"lr": 0.05, "max_epochs": 2, "batch_size": 16},
    "stages": {
        "erm": {"method": "erm", "architecture": ["small", "vit-cpu"]},
        "backbone": {"method": "backbone", "architecture": ["small", "vit-cpu"]},
        "modules": {"method": "modules", "backbone": "backbone", "corruptions": ["Contrast", "Invert"]},
    },
    "evaluation": {
        "systems": {
            "ERM": {"classifier": "erm"},
            "Modular": {"backbone": "backbone", "modules": "modules"},
        }
    },
}

CUE_EXPERIMENT = {
    "name": "cues",
    "dataset": "dominoes",
    "seeds": [0, 1],
    "training": {"lr": 0.05, "max_epochs": 2, "batch_size": 16},
    "stages": {
        "teacher": {"method": "supervised", "mechanisms": ["I", "IAB"]},
        "student": {"method": "distill", "teacher": "teacher", "mechanisms": "I", "loss": ["kd", "jacobian"]},
    },
}


def write(tmp_path: Path, body: dict, **stage_changes: dict) -> Path:
    body = {**body, "output_root": str(tmp_path / "outputs")}
    body["stages"] = {
        name: {**stage, **stage_changes.get(name, {})} for name, stage in body["stages"].items()
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"{body['name']}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_an_architecture_axis_plans_one_run_per_network_with_distinct_ids_tags_and_config(
    tmp_path: Path,
) -> None:
    experiment = load_experiment(write(tmp_path, CORRUPTION_EXPERIMENT))
    erm = [r for r in plan(experiment, stages=["erm"]) if isinstance(r, TrainRun)]
    assert [r.architecture for r in erm] == ["small", "vit-cpu"]
    assert len({r.run_id for r in erm}) == 2 and erm[1].run_id.startswith("erm-vit-cpu-s0-")
    assert [r.config["architecture"] for r in erm] == ["small", "vit-cpu"]
    assert "architecture=vit-cpu" in erm[1].tags
    config = wandb_config(erm[1], experiment.name)
    assert config["architecture"] == "vit-cpu" and config["axes"] == {"architecture": "vit-cpu"}


def test_an_input_read_whole_reads_the_runs_on_its_own_architecture(tmp_path: Path) -> None:
    experiment = load_experiment(
        write(tmp_path, CORRUPTION_EXPERIMENT, modules={"architecture": ["small", "vit-cpu"]})
    )
    runs = plan(experiment, evaluation=False)
    backbone = {r.architecture: r.run_id for r in runs if r.group == "backbone"}
    modules = [r for r in runs if isinstance(r, TrainRun) and r.stage == "modules"]
    assert len(modules) == 4  # 2 architectures x 2 corruptions
    assert all(r.inputs["backbone"] == (backbone[r.architecture],) for r in modules)


def test_a_module_stage_without_a_backbone_on_its_architecture_is_one_error(tmp_path: Path) -> None:
    path = write(tmp_path, CORRUPTION_EXPERIMENT, backbone={"architecture": "vit-cpu"})
    with pytest.raises(
        UserError, match=r"stages\.modules\.backbone: stage 'backbone' has no run on architecture 'small'"
    ):
        plan(load_experiment(path))


def test_a_system_is_evaluated_once_per_run_of_its_model_role(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, CORRUPTION_EXPERIMENT))
    runs = plan(experiment)
    evals = [r for r in runs if isinstance(r, EvalRun)]
    labels = sorted(r.label for r in evals)
    assert labels == [
        "ERM[architecture=small]",
        "ERM[architecture=vit-cpu]",
        "Modular[architecture=small]",
        "Modular[architecture=vit-cpu]",
    ]
    train = {r.run_id: r for r in runs if isinstance(r, TrainRun)}
    for run in evals:
        assert all(train[i].architecture == run.architecture for ids in run.inputs.values() for i in ids)
        assert len(run.inputs.get("classifier", ())) <= 1 and len(run.inputs.get("backbone", ())) <= 1


def test_each_student_reads_exactly_one_teacher_and_carries_its_axes(tmp_path: Path) -> None:
    experiment = load_experiment(write(tmp_path, CUE_EXPERIMENT))
    runs = plan(experiment, seeds=[0])
    teachers = [r for r in runs if r.group == "teacher"]
    students = [r for r in runs if r.group == "student"]
    assert [t.axes for t in teachers] == [{"mechanisms": "I"}, {"mechanisms": "IAB"}]
    assert len(students) == 4 and len({s.run_id for s in students}) == 4
    for student in students:
        assert isinstance(student, TrainRun) and len(student.inputs["teacher"]) == 1
        [teacher] = [t for t in teachers if t.run_id == student.inputs["teacher"][0]]
        assert student.axes["teacher.mechanisms"] == teacher.axes["mechanisms"]
        assert student.config["params"]["loss"] in ("kd", "jacobian")
        assert student.config["params"]["mechanisms"] == "I"
    assert {(s.axes["teacher.mechanisms"], s.axes["loss"]) for s in students} == {
        ("I", "kd"),
        ("I", "jacobian"),
        ("IAB", "kd"),
        ("IAB", "jacobian"),
    }
    assert any(s.run_id.startswith("student-kd-t_iab-s0-") for s in students)


def test_a_one_value_list_plans_the_same_run_as_the_value(tmp_path: Path) -> None:
    listed = load_experiment(write(tmp_path / "a", CUE_EXPERIMENT, student={"loss": ["kd"]}))
    plain = load_experiment(write(tmp_path / "b", CUE_EXPERIMENT, student={"loss": "kd"}))
    ids = [[r.run_id for r in plan(e, evaluation=False)] for e in (listed, plain)]
    assert ids[0] == ids[1]


def test_mechanisms_are_stored_in_their_canonical_name(tmp_path: Path) -> None:
    spelled = load_experiment(
        write(tmp_path / "a", CUE_EXPERIMENT, teacher={"mechanisms": [{"image": 1.0}, "IAB"]})
    )
    plain = load_experiment(write(tmp_path / "b", CUE_EXPERIMENT))
    assert [r.run_id for r in plan(spelled)] == [r.run_id for r in plan(plain)]


def test_changing_the_teacher_replans_exactly_its_students(tmp_path: Path) -> None:
    body = {**CUE_EXPERIMENT, "stages": {**CUE_EXPERIMENT["stages"], "baseline": {"method": "supervised"}}}
    before = load_experiment(write(tmp_path, body))
    after = before.with_stage_params("teacher", {"lr": 0.01})
    old = {r.run_id: r.group for r in plan(before)}
    new = {r.run_id: r.group for r in plan(after)}
    changed = {group for run_id, group in old.items() if run_id not in new}
    assert changed == {"teacher", "student"}
    assert [i for i, g in old.items() if g == "baseline"] == [i for i, g in new.items() if g == "baseline"]


def test_select_picks_runs_by_axis_and_names_the_valid_values(tmp_path: Path) -> None:
    path = write(tmp_path, CUE_EXPERIMENT)
    _, runs = resolve_stage(path, "student", select={"teacher.mechanisms": "IAB", "loss": "kd"})
    assert len(runs) == 1 and runs[0].axes["teacher.mechanisms"] == "IAB" and runs[0].axes["loss"] == "kd"
    _, both = resolve(path, stages=["student"], seeds=[1], select={"loss": "jacobian"})
    assert len(both) == 2 and {r.seed for r in both} == {1}
    with pytest.raises(UserError, match=r"^--select loss=kl: stage 'student' runs loss jacobian, kd$"):
        select_axes(both + runs, {"loss": "kl"})
    with pytest.raises(
        UserError, match=r"has no axis 'arch'; its axes: loss, mechanisms, teacher\.mechanisms"
    ):
        resolve_stage(path, "student", select={"arch": "small"})


def test_the_rerun_command_selects_the_run(tmp_path: Path) -> None:
    from comprobust.planning import rerun_command

    experiment = load_experiment(write(tmp_path, CUE_EXPERIMENT))
    student = next(r for r in plan(experiment) if r.group == "student")
    command = rerun_command(experiment, student)
    assert "--select mechanisms=I --select loss=kd --select teacher.mechanisms=I" in command
    picks = dict(p.split("=") for p in command.split("--select ")[1:] if "=" in p)
    picks = {k: v.split()[0] for k, v in picks.items()}
    _, [again] = resolve_stage(experiment.path, "student", seed=student.seed, select=picks)
    assert again.run_id == student.run_id


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"stages": {"t": {"method": "supervised"}}, "dataset": "mnist5k"},
            r"stages\.t\.method: supervised trains on the conditions of a cue dataset, and dataset 'mnist5k' has none",
        ),
        (
            {"stages": {"e": {"method": "erm"}}},
            r"stages\.e\.method: erm trains on corruptions, and dataset 'dominoes' is a cue dataset",
        ),
        (
            {"stages": {"t": {"method": "supervised", "mechanisms": "IXQ"}}},
            r"stages\.t\.mechanisms: .*IXQ",
        ),
        (
            {
                "stages": {
                    "t": {"method": "supervised"},
                    "s": {"method": "distill", "teacher": "t", "loss": "jacobain"},
                }
            },
            r"stages\.s\.loss: 'jacobain' is not one of kd, jacobian, contrastive; did you mean 'jacobian'\?$",
        ),
        (
            {"stages": {"t": {"method": "supervised", "mechanisms": ["I", "I"]}}},
            r"stages\.t\.mechanisms: I listed twice; list each value once$",
        ),
        (
            {"stages": {"t": {"method": "supervised", "architecture": ["small", "resnet"]}}},
            r"stages\.t\.architecture\[1\]: unknown architecture 'resnet'",
        ),
        (
            {"stages": {"t": {"method": "supervised", "mechanisms": []}}},
            r"stages\.t\.mechanisms: the list is empty",
        ),
    ],
)
def test_axis_mistakes_are_one_line_errors_naming_file_and_key(
    tmp_path: Path, changes: dict, message: str
) -> None:
    path = write(tmp_path, {**CUE_EXPERIMENT, **changes})
    with pytest.raises(UserError, match=message) as caught:
        load_experiment(path)
    assert "\n" not in str(caught.value) and str(caught.value).startswith(str(path))


def test_the_conditions_frame_has_one_row_per_run_and_condition_with_axes_as_columns(tmp_path: Path) -> None:
    import pandas as pd

    from comprobust.results.conditions import conditions_frame
    from comprobust.results.records import RunRecord

    experiment = load_experiment(write(tmp_path, CUE_EXPERIMENT))
    students = [r for r in plan(experiment, seeds=[0]) if r.group == "student"]
    table = pd.DataFrame({"condition": ["I", "IAB"], "length": [1, 3], "agreement": [90.0, 80.0]})

    def record(run: TrainRun, created: float, run_id: str | None = None) -> RunRecord:
        config = wandb_config(run, experiment.name)
        name = run_id or run.run_id
        return RunRecord(
            name,
            name,
            "p",
            "",
            experiment.name,
            run.job_type,
            "finished",
            created,
            "",
            config,
            {},
            {"conditions": table},
        )

    rerun = record(students[0], 9.0, "rerun")
    frame, notes = conditions_frame([record(s, float(i)) for i, s in enumerate(students)] + [rerun])
    assert len(frame) == 2 * len(students)
    assert {"mechanisms", "loss", "teacher.mechanisms", "condition", "agreement"} <= set(frame.columns)
    first = frame[frame["run_id"] == "rerun"]
    assert len(first) == 2 and students[0].run_id not in set(frame["run_id"])
    assert notes and students[0].run_id in notes[0]
    assert set(frame["stage"]) == {"student"} and set(frame["method"]) == {"distill"}


@pytest.mark.slow
def test_the_architecture_demo_runs_end_to_end_at_the_smoke_budget(tmp_path: Path) -> None:
    """ERM and Modular on a CNN and a ViT, through the real stages, offline; each system once per network."""
    from comprobust.pipeline import launch
    from comprobust.results import open_store

    body = yaml.safe_load(
        (Path(__file__).resolve().parents[1] / "experiments" / "arch-demo.yaml").read_text()
    )
    body["compositions"] = ["Identity", "Contrast", "Invert", "Contrast-Invert"]
    body["dataset"]["root"] = str(tmp_path / "data")
    body["wandb"]["mode"] = "offline"
    path = write(tmp_path, body)
    experiment, runs = resolve(path, smoke=True)
    launch(experiment, runs, experiment.cluster.with_executor("inline"))
    results = open_store(experiment, source="offline").results()
    assert sorted(set(results["method"])) == [
        "ERM[architecture=small]",
        "ERM[architecture=vit-cpu]",
        "Modular[architecture=small]",
        "Modular[architecture=vit-cpu]",
    ]
    assert len(results) == 4 * 4


def test_cue_parameters_are_refused_on_a_corruption_dataset_and_systems_on_a_cue_dataset(
    tmp_path: Path,
) -> None:
    body = {
        **CORRUPTION_EXPERIMENT,
        "stages": {
            "erm": {"method": "erm"},
            "student": {"method": "distill", "teacher": "erm", "mechanisms": "I"},
        },
        "evaluation": {},
    }
    with pytest.raises(UserError, match=r"stages\.student\.mechanisms: dataset 'mnist5k' has no cues"):
        load_experiment(write(tmp_path / "a", body))
    cue = {**CUE_EXPERIMENT, "evaluation": {"systems": {"S": {"classifier": "student"}}}}
    with pytest.raises(
        UserError, match=r"evaluation\.systems test compositions .* 'dominoes' is a cue dataset"
    ):
        load_experiment(write(tmp_path / "b", cue))
    wrong = {
        **CUE_EXPERIMENT,
        "stages": {
            **CUE_EXPERIMENT["stages"],
            "student": {"method": "distill", "teacher": "x"},
            "x": {"method": "supervised"},
        },
    }
    assert load_experiment(write(tmp_path / "c", wrong)).stages["student"].refs == {"teacher": "x"}


@pytest.mark.parametrize(("dataset", "natural"), [("dominoes", "IAB"), ("texture-digits", "ST")])
def test_a_cue_stage_without_mechanisms_trains_on_every_cue(
    tmp_path: Path, dataset: str, natural: str
) -> None:
    body = {**CUE_EXPERIMENT, "dataset": dataset, "stages": {"t": {"method": "supervised"}}}
    experiment = load_experiment(write(tmp_path, body))
    assert experiment.stages["t"].params["mechanisms"] == natural
    explicit = load_experiment(
        write(tmp_path / "b", {**body, "stages": {"t": {"method": "supervised", "mechanisms": natural}}})
    )
    assert [r.run_id for r in plan(experiment)] == [r.run_id for r in plan(explicit)]
