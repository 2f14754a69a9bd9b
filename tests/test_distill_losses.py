"""The distillation losses against float64 hand computations: kd, Jacobian matching on linear models (whose
Jacobian is the weight matrix), including the top-k path and the reference's scatter bug, and the CRD term on a
4-sample batch in both pair modes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from comprobust.distill import losses
from comprobust.distill.names import check_loss
from comprobust.errors import UserError


def hand_kd(s: np.ndarray, t: np.ndarray, temperature: float) -> float:
    total = 0.0
    for row_s, row_t in zip(s, t):
        zs = sum(math.exp(v / temperature) for v in row_s)
        zt = sum(math.exp(v / temperature) for v in row_t)
        for vs, vt in zip(row_s, row_t):
            ps, pt = math.exp(vs / temperature) / zs, math.exp(vt / temperature) / zt
            total += pt * (math.log(pt) - math.log(ps))
    return total / len(s)


def logits_pair(seed: int, batch: int = 3, classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    return (
        torch.tensor(rng.normal(0, 20, (batch, classes))),
        torch.tensor(rng.normal(0, 20, (batch, classes))),
    )


@pytest.mark.parametrize("temperature", [30.0, 1.0, 4.0])
def test_kd_equals_the_hand_computation(temperature: float) -> None:
    s, t = logits_pair(0)
    expected = hand_kd(s.numpy(), t.numpy(), temperature)
    assert expected > 0
    assert losses.kd(s, t, temperature).item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert losses.kd(s, t, temperature, t2=True).item() == pytest.approx(expected * temperature**2, rel=1e-9)
    # float32 inputs: still within 1e-6 of the float64 value (relative to its size)
    assert losses.kd(s.float(), t.float(), temperature).item() == pytest.approx(expected, rel=1e-5, abs=1e-6)


def test_kd_default_temperature_is_30_and_zero_when_student_is_teacher() -> None:
    s, t = logits_pair(1)
    assert losses.kd(s, t).item() == pytest.approx(hand_kd(s.numpy(), t.numpy(), 30.0), rel=1e-9)
    assert losses.kd(t.clone(), t).item() == pytest.approx(0.0, abs=1e-12)


def test_kd_mse_divergence() -> None:
    s, t = logits_pair(2)
    ps, pt = torch.softmax(s / 30, 1).numpy(), torch.softmax(t / 30, 1).numpy()
    expected = float(((ps - pt) ** 2).mean())
    assert losses.kd(s, t, divergence="mse").item() == pytest.approx(expected, rel=1e-9)
    with pytest.raises(UserError, match="unknown kd divergence 'kll'.*'kl'"):
        losses.kd(s, t, divergence="kll")


def test_kd_teacher_is_detached() -> None:
    s, t = logits_pair(3)
    s.requires_grad_(True)
    t.requires_grad_(True)
    losses.kd(s, t).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


def linear(weight: np.ndarray, bias: np.ndarray | None = None, trainable: bool = True) -> torch.nn.Linear:
    layer = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None).double()
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(weight))
        if bias is not None:
            layer.bias.copy_(torch.tensor(bias))
    layer.requires_grad_(trainable)
    return layer


def run_jacobian(
    student: torch.nn.Module, teacher: torch.nn.Module, x: np.ndarray, **options: object
) -> torch.Tensor:
    inputs = torch.tensor(x).requires_grad_(True)
    flat = inputs.reshape(len(inputs), -1)
    return losses.jacobian_term(student(flat), teacher(flat), inputs, **options)  # type: ignore[arg-type]


def frobenius_unit(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix)


def test_jacobian_on_linear_models_is_the_distance_of_the_unit_weight_matrices() -> None:
    rng = np.random.default_rng(4)
    w_t, w_s = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    x = rng.normal(size=(3, 1, 2, 3))  # the Jacobian is over the (1, 2, 3) input, flattened
    expected = np.linalg.norm(frobenius_unit(w_t) - frobenius_unit(w_s))
    value = run_jacobian(linear(w_s), linear(w_t, trainable=False), x)
    assert value.item() == pytest.approx(expected, rel=1e-10)
    assert run_jacobian(linear(3 * w_t), linear(w_t), x).item() == pytest.approx(0.0, abs=1e-12)
    # the combined loss: (1 - alpha) kd + alpha L_Jac with alpha = 0.15 and T = 30 by default
    inputs = torch.tensor(x).requires_grad_(True)
    flat = inputs.reshape(3, -1)
    s, t = linear(w_s)(flat), linear(w_t)(flat)
    parts = losses.jacobian(s, t, inputs)
    kd = hand_kd(s.detach().numpy(), t.detach().numpy(), 30.0)
    assert parts.kd.item() == pytest.approx(kd, rel=1e-9)
    assert parts.aux.item() == pytest.approx(expected, rel=1e-10)
    assert parts.total.item() == pytest.approx(0.85 * kd + 0.15 * expected, rel=1e-10)


def topk_expected(w_s: np.ndarray, w_t: np.ndarray, teacher_logits: np.ndarray, k: int, union: bool) -> float:
    """Per sample: the rows of the teacher's top-k classes (or, with `union`, of every sample's top-k, which is
    what the reference's scatter writes for a linear model), the rest zero, one norm over the whole matrix."""
    tops = [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in teacher_logits]
    everything = set().union(*tops)
    total = 0.0
    for top in tops:
        keep = np.zeros(len(w_t), bool)
        keep[sorted(everything if union else top)] = True
        j_t, j_s = w_t * keep[:, None], w_s * keep[:, None]
        total += np.linalg.norm(frobenius_unit(j_t) - frobenius_unit(j_s))
    return total / len(teacher_logits)


