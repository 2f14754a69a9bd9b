"""The three distillation losses of Robust Socratic (Wu et al. 2024), exact, with the reference's bugs fixed and
each bug reproducible through an explicit option.

s and t are the student's and teacher's logits (B x C); the teacher is frozen, so every function detaches what it
reads from the teacher (its logits, Jacobian rows and features) unless an option asks for the reference's graph.

| loss | value | defaults |
|---|---|---|
| `kd` | (1/B) sum_b sum_c p^t_bc (log p^t_bc - log p^s_bc), p = softmax(logits / T); times T^2 only with `t2` | T = 30 |
| `jacobian` | (1 - alpha) kd + alpha (1/B) sum_b ||v^t_b - v^s_b||_2, v_b = vec(J_b) / max(||vec J_b||_2, 1e-12) | alpha = 0.15, k = 20 |
| `contrastive` | (1 - alpha) kd + alpha L_CRD on L2-normalised 128-d projections of the features | alpha = 0.03, tau = 0.1, eps = 0.97 |

J_b holds the rows dz_c/dx of the logits over the input for the classes K_b: all C when C <= k, else the teacher's
top-k classes of sample b; the other rows are 0 for both models, and one L2 norm covers the whole flattened
Jacobian (not one per row, as Srinivas & Fleuret have it).

Options that reproduce the reference (CindyXWu/robust-socratic, Lent/losses at e09a76f):

| option | the reference's behaviour | default here |
|---|---|---|
| `kd(..., t2=True)` | v1's Hinton-style T^2 factor (v2 has none) | no T^2 |
| `kd(..., divergence="mse")` | `base_distill_loss_type=MSE`: mean((p^s - p^t)^2) | KL |
| `jacobian(..., reference_topk_scatter=True)` | when C > k, row j of every sample's Jacobian is written at class `topk[n, j]` of every other sample n too (`jac[:, idx[:, j], :] = grad`), so a sample's rows outside its own top-k are filled with other samples' gradients, the last writer winning | each sample keeps exactly its own top-k rows |
| `jacobian(..., teacher_create_graph=True)` | the teacher's Jacobian is built with `create_graph=True` (same value, a wasted graph) | detached, no graph |
| `fresh_heads(...)` every step | v2 builds a new `CRDLoss` (new random `Embed` heads, never optimised) every step | `CRDHeads` trained with the student |
| `crd_term(..., pairs="class")` | positives are the other same-class samples (diagonal excluded) | class; `instance` is Tian et al.'s |

Costs: `jacobian` takes |K| vector-Jacobian products per model per step (the student's with `create_graph=True`);
batched products under train-mode BatchNorm carry O(1/B) cross-sample terms, as in the reference.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from comprobust.distill.names import DIVERGENCES, PAIR_MODES, check_choice

NORM_FLOOR = 1e-12  # a zero Jacobian normalises to zero (the reference divides by 0 and gets NaN)


@dataclasses.dataclass(frozen=True)
class LossParts:
    """A combined distillation loss and its two terms, for logging (`train_kd`, `train_aux`)."""

    total: torch.Tensor  # (1 - alpha) kd + alpha aux: what is minimised
    kd: torch.Tensor
    aux: torch.Tensor  # the Jacobian or contrastive term (unweighted)


def kd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float = 30.0,
    *,
    t2: bool = False,
    divergence: str = "kl",
) -> torch.Tensor:
    """Soft-label distillation: KL(teacher || student) of softmax(logits / T), averaged over the batch.

    Equals `KLDivLoss(reduction="batchmean")(log_softmax(s / T), softmax(t / T))`, the reference's v2 base loss:
    no T^2 factor unless `t2`, no hard-label term. `divergence="mse"` gives mean((p^s - p^t)^2) over all B x C
    entries instead (times T^2 with `t2`). The teacher's logits are detached.
    """
    check_choice("kd divergence", divergence, DIVERGENCES)
    if temperature <= 0:
        raise ValueError(f"the KD temperature must be positive, got {temperature}")
    teacher_logits = teacher_logits.detach()
    log_ps = F.log_softmax(student_logits / temperature, dim=1)
    log_pt = F.log_softmax(teacher_logits / temperature, dim=1)
    if divergence == "kl":
        loss = F.kl_div(log_ps, log_pt, reduction="batchmean", log_target=True)
    else:
        loss = F.mse_loss(log_ps.exp(), log_pt.exp())
    return loss * temperature**2 if t2 else loss


def jacobian_classes(teacher_logits: torch.Tensor, k: int = 20) -> torch.Tensor:
    """(B, K) int64: the Jacobian rows kept per sample, all C classes in order when C <= k, else the teacher's
    top-k classes (largest logit first)."""
    batch, classes = teacher_logits.shape
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    if classes <= k:
        return torch.arange(classes, device=teacher_logits.device).expand(batch, classes)
    return torch.topk(teacher_logits.detach(), k, dim=1).indices


def logit_jacobian(
    logits: torch.Tensor, inputs: torch.Tensor, classes: torch.Tensor, *, create_graph: bool
) -> torch.Tensor:
    """(B, K, D): row j of sample b is d logits[b, classes[b, j]] / d inputs[b], flattened (D = inputs[0].numel()).

    One batched vector-Jacobian product per column j of `classes`; `logits` must have been computed from
    `inputs`, which must require grad. With `create_graph` the rows are differentiable (the student's).
    """
    if not inputs.requires_grad:
        raise ValueError(
            "the Jacobian needs inputs with requires_grad=True that both models' logits come from"
        )
    rows = []
    for j in range(classes.shape[1]):
        selector = torch.zeros_like(logits).scatter_(1, classes[:, j : j + 1], 1.0)
        (grad,) = torch.autograd.grad(logits, inputs, selector, retain_graph=True, create_graph=create_graph)
        rows.append(grad.reshape(len(inputs), -1))
    return torch.stack(rows, dim=1)


def _reference_scatter(rows: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The reference's `get_approx_jacobian` write, (B, C, D): for j in K, for n in B (later n win),
    every sample's row `classes[n, j]` becomes sample n's row j."""
    batch, _, dim = rows.shape
    out = rows.new_zeros(batch, num_classes, dim)
    for j in range(classes.shape[1]):
        for n in range(batch):
            out[:, int(classes[n, j])] = rows[n, j]
    return out


def jacobian_term(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    inputs: torch.Tensor,
    *,
    top_k: int = 20,
    reference_topk_scatter: bool = False,
    teacher_create_graph: bool = False,
) -> torch.Tensor:
    """L_Jac = (1/B) sum_b ||v^t_b - v^s_b||_2 with v_b = vec(J_b) / max(||vec J_b||_2, 1e-12) (module docstring).

    Both logits must come from `inputs` (requires_grad=True; run the frozen teacher with grad enabled). The
    student's rows are built with `create_graph=True`, so gradients reach the student's parameters; the
    teacher's rows are detached (with `teacher_create_graph` they are built with a graph, as the reference does).
    """
    num_classes = student_logits.shape[1]
    for who, logits in (("student", student_logits), ("teacher", teacher_logits)):
        if not logits.requires_grad:
            raise ValueError(
                f"the {who}'s logits carry no graph: compute them from the inputs with grad enabled "
                "(freeze the teacher with requires_grad_(False), not torch.no_grad())"
            )
    if teacher_logits.shape != student_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} vs teacher {tuple(teacher_logits.shape)}"
        )
    classes = jacobian_classes(teacher_logits, top_k)
    j_t = logit_jacobian(teacher_logits, inputs, classes, create_graph=teacher_create_graph)
    if not teacher_create_graph:
        j_t = j_t.detach()
    j_s = logit_jacobian(student_logits, inputs, classes, create_graph=True)
    if reference_topk_scatter and num_classes > top_k:
        j_t = _reference_scatter(j_t, classes, num_classes)
        j_s = _reference_scatter(j_s, classes, num_classes)
    v_t, v_s = (j.reshape(len(j), -1) for j in (j_t, j_s))
    v_t = v_t / v_t.norm(dim=1, keepdim=True).clamp_min(NORM_FLOOR)
    v_s = v_s / v_s.norm(dim=1, keepdim=True).clamp_min(NORM_FLOOR)
    return (v_t - v_s).norm(dim=1).mean()


