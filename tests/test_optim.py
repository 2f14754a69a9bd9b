"""Warmup + cosine schedule values, the optimiser factory, and a bit-identical AdamW resume."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from comprobust.models import build_network
from comprobust.optim import build_optimizer, decay_groups, warmup_cosine, warmup_cosine_scheduler


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_warmup_then_cosine_values() -> None:
    assert [warmup_cosine(e, 1, 4) for e in range(4)] == pytest.approx([0.5, 1.0, 0.75, 0.25], abs=1e-12)
    assert [warmup_cosine(e, 3, 5) for e in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 0.5, 0.0])
    assert warmup_cosine(9, 1, 4) == 0.0  # past the end the rate stays at zero


def test_scheduler_sets_lr_times_the_factor_each_epoch() -> None:
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1e-3)
    scheduler = warmup_cosine_scheduler(optimizer, warmup=1, total=4)
    lrs = []
    for _ in range(4):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([5e-4, 1e-3, 7.5e-4, 2.5e-4], rel=1e-12)


def test_without_warmup_it_is_the_training_loops_cosine_annealing() -> None:
    ours = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.05)
    theirs = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.05)
    schedules = (
        warmup_cosine_scheduler(ours, 0, 7),
        torch.optim.lr_scheduler.CosineAnnealingLR(theirs, T_max=7),
    )
    for _ in range(7):
        assert ours.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
        for optimizer, scheduler in zip((ours, theirs), schedules):
            optimizer.step()
            scheduler.step()


@pytest.mark.parametrize("warmup,total", [(-1, 4), (4, 4), (0, 0)])
def test_impossible_schedules_are_refused(warmup: int, total: int) -> None:
    with pytest.raises(ValueError, match="warmup must be in 0..total-1"):
        warmup_cosine_scheduler(torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1), warmup, total)


def test_adamw_exempts_biases_norms_and_tokens_from_decay() -> None:
    net = build_network("vit-cpu", 10, in_channels=1)
    decay, no_decay = decay_groups(net.named_parameters(), 0.05)
    names = {id(p): n for n, p in net.named_parameters()}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decay["params"])
    exempt = {names[id(p)] for p in no_decay["params"]}
    assert {
        "blocks.0.class_token",
        "blocks.0.pos_embedding",
        "blocks.0.proj.bias",
        "blocks.1.ln_1.weight",
    } <= exempt
    assert "blocks.0.proj.weight" not in exempt
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(net.parameters()))
    optimizer = build_optimizer("adamw", net.named_parameters(), lr=1e-3, weight_decay=0.05)
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["betas"] == (0.9, 0.999)
    sgd = build_optimizer("sgd", net.named_parameters(), lr=0.1, weight_decay=5e-4)
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["weight_decay"] == 5e-4
    with pytest.raises(ValueError, match="unknown optimizer 'adam'"):
        build_optimizer("adam", net.named_parameters(), lr=1e-3, weight_decay=0.0)


def _run(epochs: range, state: bytes | None) -> tuple[dict[str, torch.Tensor], bytes, list[float]]:
    """Train a tiny ViT for `epochs` (2 AdamW steps each), starting from a checkpoint `state` when given."""
    torch.manual_seed(0)
    net = build_network("vit-cpu", 4, in_channels=1, image_size=8)
    optimizer = build_optimizer("adamw", net.named_parameters(), lr=3e-3, weight_decay=0.05)
    scheduler = warmup_cosine_scheduler(optimizer, warmup=2, total=6)
    if state is not None:
        checkpoint = torch.load(io.BytesIO(state))
        net.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
    lrs = []
    for epoch in epochs:
        generator = torch.Generator().manual_seed(epoch)
        for _ in range(2):
            x, y = (
                torch.randn(8, 1, 8, 8, generator=generator),
                torch.randint(0, 4, (8,), generator=generator),
            )
            optimizer.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            optimizer.step()
        lrs.append(optimizer.param_groups[0]["lr"])
        scheduler.step()
    buffer = io.BytesIO()
    torch.save(
        {"model": net.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
        buffer,
    )
    return net.state_dict(), buffer.getvalue(), lrs


def test_adamw_with_warmup_resumes_bit_identically_from_a_checkpoint() -> None:
    straight, _, straight_lrs = _run(range(6), None)
    _, checkpoint, first_lrs = _run(range(3), None)
    resumed, _, later_lrs = _run(range(3, 6), checkpoint)
    assert first_lrs + later_lrs == straight_lrs
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    fresh, _, _ = _run(range(3, 6), None)  # the same epochs without the checkpoint end elsewhere
    assert not all(torch.equal(straight[k], fresh[k]) for k in straight)
