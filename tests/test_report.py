"""The report from real offline runs with known numbers (see helpers.recorded_runs): figures, tables equal
to hand-computed values, Pearson r equal to scipy's, a self-contained HTML page, the W&B report run, the CLI."""

from __future__ import annotations

import base64
import io
import re
import statistics

import pandas as pd
import pytest
from helpers.built_report import Built, built_report
from helpers.recorded_runs import (
    NAME,
    PROJECT,
    SEED_DELTA,
    SEEDS,
    FakeApi,
    build_fixture,
    compositions,
    expected_accuracy,
)
from PIL import Image
from scipy import stats

from comprobust.cli import main
from comprobust.errors import UserError
from comprobust.report import FIGURES, build_report
from comprobust.results import OfflineRunStore


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Built:
    return built_report(tmp_path_factory)


def hand_length_means(method: str, seed: int) -> dict[int, float]:
    """Mean accuracy per length from the formula, by plain loops."""
    sums: dict[int, list[float]] = {}
    for composition in compositions():
        sums.setdefault(len(composition), []).append(expected_accuracy(method, seed, "-".join(composition)))
    return {n: sum(v) / len(v) for n, v in sums.items()}


def test_every_figure_exists_and_is_a_real_png(built):
    folder = built.index.parent
    assert built.index == built.fixture.output_dir / "report" / "index.html"
    for name in FIGURES.values():
        path = folder / name
        assert path.stat().st_size > 10_000, name
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 600 and image.height > 400
            colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
            assert colours is not None and len(colours) > 50, f"{name} looks blank"


def test_tables_equal_hand_computed_values(built):
    folder = built.index.parent
    headline = pd.read_csv(folder / "headline.csv", index_col="method")
    assert list(headline.index) == ["ERM", "Contrastive"]
    assert list(headline.columns) == ["1", "2", "3", "4", "5", "6", "all"]
    # the jitter cancels within each length and the seed offsets (+1, -1) cancel over seeds
    for length in range(1, 7):
        assert headline.loc["ERM", str(length)] == pytest.approx(90.0 - 10 * (length - 1))
        assert headline.loc["Contrastive", str(length)] == pytest.approx(80.0 - 10 * (length - 1))
    for method in ("ERM", "Contrastive"):
        per_seed = [
            statistics.mean(expected_accuracy(method, s, "-".join(c)) for c in compositions()) for s in SEEDS
        ]
        assert headline.loc[method, "all"] == pytest.approx(statistics.mean(per_seed))

    summary = pd.read_csv(folder / "summary.csv")
    assert len(summary) == 12
    for row in summary.itertuples():
        per_seed = [hand_length_means(row.method, s)[row.length] for s in SEEDS]
        assert row.mean == pytest.approx(statistics.mean(per_seed))
        assert row.std == pytest.approx(statistics.stdev(per_seed))
        assert row.std == pytest.approx(2**0.5)  # seeds at +1 and -1
        assert row.seeds == 2

    printed = built.stdout
    assert "Mean accuracy (%) by number of corruptions" in printed
    assert re.search(r"ERM\s+90\.0\s+80\.0\s+70\.0\s+60\.0\s+50\.0\s+40\.0", printed)
    assert re.search(r"Contrastive\s+80\.0\s+70\.0\s+60\.0\s+50\.0\s+40\.0\s+30\.0", printed)
    assert SEED_DELTA == {1: 1.0, 2: -1.0}


def test_pearson_r_equals_scipy_on_the_same_data(built):
    folder = built.index.parent
    correlations = pd.read_csv(folder / "correlations.csv")
    store = OfflineRunStore(built.fixture.wandb_dir, None, group=NAME)
    inv = store.invariance()
    # the same data: one point per (method, composition), scores and accuracy averaged over the seeds
    points: dict[tuple[str, str], list] = {}
    for row in inv.itertuples():
        points.setdefault((row.method, row.composition), []).append(row)
    pairs = {
        "elem-comp": ("elemental_invariance", "composition_invariance"),
        "elem-acc": ("elemental_invariance", "accuracy"),
        "comp-acc": ("composition_invariance", "accuracy"),
    }
    checked = 0
    for row in correlations.itertuples():
        x_name, y_name = pairs[row.plot]
        x, y = [], []
        for (method, name), rows in points.items():
            if method == row.method and name.count("-") + 1 == row.length:
                x.append(statistics.mean(getattr(r, x_name) for r in rows))
                y.append(statistics.mean(getattr(r, y_name) for r in rows))
        assert row.n == len(x)
        if len(x) < 3 or len(set(x)) == 1 or len(set(y)) == 1:
            assert pd.isna(row.r) and pd.isna(row.p)
            continue
        expected = stats.pearsonr(x, y)
        assert row.r == pytest.approx(expected.statistic, abs=1e-9)
        assert row.p == pytest.approx(expected.pvalue, rel=1e-6)
        checked += 1
    assert checked >= 20
    na = correlations[correlations["r"].isna()].set_index(["plot", "method", "length"])["note"]
    assert na[("elem-comp", "ERM", 5)] == "2 points"
    assert na[("elem-acc", "ERM", 6)] == "constant values"
    # all length-6 compositions are orderings of the same six elementals: their elemental grid is one set
    assert na[("elem-comp", "Contrastive", 6)] == "constant values"
    assert ("comp-acc", "ERM", 6) not in na.index


