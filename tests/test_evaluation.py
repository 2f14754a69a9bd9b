"""Evaluation on all compositions: sharding, reproducibility, batch-size independence, oracle ordering rules."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from comprobust.compositions import paper_compositions
from comprobust.data.dataset import load_dataset
from comprobust.data.loaders import PairedViewLoader
from comprobust.device import Precision
from comprobust.evaluation import evaluate, imgspace, modular, monolithic, shard_compositions, summary_metrics
from comprobust.methods.common import ClassifierTask
from comprobust.models import build_network
from comprobust.training import TrainConfig, fit


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small network trained for one epoch on the offline digits (seconds)."""
    data = load_dataset(
        "mnist5k",
        root=str(tmp_path_factory.mktemp("data")),
        split_sizes={"train": 40, "valid": 10, "test": 12},
    )
    torch.manual_seed(0)
    network = build_network("small", data.spec.num_classes, in_channels=1, image_size=28)
    loader = PairedViewLoader(data, "train", views=("Identity",), batch_size=50, seed=0)
    valid = PairedViewLoader(data, "valid", views=("Identity",), batch_size=50, seed=0)
    task = ClassifierTask(
        network,
        lambda e: ((x[0], y) for x, y in loader.batches(e)),
        lambda: ((x[0], y) for x, y in valid.batches(0)),
        torch.device("cpu"),
    )
    fit(task, TrainConfig(lr=0.1, max_epochs=2), tmp_path_factory.mktemp("ckpt"), {"test": 1})
    return data, network


def test_all_167_compositions_are_evaluated_on_every_test_image(trained) -> None:
    data, network = trained
    compositions = paper_compositions()
    result = evaluate(monolithic(network), data, compositions, batch_size=64, seed=1)
    assert [r["composition"] for r in result.rows] == ["-".join(c) for c in compositions]
    assert all(r["images"] == len(data.test) for r in result.rows)
    by_name = {r["composition"]: r for r in result.rows}
    assert by_name["Identity"]["accuracy"] > 50  # the network learned something
    assert by_name["Identity"]["accuracy"] > by_name["Invert-Rotate90-Swirl"]["accuracy"]
    summary = summary_metrics(result.rows)
    assert summary["acc/length_1"] == pytest.approx(
        np.mean([r["accuracy"] for r in result.rows if r["length"] == 1])
    )
    assert set(summary) >= {"acc/mean", "acc/elementals", "acc/compositions", "acc/length_6"}
    stats = result.stats[("Identity",)]
    assert stats.class_mean().shape == (10, network.feature_dim)
    assert (stats.unit_max >= 0).all()


def test_sharded_equals_unsharded_and_repeats_are_identical(trained) -> None:
    data, network = trained
    compositions = paper_compositions()
    whole = evaluate(monolithic(network), data, compositions, batch_size=64, seed=1)
    again = evaluate(monolithic(network), data, compositions, batch_size=64, seed=1)
    assert whole.rows == again.rows
    shards = [shard_compositions(compositions, k, 3) for k in range(3)]
    assert sorted(c for shard in shards for c in shard) == sorted(compositions)
    merged = {}
    for shard in shards:
        for row in evaluate(monolithic(network), data, shard, batch_size=64, seed=1).rows:
            merged[row["composition"]] = row
    assert [merged[r["composition"]] for r in whole.rows] == whole.rows


def test_batch_size_does_not_change_the_accuracy(trained) -> None:
    data, network = trained
    compositions = [("ImpulseNoise",), ("Swirl", "ImpulseNoise", "Contrast")]
    small = evaluate(monolithic(network), data, compositions, batch_size=7, seed=2)
    large = evaluate(monolithic(network), data, compositions, batch_size=500, seed=2)
    for a, b in zip(small.rows, large.rows):
        assert a["accuracy"] == b["accuracy"]
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    other_seed = evaluate(monolithic(network), data, compositions, batch_size=500, seed=3)
    assert [r["loss"] for r in other_seed.rows] != [r["loss"] for r in large.rows]


class Probe(nn.Module):
    """An identity module that records when it is called."""

    def __init__(self, name: str, calls: list[str]) -> None:
        super().__init__()
        self.name, self.calls = name, calls

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(self.name)
        return x


def test_modules_apply_by_level_then_by_position_in_the_composition(trained) -> None:
    _, network = trained
    calls: list[str] = []
    modules = {
        "Contrast": (2, Probe("CO", calls)),
        "Swirl": (0, Probe("SW", calls)),
        "Invert": (2, Probe("IN", calls)),
    }
    forward = modular(network, modules)
    x = torch.zeros(2, 1, 28, 28)
    plain_logits, _ = network.forward_features(x)
    logits, _ = forward(x, ("Contrast", "Swirl", "Invert"))
    assert calls == ["SW", "CO", "IN"]
    calls.clear()
    forward(x, ("Invert", "Identity", "Contrast"))
    assert calls == ["IN", "CO"]
    assert torch.allclose(logits, plain_logits)  # probes are identities
    calls.clear()
    modular(network, modules, reverse=True)(x, ("Contrast", "Swirl", "Invert"))
    assert calls == ["SW", "IN", "CO"]  # levels still ascend; only the modules sharing level 2 swap


def test_autoencoders_apply_in_composition_order(trained) -> None:
    _, network = trained
    calls: list[str] = []
    forward = imgspace(
        {"Contrast": Probe("CO", calls), "Swirl": Probe("SW", calls), "Invert": Probe("IN", calls)}, network
    )
    forward(torch.zeros(1, 1, 28, 28), ("Invert", "Contrast", "Swirl"))
    assert calls == ["IN", "CO", "SW"]


def test_channels_last_fp32_equals_the_default_path_and_bf16_stays_close(trained) -> None:
    data, network = trained
    compositions = paper_compositions()[:20]
    default = evaluate(monolithic(network), data, compositions, batch_size=64, seed=1).rows
    nhwc_precision = Precision(channels_last=True)
    nhwc_network = nhwc_precision.prepare(copy.deepcopy(network))
    nhwc = evaluate(
        monolithic(nhwc_network), data, compositions, batch_size=64, seed=1, precision=nhwc_precision
    ).rows
    assert [r["accuracy"] for r in nhwc] == [r["accuracy"] for r in default]
    assert [r["loss"] for r in nhwc] == pytest.approx([r["loss"] for r in default], rel=1e-5)
    bf16 = evaluate(
        monolithic(network), data, compositions, batch_size=64, seed=1, precision=Precision(bf16=True)
    ).rows
    assert np.mean([r["accuracy"] for r in bf16]) == pytest.approx(
        np.mean([r["accuracy"] for r in default]), abs=5
    )
    assert all(np.isfinite(r["loss"]) for r in bf16)
