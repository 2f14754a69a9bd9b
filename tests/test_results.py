"""RunStore backends on real offline W&B runs with known numbers, and the API backend on a fake wandb.Api.

`build_fixture` (also used by test_report*, test_publish) writes, with the real wandb client in offline mode
through `comprobust.tracking.start_run`, evaluation runs shaped like `comprobust.evaluation.evaluate_run`'s:

* ERM, seeds 1 and 2, unsharded: "compositions" and "invariance" tables; seed 2 first fails (all accuracies 0,
  exit code 1) and is resumed under the same run id (a second folder) with the right numbers;
* Contrastive, seeds 1 and 2, in 2 shards each: "compositions" tables and activation-statistics artifacts
  (invariance must come from the merged shards);
* Modular seed 1: failed (exit code 1); Modular seed 2: never ran;
* a training run (job_type "erm") that also logs a "compositions" table, which must never count.

Accuracy = BASE[method] - 10 * (length - 1) + SEED_DELTA[seed] + jitter, where the jitter alternates +2/-2
over the non-Identity compositions of each length (their count is even), so every per-length mean is exact.
"""
from __future__ import annotations

import functools
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from comprobust.errors import UserError
from comprobust.results import INVARIANCE_COLUMNS, RESULT_COLUMNS, ApiRunStore, OfflineRunStore, open_store

BASE = {"ERM": 90.0, "Contrastive": 80.0}
SEED_DELTA = {1: 1.0, 2: -1.0}
SEEDS = (1, 2)
NAME = "rtest"
PROJECT = "comprobust-rtest"
EXPERIMENT_YAML = """\
name: rtest
dataset: {name: mnist5k, root: data}
architecture: small
seeds: [1, 2]
output_root: OUTPUT_ROOT
wandb: {project: comprobust-rtest, mode: offline}
training: {max_epochs: 1, batch_size: 16}
stages:
  erm: {method: erm, lr: 0.01}
  contrastive: {method: contrastive, lr: 0.01, weight: 0.1}
  backbone: {method: backbone, lr: 0.1}
  modules: {method: modules, backbone: backbone, lr: 0.01}
evaluation:
  systems:
    ERM: {classifier: erm}
    Contrastive: {classifier: contrastive}
    Modular: {backbone: backbone, modules: modules}
"""


@functools.lru_cache(maxsize=1)
def compositions() -> list[tuple[str, ...]]:
    from comprobust.compositions import paper_compositions

    return paper_compositions()


@functools.lru_cache(maxsize=1)
def jitter() -> dict[str, float]:
    """+2/-2 alternating over the non-Identity compositions of each length; Identity 0."""
    out, count = {}, {}
    for composition in compositions():
        name = "-".join(composition)
        if name == "Identity":
            out[name] = 0.0
            continue
        n = count.get(len(composition), 0)
        count[len(composition)] = n + 1
        out[name] = 2.0 if n % 2 == 0 else -2.0
    return out


def expected_accuracy(method: str, seed: int, name: str) -> float:
    return BASE[method] - 10.0 * (name.count("-")) + SEED_DELTA[seed] + jitter()[name]


def erm_invariance_rows(seed: int) -> list[list]:
    """ERM's logged invariance table: length 5 has only 2 rows (n < 3), length 6 one elemental score."""
    rows, kept5 = [], 0
    for i, composition in enumerate(c for c in compositions() if len(c) >= 2):
        n = len(composition)
        if n == 5:
            kept5 += 1
            if kept5 > 2:
                continue
        elemental = 0.7 + 0.01 * seed if n == 6 else 0.55 + 0.03 * ((i * 7) % 11) + 0.01 * seed
        composed = 0.6 + 0.2 * ((i * 3) % 7) / 6 + 0.005 * seed
        rows.append(["-".join(composition), n, elemental, composed, 100])
    return rows


