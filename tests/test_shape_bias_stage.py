"""texture-digits as a registered cue dataset (a cue model with the shape S and the texture T: natural ST, shape S,
texture T, stylized 100 R, conflict 100 X), the `supervised` stage's cue-conflict scoring (Geirhos's shape bias on
oracle predictors, through the stage's own scoring function), and the shape-bias part of the cue report."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from comprobust.data import cue_datasets
from comprobust.data import texture_digits as td
from comprobust.data.cues import CONFLICTING, RANDOMISED, TRUE
from comprobust.data.dataset import CueDataset, load_dataset
from comprobust.data.registry import get_dataset_spec, is_cue_dataset
from comprobust.distill.evaluate import cue_conflict_table, render_seed
from comprobust.errors import UserError
from comprobust.methods import supervised
from comprobust.methods.common import StageContext
from comprobust.results.records import RunRecord

SIZES = {"train": 20, "valid": 5, "test": 60}


@pytest.fixture(scope="module")
def data() -> CueDataset:
    loaded = load_dataset("texture-digits", "data", split_sizes=SIZES)
    assert isinstance(loaded, CueDataset)
    return loaded


# ------------------------------------------------------------------------------------------------ registration


def test_texture_digits_is_a_registered_cue_dataset_with_shape_and_texture_mechanisms() -> None:
    entry = cue_datasets.CUE_DATASETS.require("texture-digits")
    spec = get_dataset_spec("texture-digits")
    assert entry.spec is spec and is_cue_dataset("texture-digits")
    assert (spec.num_classes, spec.channels, spec.image_shape) == (10, 1, (1, 28, 28))
    assert spec.mean == (0.0,) and spec.std == (1.0,) and not spec.official_test
    assert entry.model is td.CUE_MODEL and entry.model.names == ("shape", "texture") and entry.natural == "ST"
    assert [c.name for c in entry.conditions("shape_bias")] == ["ST", "S", "T", "100 X"]
    assert [c.name for c in entry.conditions("exhaustive")] == ["S", "T", "ST"]
    # the names: sets of one condition in lists, labels in reports
    assert [c.name for c in entry.conditions(["natural", "stylized", "conflict"])] == ["ST", "100 R", "100 X"]
    assert [entry.label(c) for c in ("ST", "S", "T", {"shape": 1, "texture": "R"}, "100 X")] == [
        "natural",
        "shape",
        "texture",
        "stylized",
        "conflict",
    ]
    assert entry.label("50 100") == "50 100"
    with pytest.raises(UserError, match="'natural' is a set of conditions"):
        entry.condition("natural")
    with pytest.raises(UserError, match="unknown mechanism 'I'"):
        entry.condition("IAB")


def test_load_dataset_renders_the_natural_splits_and_matches_the_stimulus_functions(data: CueDataset) -> None:
    assert [len(data.split(s)) for s in ("train", "valid", "test")] == [200, 50, 600]
    assert data.test.images.shape == (600, 1, 28, 28)
    test = data.parts["test"]
    assert np.array_equal(test.sources, td.split_indices("test", SIZES))
    for name, setting in td.SETTINGS.items():  # the cue-dataset renderer is the stimulus function's bytes
        ours = data.entry.render(test, np.arange(len(test)), setting, seed=4, epoch=2)
        theirs = td.load("test", name, seed=4, epoch=2, sizes=SIZES)
        assert np.array_equal(ours.images, theirs.images), name
        assert np.array_equal(ours.cues["texture"], theirs.texture_classes), name
    natural = td.load("test", "natural", seed=0, sizes=SIZES)
    assert np.array_equal(data.test.images.numpy(), natural.images)
    x, y = next(data.batches("test", "100 X", seed=3, batch_size=600))
    rendered = data.entry.render(test, np.arange(600), "100 X", seed=3)
    assert torch.allclose(x, torch.from_numpy(rendered.images).float() / 255, atol=1e-7, rtol=0)
    assert torch.equal(y, torch.from_numpy(test.labels))


def test_conflict_never_uses_the_labels_texture_and_stylized_textures_are_uniform(data: CueDataset) -> None:
    test = data.parts["test"]
    everything = np.arange(len(test))
    conflict = data.entry.render(test, everything, "100 X", seed=0)
    assert (conflict.cues["shape"] == test.labels).all() and (conflict.modes["shape"] == TRUE).all()
    assert (conflict.cues["texture"] != test.labels).all() and (
        conflict.modes["texture"] == CONFLICTING
    ).all()
    offsets = np.bincount((conflict.cues["texture"] - test.labels) % 10, minlength=10)
    assert offsets[0] == 0 and 0.06 <= offsets[1:].min() / 600 and offsets[1:].max() / 600 <= 0.17
    train = data.parts["train"]
    shares = []
    for epoch in range(5):
        stylized = data.entry.render(train, np.arange(len(train)), {"shape": 1, "texture": "R"}, 0, epoch)
        assert (stylized.modes["texture"] == RANDOMISED).all() and (
            stylized.cues["shape"] == train.labels
        ).all()
        shares.append(np.bincount(stylized.cues["texture"], minlength=10) / len(train))
        assert 0.03 <= (stylized.cues["texture"] == train.labels).mean() <= 0.18  # 1 in 10 by chance
    assert 0.07 <= np.mean(shares, axis=0).min() and np.mean(shares, axis=0).max() <= 0.13  # over 1000 draws


def test_fractions_and_a_randomised_shape_follow_the_cue_model(data: CueDataset) -> None:
    test = data.parts["test"]
    half = data.entry.render(test, np.arange(len(test)), {"shape": 1, "texture": 0.5}, seed=0)
    textured = half.cues["texture"] >= 0
    assert (np.bincount(test.labels[textured], minlength=10) == 30).all()  # `first`: half of each class
    shape_only = data.entry.render(test, np.arange(len(test)), "S", seed=0)
    assert np.array_equal(half.images[~textured], shape_only.images[~textured])
    for needs_a_split in ("R 100", "100 50"):
        with pytest.raises(ValueError, match="use render_parts"):
            td.render(test.images, test.labels, test.sources, needs_a_split, seed=0)
    swapped = data.entry.render(test, np.arange(len(test)), "R 100", seed=0)
    shown = swapped.cues["shape"]
    assert (swapped.labels == test.labels).all() and 0.03 <= (shown == test.labels).mean() <= 0.2
    texture_only = data.entry.render(test, np.arange(len(test)), "T", seed=0).images
    digits = test.images[:, 0]
    for i in range(0, 600, 37):  # the digit is one of the drawn class's, on the label's texture
        candidates = np.flatnonzero(test.labels == shown[i])
        expected = td.compose(
            digits[candidates],
            np.zeros(len(candidates)),
            np.full(len(candidates), test.labels[i]),
            np.repeat(td._phases(0, test.sources[i : i + 1], 0), len(candidates), axis=0),
        )
        assert any(np.array_equal(swapped.images[i], e) for e in expected), i
        assert not np.array_equal(swapped.images[i], texture_only[i])


# --------------------------------------------------------------------------------------------- stage's scoring


class Lookup(nn.Module):
    """An oracle predictor: the class it was told for each image (by its bytes; 0 for others), as one-hot logits."""

    def __init__(self, answers: dict[bytes, int]) -> None:
        super().__init__()
        self.answers = answers
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        keys = [np.rint(image.numpy() * 255).astype(np.uint8).tobytes() for image in x]
        out = torch.zeros(len(x), 10)
        out[torch.arange(len(x)), torch.tensor([self.answers.get(k, 0) for k in keys])] = 1.0
        return out * self.scale


def oracle(data: CueDataset, seed: int, answer: Any) -> Lookup:
    """A lookup network answering `answer(shape, texture, i)` on the conflict images the stage scores."""
    test = data.parts["test"]
    out = data.entry.render(test, np.arange(len(test)), "100 X", render_seed(seed), 0)
    answers = {
        image.tobytes(): int(answer(s, t, i))
        for i, (image, s, t) in enumerate(zip(out.images, out.cues["shape"], out.cues["texture"]))
    }
    natural = data.entry.render(test, np.arange(len(test)), "ST", render_seed(seed), 0)
    answers.update({image.tobytes(): int(label) for image, label in zip(natural.images, natural.labels)})
    return Lookup(answers)


def context(data: CueDataset, tmp_path: Path, seed: int = 7, **params: Any) -> StageContext:
    defaults = {"batch_size": 64, "conditions": ["ST", "100 X"], "mechanisms": "ST"}
    return StageContext(
        run_id="r",
        stage="supervised",
        seed=seed,
        corruption=None,
        params={**defaults, **params},
        identity={},
        data=data,
        arch="small",
        device=torch.device("cpu"),
        out_dir=tmp_path,
    )


@pytest.mark.parametrize(
    ("name", "answer", "bias"),
    [
        ("always shape", lambda s, t, i: s, 1.0),
        ("always texture", lambda s, t, i: t, 0.0),
        ("half and half", lambda s, t, i: s if i % 2 else t, 0.5),
    ],
)
def test_the_stage_scores_geirhos_shape_bias_of_oracles(
    data: CueDataset, tmp_path: Path, name: str, answer: Any, bias: float
) -> None:
    ctx = context(data, tmp_path)
    tests = data.conditions(ctx.params["conditions"])
    columns, rows, meta = supervised.score_cue_conflict(ctx, oracle(data, ctx.seed, answer), tests)
    assert meta["bias/shape"] == pytest.approx(bias) and meta["bias/texture"] == pytest.approx(1 - bias)
    assert meta["frac/shape"] == pytest.approx(bias) and meta["frac/other"] == 0.0
    assert meta["cue_conflict/trials"] == 600 and meta["cue_conflict/dropped"] == 0
    assert "cue_conflict/notes" not in meta
    assert columns[:3] == ["condition", "class", "trials"] and "bias/shape" in columns
    assert len(rows) == 10 and {row[0] for row in rows} == {"100 X"}
    if bias in (0.0, 1.0):
        assert all(meta[f"bias/shape/class{k}"] == bias for k in range(10))
    # the natural condition has no conflict: accuracy only, and 100% for the oracle
    assert supervised.score_conditions(ctx, oracle(data, ctx.seed, answer), tests)[1]["acc/ST"] == 100.0


def test_neither_cue_gives_nan_and_a_note_and_no_conflict_condition_gives_nothing(
    data: CueDataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = context(data, tmp_path)
    neither = oracle(data, ctx.seed, lambda s, t, i: next(c for c in range(10) if c not in (s, t)))
    _, _, meta = supervised.score_cue_conflict(ctx, neither, data.conditions(["ST", "100 X"]))
    assert math.isnan(meta["bias/shape"]) and meta["frac/other"] == 1.0
    assert "no decision matched any cue" in meta["cue_conflict/notes"]
    assert "warning: stage supervised: cue conflict on 100 X" in capsys.readouterr().out
    assert supervised.score_cue_conflict(ctx, neither, data.conditions(["ST", "S"]))[1:] == ([], {})
    # two conditions in conflict: keys prefixed by the condition
    two = cue_conflict_table(neither, data, data.conditions(["100 X", "X 100"]), ctx.seed)
    assert {"100 X/bias/shape", "X 100/bias/texture"} <= set(two[2]) and "bias/shape" not in two[2]


def test_the_supervised_stage_logs_the_cue_conflict_table_and_summaries(
    data: CueDataset, tmp_path: Path
) -> None:
    from comprobust.methods.specs import COMMON_PARAMS

    logged: dict[str, tuple[list[str], list[list[Any]]]] = {}
    params = {**COMMON_PARAMS, "lr": 0.01, "max_epochs": 1, "batch_size": 64, "conditions": "shape_bias"}
    ctx = context(data, tmp_path, mechanisms="100 R", **params)
    ctx.log_extra = lambda key, columns, rows: logged.setdefault(key, (columns, rows))
    export = supervised.train(ctx)
    assert set(logged) == {"conditions", "cue_conflict"}
    assert [row[0] for row in logged["conditions"][1]] == ["ST", "S", "T", "100 X"]
    columns, rows = logged["cue_conflict"]
    assert len(rows) == 10 and columns[0] == "condition"
    meta = export.meta
    assert meta["mechanisms"] == "100 R" and 0.0 <= meta["bias/shape"] <= 1.0
    shares = meta["frac/shape"] + meta["frac/texture"] + meta["frac/other"]
    assert shares == pytest.approx(1.0)
    assert meta["frac/shape"] * 100 == pytest.approx(
        meta["acc/100 X"]
    )  # the label of a conflict image is its shape


# ------------------------------------------------------------------------------------------------------ report


def record(
    run_id: str, arch: str, mechanisms: str, seed: int, bias: float, created: float = 1.0
) -> RunRecord:
    summary: dict[str, Any] = {
        "bias/shape": bias,
        "bias/texture": 1 - bias,
        "frac/shape": bias * 0.8,
        "frac/texture": (1 - bias) * 0.8,
        "frac/other": 0.2,
        "cue_conflict/trials": 1000,
        "acc/ST": 90.0 + seed,
        "acc/S": 50.0,
        "acc/T": 40.0,
        "acc/100 X": 100 * bias * 0.8,
        "acc/mean": 1.0,
        **{f"bias/shape/class{k}": (1.0 if k < 5 else 0.0) for k in range(10)},
    }
    return RunRecord(
        run_id=run_id,
        name=run_id,
        project="p",
        entity="",
        group="g",
        job_type="train",
        state="finished",
        created=created,
        location="",
        config={
            "stage": "supervised",
            "method": "supervised",
            "seed": seed,
            "kind": "train",
            "architecture": arch,
            "axes": {"mechanisms": mechanisms, "architecture": arch},
            "params": {"mechanisms": mechanisms},
        },
        summary=summary,
    )


RECORDS = [
    record("a0", "small", "ST", 0, 0.2),
    record("a1", "small", "ST", 1, 0.4),
    record("b0", "small", "100 R", 0, 0.9),
    record("b1", "small", "100 R", 1, 1.0),
    record("c0", "vit-cpu", "ST", 0, 0.1),
    record("c0-old", "vit-cpu", "ST", 0, 0.7, created=0.5),  # superseded by c0
    record("d0", "vit-cpu", "100 R", 0, 0.95),
]


def test_the_report_frames_name_architecture_and_regime_and_keep_the_latest_run() -> None:
    from comprobust.report_cues import shape_bias_frames

    summary, per_class = shape_bias_frames(RECORDS, td.LABELS)
    assert len(summary) == 6 and len(per_class) == 60
    keyed = summary.set_index(["architecture", "regime", "seed"])
    assert keyed.loc[("vit-cpu", "natural", 0), "shape_bias"] == 0.1
    assert keyed.loc[("small", "stylized", 1), "acc/conflict"] == pytest.approx(80.0)
    assert keyed.loc[("small", "natural", 1), "acc/natural"] == 91.0 and "acc/mean" not in summary
    assert set(per_class["class"]) == set(range(10))


class FakeStore:
    warnings: list[str] = []

    def conditions(self) -> pd.DataFrame:
        return pd.DataFrame()

    def records(self) -> list[RunRecord]:
        return RECORDS

    def describe(self) -> str:
        return "fake runs"


def test_the_cue_report_draws_the_shape_bias_part(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from comprobust.report_cues import render_cue_report

    index = render_cue_report(FakeStore(), tmp_path, title="t", dataset="texture-digits")  # type: ignore[arg-type]
    names = {p.name for p in tmp_path.iterdir()}
    assert {
        "shape-bias.png",
        "shape-bias-by-class.png",
        "cue-accuracy.png",
        "cue-shares.png",
        "index.html",
    } <= names
    bias = pd.read_csv(tmp_path / "shape-bias.csv").set_index(["architecture", "regime"])
    assert bias.loc[("small", "natural"), "mean"] == pytest.approx(0.3)
    assert bias.loc[("small", "natural"), "seeds"] == 2
    assert bias.loc[("small", "natural"), "ci_low"] < 0.3 < bias.loc[("small", "natural"), "ci_high"]
    assert bias.loc[("vit-cpu", "natural"), "mean"] == pytest.approx(0.1)  # the latest run of the seed
    assert bias.loc[("vit-cpu", "stylized"), "seeds"] == 1 and math.isnan(
        bias.loc[("vit-cpu", "stylized"), "ci_low"]
    )
    accuracy = pd.read_csv(tmp_path / "cue-accuracy.csv").set_index(["architecture", "regime"])
    assert accuracy.loc[("small", "natural"), "natural"] == pytest.approx(90.5)
    assert accuracy.loc[("small", "stylized"), "conflict"] == pytest.approx(76.0)
    by_class = pd.read_csv(tmp_path / "shape-bias-by-class.csv")
    assert set(by_class.loc[by_class["class"] < 5, "mean"]) == {1.0}
    html = index.read_text()
    assert html.count("data:image/png;base64,") == 4 and "Shape bias" in html and "0.5" in html
    out = capsys.readouterr().out
    assert "Shape bias on cue-conflict trials" in out and "stylized" in out


def test_a_store_without_conditions_or_cue_conflict_results_is_an_error(tmp_path: Path) -> None:
    from comprobust.report_cues import render_cue_report

    class Empty(FakeStore):
        def records(self) -> list[RunRecord]:
            return []

    with pytest.raises(UserError, match="no finished runs"):
        render_cue_report(Empty(), tmp_path, title="t", dataset="texture-digits")  # type: ignore[arg-type]