def jacobian(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    inputs: torch.Tensor,
    *,
    alpha: float = 0.15,
    temperature: float = 30.0,
    top_k: int = 20,
    t2: bool = False,
    divergence: str = "kl",
    reference_topk_scatter: bool = False,
    teacher_create_graph: bool = False,
) -> LossParts:
    """Jacobian-matching distillation: (1 - alpha) kd + alpha L_Jac (see `kd` and `jacobian_term`)."""
    base = kd(student_logits, teacher_logits, temperature, t2=t2, divergence=divergence)
    aux = jacobian_term(
        student_logits,
        teacher_logits,
        inputs,
        top_k=top_k,
        reference_topk_scatter=reference_topk_scatter,
        teacher_create_graph=teacher_create_graph,
    )
    return LossParts((1 - alpha) * base + alpha * aux, base, aux)


class CRDHeads(nn.Module):
    """The two CRD projection heads ("Embed"): z = l2-normalise(Linear(flatten(f))), 128-d by default.

    Trained with the student (put them in its optimiser and checkpoint, e.g. `ModuleDict(student, heads)`);
    `fresh_heads` draws untrained ones, as the reference's v2 does every step.
    """

    def __init__(self, student_dim: int, teacher_dim: int, dim: int = 128) -> None:
        super().__init__()
        self.student = nn.Linear(student_dim, dim)
        self.teacher = nn.Linear(teacher_dim, dim)

    def forward(
        self, student_features: torch.Tensor, teacher_features: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        z_s = self.student(student_features.reshape(len(student_features), -1))
        z_t = self.teacher(teacher_features.detach().reshape(len(teacher_features), -1))
        return F.normalize(z_s, dim=1), F.normalize(z_t, dim=1)


def fresh_heads(
    student_dim: int,
    teacher_dim: int,
    *,
    seed: int,
    step: int,
    dim: int = 128,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> CRDHeads:
    """Untrained heads drawn as `nn.Linear` initialises them (U(-1/sqrt(in), 1/sqrt(in)) weights and biases),
    from a generator seeded by (seed, step): the reference's per-step heads, reproducible."""
    heads = CRDHeads(student_dim, teacher_dim, dim)
    generator = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2**63))
    with torch.no_grad():
        for linear in (heads.student, heads.teacher):
            bound = 1.0 / math.sqrt(linear.in_features)
            for param in (linear.weight, linear.bias):
                param.copy_(torch.rand(param.shape, generator=generator) * (2 * bound) - bound)
    heads.requires_grad_(False)
    return heads.to(device=device, dtype=dtype)


