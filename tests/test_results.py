"""RunStore backends on real offline W&B runs with known numbers, and the API backend on a fake wandb.Api.

The runs and their known numbers are described in `helpers.recorded_runs`.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest
from helpers.recorded_runs import (
    NAME,
    PROJECT,
    SEEDS,
    FakeApi,
    Fixture,
    build_fixture,
    compositions,
    erm_invariance_rows,
    expected_accuracy,
    stats_for,
)

from comprobust.errors import UserError
from comprobust.results import INVARIANCE_COLUMNS, RESULT_COLUMNS, ApiRunStore, OfflineRunStore, open_store


@pytest.fixture(scope="session")
def runs_fixture(tmp_path_factory) -> Fixture:
    return build_fixture(tmp_path_factory)


# ---------------------------------------------------------------------------------------------------- offline


def test_runs_frame_lists_every_run_with_its_state(runs_fixture, tmp_path):
    store = OfflineRunStore(runs_fixture.wandb_dir, tmp_path / "cache", group=NAME)
    runs = store.runs().set_index("run_id")
    assert len(runs) == 8  # ERM x2 (the resumed one once), Contrastive x4, Modular x1, training x1
    assert runs.loc["eval-erm-s2-0123456789", "state"] == "finished"  # the latest finished attempt
    assert runs.loc["eval-modular-s1-0123456789", "state"] == "failed"
    assert runs.loc["erm-s1-x", "job_type"] == "erm" and runs.loc["erm-s1-x", "method"] == ""
    assert runs.loc["eval-erm-s1-0123456789", "method"] == "ERM"
    assert runs.loc["eval-erm-s1-0123456789", "dataset"] == "mnist5k"
    assert runs.loc["eval-contrastive-s2-shard1of2-0123456789", "shards"] == 2
    assert runs.loc["eval-erm-s1-0123456789", "summary.acc/length_2"] == pytest.approx(81.0)
    assert runs.loc["eval-erm-s1-0123456789", "config.dataset.name"] == "mnist5k"
    assert "config.compositions" not in runs.columns  # 167 names per run stay out of the frame


def test_results_equal_the_known_numbers(runs_fixture, tmp_path):
    store = OfflineRunStore(runs_fixture.wandb_dir, tmp_path / "cache", group=NAME)
    results = store.results()
    assert list(results.columns) == RESULT_COLUMNS
    assert len(results) == 2 * 2 * 167
    assert set(results["method"]) == {"ERM", "Contrastive"}  # the failed Modular run is excluded
    assert list(results["method"].drop_duplicates()) == ["ERM", "Contrastive"]  # the paper's order
    for row in results.itertuples():
        assert row.accuracy == pytest.approx(expected_accuracy(row.method, row.seed, row.composition))
        assert row.loss == pytest.approx((100 - row.accuracy) / 50)
        assert row.length == row.composition.count("-") + 1
    assert (results["accuracy"] > 0).all()  # neither the failed attempt nor the training run leaked in
    assert set(results.loc[results["method"] == "Contrastive", "shard"]) == {0, 1}
    first = results[(results["method"] == "ERM") & (results["seed"] == 1)].iloc[0]
    assert (first.composition, first.abbreviation, first.system, first.dataset) == (
        "Identity",
        "ID",
        "monolithic",
        "mnist5k",
    )


def test_invariance_from_tables_and_from_merged_shards(runs_fixture, tmp_path):
    from comprobust.invariance import invariance_scores

    store = OfflineRunStore(runs_fixture.wandb_dir, tmp_path / "cache", group=NAME)
    inv = store.invariance()
    assert list(inv.columns) == INVARIANCE_COLUMNS
    for seed in SEEDS:
        erm = inv[(inv["method"] == "ERM") & (inv["seed"] == seed)].set_index("composition")
        rows = erm_invariance_rows(seed)
        assert len(erm) == len(rows)
        for name, _length, elemental, composed, _units in rows:
            assert erm.loc[name, "elemental_invariance"] == pytest.approx(elemental)
            assert erm.loc[name, "composition_invariance"] == pytest.approx(composed)
            assert erm.loc[name, "accuracy"] == pytest.approx(expected_accuracy("ERM", seed, name))
            assert erm.loc[name, "source"] == "table"

        means, maxima = {}, {}
        for composition in compositions():
            means[composition], maxima[composition] = stats_for(seed, "-".join(composition))
        expected = {"-".join(s.composition): s for s in invariance_scores(means, maxima)}
        con = inv[(inv["method"] == "Contrastive") & (inv["seed"] == seed)].set_index("composition")
        assert len(con) == len(expected) == 160
        for name, score in expected.items():
            assert con.loc[name, "elemental_invariance"] == pytest.approx(score.elemental)
            assert con.loc[name, "composition_invariance"] == pytest.approx(score.composition_score)
            assert con.loc[name, "units"] == score.units
            assert con.loc[name, "accuracy"] == pytest.approx(expected_accuracy("Contrastive", seed, name))
        assert set(con["source"]) == {"stats of 2 shards"}


def test_cache_is_reused_and_invalidated_by_a_changed_run(runs_fixture, tmp_path):
    fixture = runs_fixture.copy(tmp_path / "copy")
    cache = tmp_path / "cache"
    first = OfflineRunStore(fixture.wandb_dir, cache, group=NAME)
    results = first.results()
    assert first.cache_misses == 9 and first.cache_hits == 0  # 9 run folders
    assert len(list(cache.glob("*.json"))) == 1

    again = OfflineRunStore(fixture.wandb_dir, cache, group=NAME)
    pd.testing.assert_frame_equal(again.results(), results)
    assert (again.cache_hits, again.cache_misses) == (9, 0)

    log = next(fixture.wandb_dir.rglob("run-eval-erm-s1-*.wandb"))
    stat = log.stat()
    os.utime(log, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = OfflineRunStore(fixture.wandb_dir, cache, group=NAME)
    pd.testing.assert_frame_equal(changed.results(), results)
    assert (changed.cache_hits, changed.cache_misses) == (8, 1)

    next(cache.glob("*.json")).write_bytes(b"not JSON")  # a damaged cache is rebuilt, not trusted
    rebuilt = OfflineRunStore(fixture.wandb_dir, cache, group=NAME)
    pd.testing.assert_frame_equal(rebuilt.results(), results)
    assert rebuilt.cache_misses == 9


def test_other_groups_and_damaged_logs(runs_fixture, tmp_path):
    other = OfflineRunStore(runs_fixture.wandb_dir, None, group="another-experiment")
    assert other.runs().empty and other.results().empty and other.invariance().empty
    assert list(other.results().columns) == RESULT_COLUMNS

    fixture = runs_fixture.copy(tmp_path / "copy")
    log = next(fixture.wandb_dir.rglob("run-eval-erm-s1-*.wandb"))
    data = bytearray(log.read_bytes())
    data[200:210] = b"\xff" * 10
    log.write_bytes(bytes(data))
    store = OfflineRunStore(fixture.wandb_dir, None, group=NAME)
    results = store.results()
    assert set(results["seed"][results["method"] == "ERM"]) == {2}
    assert any("corrupt record" in w for w in store.warnings)

    with pytest.raises(UserError, match="no such folder"):
        OfflineRunStore(tmp_path / "nowhere").runs()


def test_open_store_follows_the_wandb_mode(runs_fixture, wandb_server, monkeypatch):
    from comprobust.results import api as results_api

    experiment = runs_fixture.experiment()
    monkeypatch.setenv("WANDB_MODE", "offline")
    store = open_store(experiment)
    assert isinstance(store, OfflineRunStore) and store.group == NAME
    assert store.wandb_dir == experiment.output_dir / "wandb"

    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "local-" + "0123456789abcdef" * 3)
    monkeypatch.setenv("WANDB_BASE_URL", wandb_server.url)  # online reading first checks the server answers
    monkeypatch.setattr(results_api, "_public_api", lambda: "the-api")
    online = open_store(experiment)
    assert isinstance(online, ApiRunStore) and online.api == "the-api"
    assert (online.project, online.group) == (PROJECT, NAME)

    monkeypatch.setenv("WANDB_MODE", "disabled")
    with pytest.raises(UserError, match="no runs were recorded"):
        open_store(experiment)
    monkeypatch.setenv("WANDB_MODE", "online")  # an explicit source wins over the mode
    assert isinstance(open_store(experiment, source="offline"), OfflineRunStore)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")
    with pytest.raises(UserError, match=r"http://127.0.0.1:9 does not answer.*--mode offline"):
        open_store(experiment, source="wandb")


# ----------------------------------------------------------------------------------------------------- online


def test_api_store_gives_the_same_frames_as_the_offline_store(runs_fixture, tmp_path):
    api = FakeApi(runs_fixture.wandb_dir)
    online = ApiRunStore(PROJECT, entity="team", group=NAME, api=api, cache_dir=tmp_path / "cache")
    offline = OfflineRunStore(runs_fixture.wandb_dir, None, group=NAME)
    pd.testing.assert_frame_equal(online.results(), offline.results())
    pd.testing.assert_frame_equal(online.invariance(), offline.invariance())
    columns = ["run_id", "job_type", "state", "method", "system", "dataset", "seed", "shard", "shards"]
    pd.testing.assert_frame_equal(online.runs()[columns], offline.runs()[columns])
    assert api.calls[0] == ("runs", f"team/{PROJECT}", {"group": NAME})
    artifacts = sorted(c[1] for c in api.calls if c[0] == "artifact")
    assert artifacts == [
        f"team/{PROJECT}/activations-eval-contrastive-s{s}-shard{i}of2-0123456789:latest"
        for s in SEEDS
        for i in range(2)
    ]

    calls = len(api.calls)
    cached = ApiRunStore(PROJECT, entity="team", group=NAME, api=api, cache_dir=tmp_path / "cache")
    pd.testing.assert_frame_equal(cached.results(), offline.results())
    assert len(api.calls) == calls + 1  # only the listing: tables come from the cache


def test_api_store_without_credentials_says_how_to_log_in(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_IDENTITY_TOKEN_FILE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    with pytest.raises(UserError, match="wandb login"):
        ApiRunStore("some-project", group="g")


def test_a_damaged_log_is_reported_by_status_and_report_alike(tmp_path, runs_fixture, capsys):
    """A finished evaluation whose .wandb log is damaged is named by `status` (exit 1) and by `report`, never
    silently left out."""
    from comprobust.cli import main

    copy = runs_fixture.copy(tmp_path / "runs")
    log = next(p for p in (copy.wandb_dir / "wandb").glob("*eval-erm-s1-*/run-*.wandb"))
    data = bytearray(log.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
    log.write_bytes(bytes(data))
    assert main(["status", str(copy.experiment_path)]) == 1
    out = capsys.readouterr().out
    assert f"damaged W&B log: {log}" in out
    main(
        [
            "report",
            str(copy.experiment_path),
            "--source",
            "offline",
            "--no-wandb",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    assert f"{log}: corrupt record" in capsys.readouterr().err