def test_jacobian_topk_keeps_each_samples_own_rows_and_ignores_the_others() -> None:
    rng = np.random.default_rng(5)
    classes, k = 30, 20
    w_t, w_s, bias = rng.normal(size=(classes, 4)), rng.normal(size=(classes, 4)), rng.normal(size=classes)
    x = rng.normal(size=(2, 4))
    teacher = linear(w_t, bias, trainable=False)
    logits = teacher(torch.tensor(x)).detach().numpy()
    tops = [set(np.argsort(-row)[:k].tolist()) for row in logits]
    assert tops[0] != tops[1]  # the case the reference gets wrong
    fixed = run_jacobian(linear(w_s), teacher, x)
    assert fixed.item() == pytest.approx(topk_expected(w_s, w_t, logits, k, union=False), rel=1e-10)
    # rows outside every top-20 leave the loss unchanged
    outside = sorted(set(range(classes)) - tops[0] - tops[1])
    assert outside
    w_moved = w_s.copy()
    w_moved[outside] += 100 * rng.normal(size=(len(outside), 4))
    assert run_jacobian(linear(w_moved), teacher, x).item() == pytest.approx(fixed.item(), rel=1e-12)
    # each sample's term depends on its own top-k only: the batch loss is the mean of the single-sample losses
    singles = [run_jacobian(linear(w_s), teacher, x[i : i + 1]).item() for i in range(2)]
    assert fixed.item() == pytest.approx(np.mean(singles), rel=1e-12)
    # a row in sample 1's top-20 only does not change sample 0's term
    only_1 = sorted(tops[1] - tops[0])[0]
    w_moved = w_s.copy()
    w_moved[only_1] += 10.0
    assert run_jacobian(linear(w_moved), teacher, x[:1]).item() == pytest.approx(singles[0], rel=1e-12)


