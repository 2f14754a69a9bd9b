"""`distill`: a fresh student of the stage's architecture distilled from one frozen teacher run
(`ctx.inputs["teacher"]`, exactly one export) on the transfer set: on a cue dataset the condition `mechanisms` of
the train split; on a corruption dataset its clean (Identity) train images, the student then being evaluated on
the compositions like any classifier (`{classifier: <distill stage>}`).

Losses (`comprobust.distill.losses`; `loss` is kd, jacobian or contrastive, `alpha` None takes the loss's default
from `comprobust.distill.names.DEFAULTS`):

- `kd`: KL(teacher || student) at temperature `temperature` (times T^2 with `kd_t2`; `kd_divergence: mse`);
- `jacobian`: (1 - alpha) kd + alpha L_Jac over the teacher's `top_k` logit rows. The inputs carry
  requires_grad and the teacher runs with grad enabled (its parameters are frozen with requires_grad_(False));
- `contrastive`: (1 - alpha) kd + alpha L_CRD on the penultimate features, with `crd_heads: trained` heads that
  live in the task's model next to the student (`ModuleDict(student=..., heads=...)`: optimised, checkpointed and
  resumed with it) or `fresh` untrained heads drawn per (seed, epoch, batch), as the reference's v2.

The teacher stays in eval mode, outside the task's model. Per epoch: `train_kd`, `train_aux`, `train_acc`, and on
the valid split under the transfer condition `val_loss` (the distillation loss, which selects the best epoch),
`val_kd`, `val_aux`, `val_acc`, `val_ts_agree` and `val_ts_kl` (KL(teacher || student) at T = 1), and
`cf/<condition>/{acc,ts_agree,ts_kl}` on the first 2 valid batches of every test condition. After training,
`fidelity_table` on the test split under every condition of `conditions` (`comprobust.distill.evaluate`):
the `conditions` table and `acc|teacher_acc|loss|kl|agree/<condition>` plus their `/mean` in the export's meta.
Only the student is exported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from comprobust.data.cues import Condition
from comprobust.data.dataset import CueDataset
from comprobust.distill import losses
from comprobust.distill.evaluate import FIDELITY_COLUMNS, fidelity_table
from comprobust.distill.metrics import FidelityAccumulator
from comprobust.distill.names import DEFAULTS, DIVERGENCES, HEAD_MODES, PAIR_MODES, check_choice, check_loss
from comprobust.errors import UserError
from comprobust.methods.common import Export, StageContext, accuracy_tensor, cue_data, mean_metrics
from comprobust.methods.supervised import cf_sources, param, training_condition
from comprobust.models.blocks import BlockNetwork
from comprobust.training import StepMetrics

CONDITION_COLUMNS = FIDELITY_COLUMNS
STEPS_PER_EPOCH = 1_000_000  # fresh CRD heads are drawn per (seed, epoch * this + batch)


def loss_settings(ctx: StageContext) -> dict[str, Any]:
    """The run's loss and its settings, checked; `alpha` None resolved to the loss's default (0 for kd)."""
    loss = check_loss(param(ctx, "loss"))
    alpha = param(ctx, "alpha")
    if alpha is None:
        alpha = DEFAULTS[loss].get("alpha", 0.0)
    settings: dict[str, Any] = {
        "loss": loss,
        "alpha": float(alpha),
        "temperature": float(param(ctx, "temperature")),
        "top_k": int(param(ctx, "top_k")),
        "kd_t2": bool(param(ctx, "kd_t2")),
        "kd_divergence": check_choice("kd divergence", param(ctx, "kd_divergence"), DIVERGENCES),
        "contrast_temperature": float(param(ctx, "contrast_temperature")),
        "contrast_eps": float(param(ctx, "contrast_eps")),
        "crd_pairs": check_choice("contrastive pair mode", param(ctx, "crd_pairs"), PAIR_MODES),
        "crd_heads": check_choice("CRD head mode", param(ctx, "crd_heads"), HEAD_MODES),
        "crd_dim": int(param(ctx, "crd_dim")),
    }
    if not 0.0 <= settings["alpha"] <= 1.0:
        raise UserError(f"stage {ctx.stage}: alpha must be in [0, 1], got {settings['alpha']}")
    if settings["temperature"] <= 0 or settings["contrast_temperature"] <= 0 or settings["contrast_eps"] <= 0:
        raise UserError(
            f"stage {ctx.stage}: temperature, contrast_temperature and contrast_eps must be positive"
        )
    if settings["top_k"] < 1 or settings["crd_dim"] < 1:
        raise UserError(f"stage {ctx.stage}: top_k and crd_dim must be at least 1")
    return settings


def the_teacher(ctx: StageContext) -> BlockNetwork:
    """The one teacher export as a frozen, eval-mode network that fits the dataset."""
    exports = ctx.inputs.get("teacher", [])
    if len(exports) != 1:
        raise UserError(
            f"stage {ctx.stage}: a distill run reads exactly one teacher run, got {len(exports)} "
            "(the planner gives each student one teacher: `each`)"
        )
    teacher = exports[0].build_network(ctx.device)
    spec = ctx.data.spec
    if teacher.num_classes != spec.num_classes or teacher.input_shape != spec.image_shape:
        raise UserError(
            f"stage {ctx.stage}: the teacher {exports[0].path} takes {teacher.input_shape} images with "
            f"{teacher.num_classes} classes, but {spec.name} has {spec.image_shape} and {spec.num_classes}"
        )
    return teacher


class DistillTask:
    """One student distilled from a frozen teacher (see the module docstring); `model` holds what is trained."""

    def __init__(
        self,
        student: BlockNetwork,
        teacher: BlockNetwork,
        settings: Mapping[str, Any],
        train_batches: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]],
        valid_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
        device: torch.device,
        heads_seed: int,
        cf: Mapping[str, Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]] | None = None,
    ) -> None:
        self.student, self.teacher, self.settings, self.device = student, teacher, dict(settings), device
        self._train, self._valid, self.heads_seed = train_batches, valid_batches, heads_seed
        self.cf = dict(cf or {})
        parts: dict[str, nn.Module] = {"student": student}
        self.fresh = settings["loss"] == "contrastive" and settings["crd_heads"] == "fresh"
        if settings["loss"] == "contrastive" and not self.fresh:
            parts["heads"] = losses.CRDHeads(
                student.feature_dim, teacher.feature_dim, settings["crd_dim"]
            ).to(device)
        self.model = nn.ModuleDict(parts)
        self.epoch, self.step = 0, 0

    def train_batches(self, epoch: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        self.epoch, self.step = epoch, 0
        return self._train(epoch)

    def _heads(self, seed_step: int) -> losses.CRDHeads:
        if not self.fresh:
            heads = self.model["heads"]
            assert isinstance(heads, losses.CRDHeads)
            return heads
        return losses.fresh_heads(
            self.student.feature_dim,
            self.teacher.feature_dim,
            seed=self.heads_seed,
            step=seed_step,
            dim=self.settings["crd_dim"],
            device=self.device,
        )

    def losses(
        self, x: torch.Tensor, y: torch.Tensor, seed_step: int
    ) -> tuple[losses.LossParts, torch.Tensor, torch.Tensor]:
        """(the loss and its terms, student logits, teacher logits) of one batch."""
        s = self.settings
        kd_args = {"temperature": s["temperature"], "t2": s["kd_t2"], "divergence": s["kd_divergence"]}
        if s["loss"] == "jacobian":
            with torch.enable_grad():  # validation runs under no_grad; the Jacobians need a graph
                x = x.detach().requires_grad_(True)
                student_logits, teacher_logits = self.student(x), self.teacher(x)
                parts = losses.jacobian(
                    student_logits, teacher_logits, x, alpha=s["alpha"], top_k=s["top_k"], **kd_args
                )
            return parts, student_logits, teacher_logits.detach()
        if s["loss"] == "contrastive":
            student_logits, student_features = self.student.forward_features(x)
            with torch.no_grad():
                teacher_logits, teacher_features = self.teacher.forward_features(x)
            parts = losses.contrastive(
                student_logits,
                teacher_logits,
                student_features,
                teacher_features,
                y,
                self._heads(seed_step),
                alpha=s["alpha"],
                pairs=s["crd_pairs"],
                tau=s["contrast_temperature"],
                eps=s["contrast_eps"],
                **kd_args,
            )
            return parts, student_logits, teacher_logits
        student_logits = self.student(x)
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        value = losses.kd(student_logits, teacher_logits, **kd_args)
        return losses.LossParts(value, value, value.new_zeros(())), student_logits, teacher_logits

    def train_step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, StepMetrics]:
        x, y = (t.to(self.device) for t in batch)
        parts, student_logits, _ = self.losses(x, y, self.epoch * STEPS_PER_EPOCH + self.step)
        self.step += 1
        return parts.total, {
            "train_acc": accuracy_tensor(student_logits.detach(), y),
            "train_kd": parts.kd.detach(),
            "train_aux": parts.aux.detach(),
        }

    def validate(self) -> dict[str, float]:
        fidelity = FidelityAccumulator()

        def scored() -> Iterator[tuple[dict[str, float], int]]:
            for i, (x, y) in enumerate(self._valid()):
                x, y = x.to(self.device), y.to(self.device)
                parts, student_logits, teacher_logits = self.losses(x, y, -1 - i)
                fidelity.update(student_logits, teacher_logits, y)
                yield (
                    {
                        "val_loss": float(parts.total.detach()),
                        "val_kd": float(parts.kd.detach()),
                        "val_aux": float(parts.aux.detach()),
                    },
                    len(y),
                )

        metrics = mean_metrics(scored())
        result = fidelity.result("valid")
        metrics.update(val_acc=result.accuracy, val_ts_agree=result.ts_agree, val_ts_kl=result.ts_kl)
        for name, batches in self.cf.items():
            cf = FidelityAccumulator()
            with torch.no_grad():
                for x, y in batches():
                    x, y = x.to(self.device), y.to(self.device)
                    cf.update(self.student(x), self.teacher(x), y)
            result = cf.result(name)
            metrics.update(
                {
                    f"cf/{name}/acc": result.accuracy,
                    f"cf/{name}/ts_agree": result.ts_agree,
                    f"cf/{name}/ts_kl": result.ts_kl,
                }
            )
        return metrics


def condition_rows(
    ctx: StageContext, student: nn.Module, teacher: nn.Module, conditions: tuple[Condition, ...]
) -> tuple[list[list[Any]], dict[str, float]]:
    """The `conditions` table's rows and summary keys of student vs teacher on the test split."""
    return fidelity_table(
        student, teacher, cue_data(ctx), conditions, ctx.seed, int(param(ctx, "batch_size")), ctx.device
    )


