"""Recorded runs with known numbers, and a fake `wandb.Api` serving them (shared by test_results, test_report*,
test_publish).

`build_fixture` writes, with the real wandb client in offline mode
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
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

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
            rows.append(
                {
                    "composition": name,
                    "abbreviation": abbreviate(composition),
                    "length": len(composition),
                    "elements": " ".join(composition),
                    "accuracy": acc,
                    "loss": (100 - acc) / 50,
                    "images": 100,
                }
            )
        return rows

    def evaluation(
        method: str,
        system: str,
        seed: int,
        shard: int = 0,
        shards: int = 1,
        exit_code: int = 0,
        broken: bool = False,
        stats: bool = False,
    ) -> None:
        suffix = f"-shard{shard}of{shards}" if shards > 1 else ""
        run_id = f"eval-{method.lower()}-s{seed}{suffix}-0123456789"
        config = {
            "system": system,
            "label": method,
            "seed": seed,
            "dataset": {"name": "mnist5k", "root": "data", "split_sizes": None, "download": False},
            "compositions": ["-".join(c) for c in compositions()],
            "shard": shard,
            "shards": shards,
            "inputs": {"classifier": ["abc"]},
            "hash": "0123456789",
            "run_id": run_id,
            "stage": method,
            "kind": "evaluate",
            "experiment": NAME,
            "architecture": "small",
        }
        selected = shard_compositions(compositions(), shard, shards)
        rows = table_rows(method, seed, selected, broken)
        run = start_run(
            out_dir=out,
            project=PROJECT,
            group=NAME,
            job_type="evaluate",
            name=run_id,
            run_id=run_id,
            config=config,
            tags=["mnist5k", system, "evaluate"],
            mode="offline",
        )
        run.log_table("compositions", columns, [[r[c] for c in columns] for r in rows])
        summary = summary_metrics(rows)
        if method == "ERM" and not broken:
            run.log_table(
                "invariance",
                ["composition", "length", "elemental_invariance", "composition_invariance", "units"],
                erm_invariance_rows(seed),
            )
        if stats:
            collected = {}
            for composition in selected:
                means, maxima = stats_for(seed, "-".join(composition))
                collected[composition] = CompositionStats(
                    class_sum=means.astype(np.float64),
                    class_sq=means.astype(np.float64) ** 2,
                    class_count=np.ones(4),
                    unit_max=maxima,
                )
            stats_path = root / "stats" / run_id / "activation_stats.npz"
            stats_path.parent.mkdir(parents=True)
            save_stats(stats_path, collected)
            run.log_checkpoint(
                stats_path,
                f"activations-{run_id}",
                metadata={"kind": "activation_stats"},
                aliases=("latest",),
                artifact_type="stats",
            )
        run.summary_update({**summary, "system": system, "label": method})
        run.finish(exit_code=exit_code)

    evaluation("ERM", "monolithic", 1)
    evaluation("ERM", "monolithic", 2, exit_code=1, broken=True)  # first attempt fails ...
    evaluation("ERM", "monolithic", 2)  # ... and is resumed under the same id
    for seed in SEEDS:
        for shard in range(2):
            evaluation("Contrastive", "monolithic", seed, shard=shard, shards=2, stats=True)
    evaluation("Modular", "modular", 1, exit_code=1, broken=True)
    train = start_run(
        out_dir=out,
        project=PROJECT,
        group=NAME,
        job_type="erm",
        name="erm-s1",
        run_id="erm-s1-x",
        config={"kind": "train", "method": "erm", "seed": 1, "params": {"lr": 0.01}},
        tags=["train"],
        mode="offline",
    )
    train.log_table("compositions", columns, [["Identity", "ID", 1, "Identity", 1.0, 9.0, 1]])
    train.finish()
    return Fixture(root, path, out)


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
        self._artifacts = {
            a.name: Path(a.files[0].location)
            for r in runs.values()
            for a in r.artifacts
            if a.name.startswith("activations-")
        }

    def runs(
        self, path: str, filters=None, order="+created_at", per_page=50, include_sweeps=False, lazy=True
    ):
        self.calls.append(("runs", path, dict(filters or {})))
        assert not lazy  # one query for the listing with configs and summaries
        group = (filters or {}).get("group")
        return iter([r for r in self._runs if group is None or r.group == group])

    def artifact(self, name: str, type=None):
        self.calls.append(("artifact", name, type))
        _entity, _project, rest = name.split("/")
        return FakeArtifact(self._artifacts[rest.split(":")[0]])