def test_the_references_topk_scatter_bug_is_reproducible() -> None:
    rng = np.random.default_rng(5)
    w_t, w_s, bias = rng.normal(size=(30, 4)), rng.normal(size=(30, 4)), rng.normal(size=30)
    x = rng.normal(size=(2, 4))
    teacher = linear(w_t, bias, trainable=False)
    logits = teacher(torch.tensor(x)).detach().numpy()
    buggy = run_jacobian(linear(w_s), teacher, x, reference_topk_scatter=True).item()
    assert buggy == pytest.approx(topk_expected(w_s, w_t, logits, 20, union=True), rel=1e-10)
    assert buggy != pytest.approx(topk_expected(w_s, w_t, logits, 20, union=False), rel=1e-6)
    # with C <= k the option changes nothing (the reference uses its exact path there)
    small_t, small_s = linear(w_t[:10], bias[:10]), linear(w_s[:10])
    assert run_jacobian(small_s, small_t, x, reference_topk_scatter=True).item() == pytest.approx(
        run_jacobian(small_s, small_t, x).item(), rel=1e-12
    )


def test_jacobian_gradients_reach_the_student_only_and_are_exact() -> None:
    rng = np.random.default_rng(6)
    w_t, w_s = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
    x = rng.normal(size=(3, 6))
    teacher = linear(w_t)  # trainable on purpose: the loss must not reach it anyway
    student = linear(w_s)
    run_jacobian(student, teacher, x).backward()
    assert teacher.weight.grad is None
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0
    # the gradient of ||A - W/||W|| ||_F w.r.t. W, by hand: -(I - u u^T)(A - u) / ||W|| with u = W/||W||
    a, norm = frobenius_unit(w_t).ravel(), np.linalg.norm(w_s)
    u = w_s.ravel() / norm
    diff = a - u
    grad = -(diff - u * (u @ diff)) / norm / np.linalg.norm(diff)
    np.testing.assert_allclose(student.weight.grad.numpy().ravel(), grad, rtol=1e-9, atol=1e-12)
    # the reference's teacher graph: same value, but now the teacher gets gradients
    teacher.zero_grad()
    value = run_jacobian(linear(w_s), teacher, x, teacher_create_graph=True)
    assert value.item() == pytest.approx(run_jacobian(linear(w_s), teacher, x).item(), rel=1e-12)
    value.backward()
    assert teacher.weight.grad is not None


def test_jacobian_of_a_zero_map_is_zero_not_nan() -> None:
    x = np.ones((2, 3))
    value = run_jacobian(linear(np.zeros((4, 3))), linear(np.ones((4, 3))), x)
    assert value.item() == pytest.approx(1.0)  # ||u_t - 0|| = 1
    inputs = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        frozen = linear(np.ones((4, 3)))(inputs)
    with pytest.raises(ValueError, match="the teacher's logits carry no graph"):
        losses.jacobian_term(linear(np.ones((4, 3)))(inputs), frozen, inputs)
    with pytest.raises(ValueError, match="requires_grad"):
        inputs = torch.ones(2, 3, dtype=torch.float64)
        losses.jacobian_term(linear(np.ones((4, 3)))(inputs), linear(np.ones((4, 3)))(inputs), inputs)


def hand_crd(
    z_s: np.ndarray, z_t: np.ndarray, labels: list[int], pairs: str, tau: float, eps: float
) -> float:
    n = len(labels)
    z_s = z_s / np.linalg.norm(z_s, axis=1, keepdims=True)
    z_t = z_t / np.linalg.norm(z_t, axis=1, keepdims=True)
    total = 0.0
    for i in range(n):
        for j in range(n):
            p = math.exp(float(sum(z_s[i, d] * z_t[j, d] for d in range(z_s.shape[1]))) / tau)
            if pairs == "class":
                positive, negative = (i != j and labels[i] == labels[j]), labels[i] != labels[j]
            else:
                positive, negative = i == j, i != j
            if positive:
                total += math.log(p / (p + eps))
            elif negative:
                total += math.log(eps / (p + eps))
    return -total / n