def stats_for(seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Contrastive's per-composition activation statistics (4 classes x 6 units)."""
    rng = np.random.default_rng(zlib.crc32(f"{seed}-{name}".encode()))
    means = (rng.random((4, 6)) * 5).astype(np.float32)
    return means, (means.max(axis=0) * 1.5).astype(np.float32)


@dataclass
class Fixture:
    root: Path
    experiment_path: Path
    output_dir: Path

    @property
    def wandb_dir(self) -> Path:
        return self.output_dir / "wandb"

    def experiment(self):
        from comprobust.config import load_experiment

        return load_experiment(self.experiment_path)

    def copy(self, dest: Path) -> Fixture:
        """A private copy (run folders keep their files' mtimes; artifact files stay where they were)."""
        shutil.copytree(self.root, dest, symlinks=True)
        path = dest / "experiment.yaml"
        path.write_text(path.read_text().replace(str(self.root), str(dest)))  # its output_root
        return Fixture(dest, path, dest / "outputs" / NAME)


_BUILT: dict[str, Fixture] = {}


def build_fixture(tmp_path_factory: pytest.TempPathFactory) -> Fixture:
    """The evaluation runs described in the module docstring, written once per test session."""
    if "fixture" not in _BUILT:
        root = tmp_path_factory.mktemp("eval-runs")
        _BUILT["fixture"] = _write_fixture(root)
    return _BUILT["fixture"]


def _write_fixture(root: Path) -> Fixture:
    from comprobust.evaluation import CompositionStats, save_stats, shard_compositions, summary_metrics
    from comprobust.tracking import start_run

    path = root / "experiment.yaml"
    path.write_text(EXPERIMENT_YAML.replace("OUTPUT_ROOT", str(root / "outputs")))
    out = root / "outputs" / NAME
    columns = ["composition", "abbreviation", "length", "elements", "accuracy", "loss", "images"]
    from comprobust.corruptions import abbreviate

    def table_rows(method: str, seed: int, selected, broken: bool = False) -> list[dict]:
        rows = []
        for composition in selected:
            name = "-".join(composition)
            acc = 0.0 if broken else expected_accuracy(method, seed, name)
            rows.append({"composition": name, "abbreviation": abbreviate(composition),
                         "length": len(composition), "elements": " ".join(composition), "accuracy": acc,
                         "loss": (100 - acc) / 50, "images": 100})
        return rows

    def evaluation(method: str, system: str, seed: int, shard: int = 0, shards: int = 1, exit_code: int = 0,
                   broken: bool = False, stats: bool = False) -> None:
        suffix = f"-shard{shard}of{shards}" if shards > 1 else ""
        run_id = f"eval-{method.lower()}-s{seed}{suffix}-0123456789"
        config = {"system": system, "label": method, "seed": seed,
                  "dataset": {"name": "mnist5k", "root": "data", "split_sizes": None, "download": False},
                  "compositions": ["-".join(c) for c in compositions()], "shard": shard, "shards": shards,
                  "inputs": {"classifier": ["abc"]}, "hash": "0123456789", "run_id": run_id, "stage": method,
                  "kind": "evaluate", "experiment": NAME, "architecture": "small"}
        selected = shard_compositions(compositions(), shard, shards)
        rows = table_rows(method, seed, selected, broken)
        run = start_run(out_dir=out, project=PROJECT, group=NAME, job_type="evaluate", name=run_id,
                        run_id=run_id, config=config, tags=["mnist5k", system, "evaluate"], mode="offline")
        run.log_table("compositions", columns, [[r[c] for c in columns] for r in rows])
        summary = summary_metrics(rows)
        if method == "ERM" and not broken:
            run.log_table("invariance", ["composition", "length", "elemental_invariance",
                                         "composition_invariance", "units"], erm_invariance_rows(seed))
        if stats:
            collected = {}
            for composition in selected:
                means, maxima = stats_for(seed, "-".join(composition))
                collected[composition] = CompositionStats(
                    class_sum=means.astype(np.float64), class_sq=means.astype(np.float64) ** 2,
                    class_count=np.ones(4), unit_max=maxima)
            stats_path = root / "stats" / run_id / "activation_stats.npz"
            stats_path.parent.mkdir(parents=True)
            save_stats(stats_path, collected)
            run.log_checkpoint(stats_path, f"activations-{run_id}", metadata={"kind": "activation_stats"},
                               aliases=("latest",), artifact_type="stats")
        run.summary_update({**summary, "system": system, "label": method})
        run.finish(exit_code=exit_code)

    evaluation("ERM", "monolithic", 1)
    evaluation("ERM", "monolithic", 2, exit_code=1, broken=True)  # first attempt fails ...
    evaluation("ERM", "monolithic", 2)  # ... and is resumed under the same id
    for seed in SEEDS:
        for shard in range(2):
            evaluation("Contrastive", "monolithic", seed, shard=shard, shards=2, stats=True)
    evaluation("Modular", "modular", 1, exit_code=1, broken=True)
    train = start_run(out_dir=out, project=PROJECT, group=NAME, job_type="erm", name="erm-s1",
                      run_id="erm-s1-x",
                      config={"kind": "train", "method": "erm", "seed": 1, "params": {"lr": 0.01}},
                      tags=["train"], mode="offline")
    train.log_table("compositions", columns, [["Identity", "ID", 1, "Identity", 1.0, 9.0, 1]])
    train.finish()
    return Fixture(root, path, out)


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
        "Identity", "ID", "monolithic", "mnist5k")