def test_html_is_self_contained_and_says_what_is_missing(built):
    text = built.index.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    sources = re.findall(r'<img src="([^"]+)"', text)
    assert len(sources) == len(FIGURES)
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))) as image:
            image.verify()
    assert text.count("How to read:") == len(FIGURES)
    for needle in (
        "rtest",
        "mnist5k",
        "chance 10.00%",
        "1, 2",
        "ERM",
        "Contrastive",
        "eval-modular-s1-0123456789 (Modular, seed 1) is failed",
        "Modular seed 2: no finished evaluation (missing)",
        "the paper hard-codes",
        "r = ",
        "n/a (2 points)",
        "90.0 ± 1.4",
        "Evaluation runs</b> 7 (1 failed, 6 finished)",
    ):
        assert needle in text, needle


def test_statistics_tables_and_sections_from_the_fixture_runs(built):
    """Seeds at +1 and -1: per-length intervals are mean ± t(0.975, 1) * sqrt(2) / sqrt(2); Contrastive trails
    ERM by exactly 10 on every seed, composition and set."""
    folder = built.index.parent
    lengths = pd.read_csv(folder / "statistics-lengths.csv")
    assert len(lengths) == 12 and (lengths["seeds"] == 2).all()
    assert (lengths["ci_high"] - lengths["mean"]).to_numpy() == pytest.approx([stats.t.ppf(0.975, 1)] * 12)
    differences = pd.read_csv(folder / "statistics-differences.csv")
    assert (differences["method"] == "Contrastive").all() and (differences["baseline"] == "ERM").all()
    assert differences["ci_low"].to_numpy() == pytest.approx([-10.0] * 6)
    assert (differences["seeds_won"] == 0).all()
    sets = pd.read_csv(folder / "statistics-sets.csv", dtype={"lengths": str}).set_index("lengths")
    assert sets.loc["2-6", "share_won"] == 0 and sets.loc["2-6", "sets"] == 15 + 20 + 15 + 6 + 1
    for name in ("invariance", "training", "commuting"):
        assert (folder / f"statistics-{name}.csv").is_file()
    text = built.index.read_text()
    assert "Statistics over seeds and sets of corruptions" in text and "Holm" in text
    assert "Mean accuracy (%) [95% t-interval over seeds]" in built.stdout


def test_report_run_is_logged_once_and_never_read_as_an_evaluation(built, capsys):
    from comprobust.wandb_offline import read_run

    store = OfflineRunStore(built.fixture.wandb_dir, None, group=NAME)
    runs = store.runs()
    report_runs = runs[runs["job_type"] == "report"]
    assert len(report_runs) == 1 and report_runs.iloc[0]["state"] == "finished"
    assert report_runs.iloc[0]["kind"] == "report"
    assert len(store.results()) == 2 * 2 * 167  # the report run adds no evaluation rows
    logged = read_run(report_runs.iloc[0]["location"])
    images = {
        k.removeprefix("report/")
        for row in logged.history
        for k, v in row.items()
        if isinstance(v, dict) and v.get("_type") == "image-file"
    }
    assert images == set(FIGURES)
    assert {"report/headline", "report/summary", "report/correlations"} <= set(logged.tables)
    assert logged.summary["headline/ERM/1"] == pytest.approx(90.0)
    assert any(a.type == "report" for a in logged.artifacts)

    folders = len(list((built.fixture.wandb_dir / "wandb").glob("offline-run-*")))
    build_report(built.fixture.experiment(), out_dir=built.index.parent)  # same results: no second run
    assert "already logged as report run" in capsys.readouterr().out
    assert len(list((built.fixture.wandb_dir / "wandb").glob("offline-run-*"))) == folders


def test_cli_report_from_the_api_and_its_errors(tmp_path_factory, tmp_path, monkeypatch, capsys):
    from comprobust.results import api as results_api

    fixture = build_fixture(tmp_path_factory)
    api = FakeApi(fixture.wandb_dir)
    monkeypatch.setattr(results_api, "_public_api", lambda: api)
    out = tmp_path / "api-report"
    assert main(["report", "--project", PROJECT, "--group", NAME, "--out", str(out), "--no-wandb"]) == 0
    assert (out / "index.html").is_file() and all((out / name).is_file() for name in FIGURES.values())
    assert re.search(r"ERM\s+90\.0\s+80\.0", capsys.readouterr().out)
    assert api.calls[0] == ("runs", PROJECT, {"group": NAME})

    assert main(["report"]) == 2
    assert "experiment YAML" in capsys.readouterr().err
    assert main(["report", "--project", PROJECT]) == 2
    assert "--group" in capsys.readouterr().err

    monkeypatch.undo()
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    assert main(["report", "--project", PROJECT, "--group", NAME, "--out", str(out)]) == 2
    assert "wandb login" in capsys.readouterr().err


def test_no_finished_evaluations_is_a_clear_error(tmp_path_factory):
    fixture = build_fixture(tmp_path_factory)
    store = OfflineRunStore(fixture.wandb_dir, None, group="someone-else")
    with pytest.raises(UserError, match="no finished evaluation runs .* launch.py run"):
        build_report(
            fixture.experiment(), store=store, out_dir=tmp_path_factory.mktemp("empty"), log_to_wandb=False
        )