def train(ctx: StageContext) -> Export:
    if not isinstance(ctx.data, CueDataset):
        return train_on_clean_images(ctx)
    data = cue_data(ctx)
    transfer = training_condition(ctx, data)
    tests = data.conditions(param(ctx, "conditions"))
    settings = loss_settings(ctx)
    teacher = the_teacher(ctx)
    ctx.seed_torch("init")
    student = ctx.new_network()
    batch_size = int(param(ctx, "batch_size"))
    train_seed, valid_seed = ctx.data_seed("train"), ctx.data_seed("valid")
    task = DistillTask(
        student,
        teacher,
        settings,
        lambda epoch: ctx.prefetch(
            data.batches("train", transfer, train_seed, epoch, batch_size, shuffle=True)
        ),
        lambda: data.batches("valid", transfer, valid_seed, 0, batch_size),
        ctx.device,
        heads_seed=ctx.stream_seed("crd-heads"),
        cf=cf_sources(ctx, tests),
    )
    result = ctx.fit(task)
    rows, summary = condition_rows(ctx, student, teacher, tests)
    if ctx.log_extra is not None:
        ctx.log_extra("conditions", list(CONDITION_COLUMNS), rows)
    teacher_meta = ctx.inputs["teacher"][0].meta
    meta = {
        "best_epoch": result.best_epoch,
        **result.best_metrics,
        "mechanisms": transfer.name,
        "loss": settings["loss"],
        "resolved_alpha": settings["alpha"],
        "teacher_mechanisms": str(teacher_meta.get("mechanisms", "")),
        **summary,
    }
    return ctx.export("network", student.state_dict(), meta)


def train_on_clean_images(ctx: StageContext) -> Export:
    """A corruption dataset: the student learns from the teacher on clean (Identity) train images only, validated
    on clean valid images; how much robustness to corruptions it inherits is for the evaluation to measure."""
    settings = loss_settings(ctx)
    teacher = the_teacher(ctx)
    ctx.seed_torch("init")
    student = ctx.new_network()
    batch_size = int(param(ctx, "batch_size"))
    task = DistillTask(
        student,
        teacher,
        settings,
        *ctx.clean_batches(batch_size),
        ctx.device,
        heads_seed=ctx.stream_seed("crd-heads"),
    )
    result = ctx.fit(task)
    meta = {
        "best_epoch": result.best_epoch,
        **result.best_metrics,
        "loss": settings["loss"],
        "resolved_alpha": settings["alpha"],
    }
    return ctx.export("network", student.state_dict(), meta)
