"""Teacher-student fidelity per test condition, over every test image (the reference used 50 batches and an
off-by-one denominator).

For each condition (a cue condition such as `IAB`, or a composition such as `Contrast-Rotate90`):

- `accuracy`, `teacher_accuracy`: 100 * the fraction of images whose argmax is the label;
- `loss`: the student's mean cross-entropy;
- `ts_kl`: mean over images of KL(teacher || student) = sum_c p^t_c (log p^t_c - log p^s_c), at T = 1;
- `ts_agree`: 100 * the fraction of images on which the two argmaxes agree (top-1 fidelity).

Sums are kept in float64 per image, so the result never depends on the batch size.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]  # (images, labels) as a loader yields them


@dataclasses.dataclass(frozen=True)
class Fidelity:
    """One condition's metrics (see the module docstring); `images` is how many were scored."""

    condition: str
    images: int
    accuracy: float
    teacher_accuracy: float
    loss: float
    ts_kl: float
    ts_agree: float

    def row(self) -> dict[str, float | int | str]:
        """A `conditions` table row."""
        return dataclasses.asdict(self)

    def summary(self) -> dict[str, float]:
        """W&B summary keys: `acc/<cond>`, `teacher_acc/<cond>`, `loss/<cond>`, `kl/<cond>`, `agree/<cond>`."""
        c = self.condition
        return {
            f"acc/{c}": self.accuracy,
            f"teacher_acc/{c}": self.teacher_accuracy,
            f"loss/{c}": self.loss,
            f"kl/{c}": self.ts_kl,
            f"agree/{c}": self.ts_agree,
        }


class FidelityAccumulator:
    """Sums per-image quantities over batches of logits; `result(condition)` gives the means."""

    def __init__(self) -> None:
        self.images = 0
        self.correct = 0
        self.teacher_correct = 0
        self.agree = 0
        self.loss = 0.0
        self.kl = 0.0

    def update(
        self, student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor
    ) -> None:
        """Add one batch: (B, C) logits of each model and (B,) integer labels."""
        if student_logits.shape != teacher_logits.shape or len(labels) != len(student_logits):
            raise ValueError(
                f"student {tuple(student_logits.shape)}, teacher {tuple(teacher_logits.shape)} and "
                f"{len(labels)} labels do not match"
            )
        s = student_logits.detach().to(torch.float64)
        t = teacher_logits.detach().to(torch.float64)
        labels = labels.to(s.device)
        log_ps, log_pt = F.log_softmax(s, dim=1), F.log_softmax(t, dim=1)
        student_top, teacher_top = s.argmax(dim=1), t.argmax(dim=1)
        self.images += len(labels)
        self.correct += int((student_top == labels).sum())
        self.teacher_correct += int((teacher_top == labels).sum())
        self.agree += int((student_top == teacher_top).sum())
        self.loss += float(F.nll_loss(log_ps, labels, reduction="sum"))
        self.kl += float(F.kl_div(log_ps, log_pt, reduction="sum", log_target=True))

    def result(self, condition: str) -> Fidelity:
        if not self.images:
            raise ValueError(f"condition {condition!r}: no test images were scored")
        n = self.images
        return Fidelity(
            condition=condition,
            images=n,
            accuracy=100.0 * self.correct / n,
            teacher_accuracy=100.0 * self.teacher_correct / n,
            loss=self.loss / n,
            ts_kl=self.kl / n,
            ts_agree=100.0 * self.agree / n,
        )


def fidelity(
    student: Callable[[torch.Tensor], torch.Tensor],
    teacher: Callable[[torch.Tensor], torch.Tensor],
    batches: Batches,
    condition: str,
    device: torch.device | str = "cpu",
) -> Fidelity:
    """One condition's metrics over every batch of `batches`, both models in eval mode and without gradients
    (their training mode is restored afterwards)."""
    modes = [(m, m.training) for m in (student, teacher) if isinstance(m, torch.nn.Module)]
    for module, _ in modes:
        module.eval()
    accumulator = FidelityAccumulator()
    try:
        with torch.no_grad():
            for images, labels in batches:
                images, labels = images.to(device), labels.to(device)
                accumulator.update(student(images), teacher(images), labels)
    finally:
        for module, training in modes:
            module.train(training)
    return accumulator.result(condition)


def fidelity_by_condition(
    student: Callable[[torch.Tensor], torch.Tensor],
    teacher: Callable[[torch.Tensor], torch.Tensor],
    conditions: Mapping[str, Batches],
    device: torch.device | str = "cpu",
) -> list[Fidelity]:
    """`fidelity` for each condition, in the mapping's order (one loader per test condition)."""
    return [fidelity(student, teacher, batches, name, device) for name, batches in conditions.items()]


def summaries(results: Iterable[Fidelity]) -> dict[str, float]:
    """Every condition's summary keys plus their means over conditions: `acc/mean`, `kl/mean`, `agree/mean`,
    `teacher_acc/mean`."""
    results = list(results)
    out: dict[str, float] = {}
    for result in results:
        out.update(result.summary())
    if results:
        for key, attribute in (
            ("acc", "accuracy"),
            ("teacher_acc", "teacher_accuracy"),
            ("kl", "ts_kl"),
            ("agree", "ts_agree"),
        ):
            out[f"{key}/mean"] = sum(getattr(r, attribute) for r in results) / len(results)
    return out