@pytest.mark.parametrize("pairs", ["class", "instance"])
@pytest.mark.parametrize(("tau", "eps"), [(0.1, 0.97), (0.5, 0.3)])
def test_crd_on_a_4_sample_batch_equals_the_double_loop(pairs: str, tau: float, eps: float) -> None:
    rng = np.random.default_rng(7)
    z_s, z_t = rng.normal(size=(4, 8)), rng.normal(size=(4, 8))
    labels = [0, 0, 1, 1]
    value = losses.crd_term(
        torch.tensor(z_s), torch.tensor(z_t), torch.tensor(labels), pairs=pairs, tau=tau, eps=eps
    )
    assert value.item() == pytest.approx(hand_crd(z_s, z_t, labels, pairs, tau, eps), rel=1e-10)
    # float32: the log-space form stays finite and close even where exp(s / tau) is large
    value32 = losses.crd_term(
        torch.tensor(z_s).float(),
        torch.tensor(z_t).float(),
        torch.tensor(labels),
        pairs=pairs,
        tau=tau,
        eps=eps,
    )
    assert value32.item() == pytest.approx(value.item(), rel=1e-5)


def test_crd_pair_modes_differ_and_defaults_are_the_references() -> None:
    rng = np.random.default_rng(8)
    z_s, z_t = rng.normal(size=(4, 8)), rng.normal(size=(4, 8))
    labels = torch.tensor([0, 0, 1, 1])
    default = losses.crd_term(torch.tensor(z_s), torch.tensor(z_t), labels).item()
    assert default == pytest.approx(hand_crd(z_s, z_t, [0, 0, 1, 1], "class", 0.1, 0.97), rel=1e-10)
    instance = losses.crd_term(torch.tensor(z_s), torch.tensor(z_t), labels, pairs="instance").item()
    assert instance != pytest.approx(default, rel=1e-3)
    with pytest.raises(UserError, match="unknown contrastive pair mode 'instanse'.*'instance'"):
        losses.crd_term(torch.tensor(z_s), torch.tensor(z_t), labels, pairs="instanse")


def test_contrastive_combines_kd_and_crd_through_the_heads() -> None:
    torch.manual_seed(0)
    heads = losses.CRDHeads(6, 5, dim=8).double()
    f_s, f_t = torch.randn(4, 2, 3, dtype=torch.float64), torch.randn(4, 5, dtype=torch.float64)
    s, t = logits_pair(9, batch=4, classes=3)
    labels = torch.tensor([0, 0, 1, 1])
    parts = losses.contrastive(s, t, f_s, f_t, labels, heads)
    with torch.no_grad():
        z_s = heads.student(f_s.reshape(4, -1)).numpy()
        z_t = heads.teacher(f_t).numpy()
    crd = hand_crd(z_s, z_t, [0, 0, 1, 1], "class", 0.1, 0.97)
    kd = hand_kd(s.numpy(), t.numpy(), 30.0)
    assert parts.aux.item() == pytest.approx(crd, rel=1e-10)
    assert parts.total.item() == pytest.approx(0.97 * kd + 0.03 * crd, rel=1e-10)
    parts.total.backward()
    assert heads.student.weight.grad is not None and heads.teacher.weight.grad is not None


def test_fresh_heads_are_reproducible_per_seed_and_step() -> None:
    a = losses.fresh_heads(6, 5, seed=0, step=3)
    b = losses.fresh_heads(6, 5, seed=0, step=3)
    c = losses.fresh_heads(6, 5, seed=0, step=4)
    for name, param in a.state_dict().items():
        assert torch.equal(param, b.state_dict()[name])
        assert not torch.equal(param, c.state_dict()[name])
    bound = 1 / math.sqrt(6)
    assert a.student.weight.abs().max() <= bound and a.student.weight.shape == (128, 6)
    assert not any(p.requires_grad for p in a.parameters())


def test_loss_names_are_checked_with_a_suggestion() -> None:
    assert check_loss("jacobian") == "jacobian"
    with pytest.raises(
        UserError,
        match=r"^unknown loss 'jacobain' \(did you mean 'jacobian'\?\); choose one of kd, jacobian, contrastive$",
    ):
        check_loss("jacobain")