def test_invariance_from_tables_and_from_merged_shards(runs_fixture, tmp_path):
    from comprobust.invariance import invariance_scores

    store = OfflineRunStore(runs_fixture.wandb_dir, tmp_path / "cache", group=NAME)
    inv = store.invariance()
    assert list(inv.columns) == INVARIANCE_COLUMNS
    for seed in SEEDS:
        erm = inv[(inv["method"] == "ERM") & (inv["seed"] == seed)].set_index("composition")
        rows = erm_invariance_rows(seed)
        assert len(erm) == len(rows)
        for name, length, elemental, composed, units in rows:
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


class FakeFile:
    def __init__(self, name: str, source: Path) -> None:
        self.name, self.source = name, source

    def download(self, root: str = ".", replace: bool = False, exist_ok: bool = False, api=None):
        dest = Path(root) / self.name
        if dest.exists() and not replace and not exist_ok:
            raise ValueError("File already exists")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.source, dest)
        return open(dest)


class FakeRun:
    """The attributes of `wandb.apis.public.Run` that ApiRunStore uses, from an offline run."""

    def __init__(self, offline, entity: str) -> None:
        self._offline = offline
        self.id, self.name = offline.id, offline.name
        self.group, self.job_type = offline.group, offline.job_type
        self.entity, self.project = entity, offline.project
        self.state = offline.state
        self.config = dict(offline.config)  # the public API unwraps {"value": ...}
        self.summary_metrics = dict(offline.summary)
        stamp = pd.Timestamp(offline.start_time, unit="s", tz="UTC")
        self.created_at = stamp.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        self.heartbeat_at = self.created_at
        self.url = f"https://wandb.example/{entity}/{offline.project}/runs/{offline.id}"

    def file(self, name: str) -> FakeFile:
        return FakeFile(name, self._offline.path / "files" / name)


class FakeArtifact:
    def __init__(self, source: Path) -> None:
        self.source = source

    def download(self, root: str | None = None, **kwargs) -> str:
        folder = Path(root)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.source, folder / self.source.name)
        return str(folder)


class FakeApi:
    """The surface of `wandb.Api` that ApiRunStore uses: `runs(path, filters=)` and `artifact(name, type=)`.
    The server holds one run per id (a resumed run is merged), built from the offline folders."""

    def __init__(self, wandb_dir: Path, entity: str = "team") -> None:
        from comprobust.wandb_offline import find_runs, read_run

        self.calls: list[tuple] = []
        runs = {}
        for folder in find_runs(wandb_dir):
            run = read_run(folder)
            if run.id not in runs or run.state == "finished":
                runs[run.id] = run
        self._runs = [FakeRun(r, entity) for r in runs.values()]
        self._artifacts = {a.name: Path(a.files[0].location) for r in runs.values() for a in r.artifacts
                           if a.name.startswith("activations-")}

    def runs(self, path: str, filters=None, order="+created_at", per_page=50, include_sweeps=False,
             lazy=True):
        self.calls.append(("runs", path, dict(filters or {})))
        assert not lazy  # one query for the listing with configs and summaries
        group = (filters or {}).get("group")
        return iter([r for r in self._runs if group is None or r.group == group])

    def artifact(self, name: str, type=None):
        self.calls.append(("artifact", name, type))
        _entity, _project, rest = name.split("/")
        return FakeArtifact(self._artifacts[rest.split(":")[0]])


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
    assert artifacts == [f"team/{PROJECT}/activations-eval-contrastive-s{s}-shard{i}of2-0123456789:latest"
                         for s in SEEDS for i in range(2)]

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
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    log.write_bytes(bytes(data))
    assert main(["status", str(copy.experiment_path)]) == 1
    out = capsys.readouterr().out
    assert f"damaged W&B log: {log}" in out
    main(["report", str(copy.experiment_path), "--source", "offline", "--no-wandb", "--out", str(tmp_path / "r")])
    assert f"{log}: corrupt record" in capsys.readouterr().err