def crd_term(
    z_student: torch.Tensor,
    z_teacher: torch.Tensor,
    labels: torch.Tensor,
    *,
    pairs: str = "class",
    tau: float = 0.1,
    eps: float = 0.97,
) -> torch.Tensor:
    """L_CRD = -(1/B) [sum_Pos log(P / (P + eps)) + sum_Neg log(eps / (P + eps))], P_ij = exp(z^s_i . z^t_j / tau).

    The embeddings are L2-normalised (again). `pairs="class"` (the reference's): Pos = {i != j, y_i = y_j},
    Neg = {i != j, y_i != y_j}; `pairs="instance"`: Pos = {(i, i)}, Neg = {i != j}. In-batch negatives, no memory
    bank; eps (0.97 in the reference, "about N/M") is the constant noise term of the NCE discriminator
    P / (P + eps). Computed in log space: log(P / (P + eps)) = s - logaddexp(s, log eps), s = z^s_i . z^t_j / tau.
    """
    check_choice("contrastive pair mode", pairs, PAIR_MODES)
    if tau <= 0 or eps <= 0:
        raise ValueError(f"tau and eps must be positive, got tau={tau}, eps={eps}")
    z_s = F.normalize(z_student.reshape(len(z_student), -1), dim=1)
    z_t = F.normalize(z_teacher.reshape(len(z_teacher), -1), dim=1)
    scores = z_s @ z_t.T / tau
    log_eps = math.log(eps)
    denominator = torch.logaddexp(scores, torch.full_like(scores, log_eps))
    batch = len(scores)
    diagonal = torch.eye(batch, dtype=torch.bool, device=scores.device)
    if pairs == "class":
        same = labels.reshape(-1, 1) == labels.reshape(1, -1)
        positive, negative = same & ~diagonal, ~same
    else:
        positive, negative = diagonal, ~diagonal
    log_pos = (scores - denominator)[positive].sum()
    log_neg = (log_eps - denominator)[negative].sum()
    return -(log_pos + log_neg) / batch


def contrastive(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    labels: torch.Tensor,
    heads: CRDHeads,
    *,
    alpha: float = 0.03,
    temperature: float = 30.0,
    pairs: str = "class",
    tau: float = 0.1,
    eps: float = 0.97,
    t2: bool = False,
    divergence: str = "kl",
) -> LossParts:
    """Contrastive distillation: (1 - alpha) kd + alpha L_CRD(heads(student_features, teacher_features)).

    The features are those of the layer the stage picks (the penultimate by default), flattened per sample; the
    teacher's are detached. Pass trained `CRDHeads` (default) or `fresh_heads(...)` for the reference's v2.
    """
    base = kd(student_logits, teacher_logits, temperature, t2=t2, divergence=divergence)
    z_s, z_t = heads(student_features, teacher_features)
    aux = crd_term(z_s, z_t, labels, pairs=pairs, tau=tau, eps=eps)
    return LossParts((1 - alpha) * base + alpha * aux, base, aux)
