"""Fidelity metrics: a student that is its teacher agrees 100% with KL 0 on every condition; hand-made logits give
the exact accuracy, agreement, cross-entropy and KL; the result does not depend on the batch size."""

from __future__ import annotations

import math

import pytest
import torch

from comprobust.distill.metrics import FidelityAccumulator, fidelity, fidelity_by_condition, summaries


def batches(images: torch.Tensor, labels: torch.Tensor, size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(images[i : i + size], labels[i : i + size]) for i in range(0, len(images), size)]


def test_a_student_that_is_its_teacher_agrees_fully_on_every_condition() -> None:
    torch.manual_seed(0)
    teacher = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 10), torch.nn.BatchNorm1d(10))
    teacher.train()
    conditions = {
        name: batches(torch.randn(37, 3, 4) * (k + 1), torch.randint(0, 10, (37,)), 8)
        for k, name in enumerate(["I", "A", "B", "AB", "IB", "IA", "IAB"])
    }
    results = fidelity_by_condition(teacher, teacher, conditions)
    assert [r.condition for r in results] == list(conditions)
    for result in results:
        assert result.images == 37
        assert result.ts_agree == 100.0
        assert abs(result.ts_kl) <= 1e-6
        assert result.accuracy == result.teacher_accuracy
    assert teacher.training  # the mode is restored
    keys = summaries(results)
    assert keys["agree/IAB"] == 100.0 and keys["agree/mean"] == 100.0 and abs(keys["kl/mean"]) <= 1e-6


def test_metrics_equal_a_hand_computation_on_every_image() -> None:
    student = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, 2, 1])

    def softmax(row: list[float]) -> list[float]:
        z = sum(math.exp(v) for v in row)
        return [math.exp(v) / z for v in row]

    kl = ce = 0.0
    for s_row, t_row, y in zip(student.tolist(), teacher.tolist(), labels.tolist()):
        ps, pt = softmax(s_row), softmax(t_row)
        kl += sum(q * (math.log(q) - math.log(p)) for p, q in zip(ps, pt))
        ce -= math.log(ps[y])
    accumulator = FidelityAccumulator()
    accumulator.update(student, teacher, labels)
    result = accumulator.result("IAB")
    assert result.accuracy == pytest.approx(100 / 3)  # only image 0
    assert result.teacher_accuracy == pytest.approx(200 / 3)  # images 0 and 1
    assert result.ts_agree == pytest.approx(200 / 3)  # images 0 and 2
    assert result.ts_kl == pytest.approx(kl / 3, rel=1e-12)
    assert result.loss == pytest.approx(ce / 3, rel=1e-12)
    assert result.summary()["kl/IAB"] == result.ts_kl


def test_the_result_does_not_depend_on_the_batch_size() -> None:
    torch.manual_seed(1)
    student, teacher = torch.nn.Linear(5, 4).double(), torch.nn.Linear(5, 4).double()
    images, labels = torch.randn(50, 5, dtype=torch.float64), torch.randint(0, 4, (50,))
    one = fidelity(student, teacher, batches(images, labels, 50), "I")
    many = fidelity(student, teacher, batches(images, labels, 7), "I")
    assert one.images == many.images == 50
    for field in ("accuracy", "teacher_accuracy", "ts_agree"):
        assert getattr(one, field) == getattr(many, field)
    assert one.ts_kl == pytest.approx(many.ts_kl, rel=1e-12) and one.ts_kl > 0
    assert one.loss == pytest.approx(many.loss, rel=1e-12)
    with pytest.raises(ValueError, match="no test images"):
        fidelity(student, teacher, [], "I")
