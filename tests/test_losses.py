"""The multi-view NT-Xent of §5.4 against a direct, loop-based computation of the formula."""

from __future__ import annotations

import math

import pytest
import torch

from comprobust.losses import multiview_nt_xent


def _direct(features: torch.Tensor, n_views: int, temperature: float, weight: float) -> float:
    """The formula of §5.4 written out anchor by anchor, positive by positive, in float64 Python."""
    n = features.shape[0]
    b = n // n_views
    rows = features.reshape(n, -1).double()
    rows = [r / r.norm() for r in rows]
    sim = [[float(rows[a] @ rows[c]) for c in range(n)] for a in range(n)]
    total = 0.0
    for i in range(n_views - 1):
        per_anchor = []
        for a in range(n):
            positives = [c for c in range(n) if c != a and c % b == a % b]
            negatives = [c for c in range(n) if c % b != a % b]
            assert len(positives) == n_views - 1 and len(negatives) == n - n_views
            logits = [sim[a][positives[i]] / temperature] + [sim[a][c] / temperature for c in negatives]
            top = max(logits)
            lse = top + math.log(sum(math.exp(x - top) for x in logits))
            per_anchor.append(lse - logits[0])
        total += sum(per_anchor) / n
    return weight * total


@pytest.mark.parametrize(
    "n_views,batch,shape", [(2, 3, (5,)), (2, 1, (4,)), (3, 4, (2, 3, 3)), (7, 3, (6,)), (4, 2, (8,))]
)
@pytest.mark.parametrize("temperature,weight", [(0.15, 1.0), (0.5, 0.1)])
def test_matches_direct_computation(
    n_views: int, batch: int, shape: tuple[int, ...], temperature: float, weight: float
) -> None:
    gen = torch.Generator().manual_seed(n_views * 100 + batch)
    features = torch.randn(n_views * batch, *shape, generator=gen)
    got = multiview_nt_xent(features, n_views, temperature=temperature, weight=weight)
    assert got.dim() == 0
    assert got.item() == pytest.approx(_direct(features, n_views, temperature, weight), rel=1e-5, abs=1e-6)


def test_default_temperature_is_the_papers() -> None:
    features = torch.randn(12, 4, generator=torch.Generator().manual_seed(1))
    assert multiview_nt_xent(features, 3).item() == pytest.approx(_direct(features, 3, 0.15, 1.0), rel=1e-5)


@pytest.mark.parametrize("n_views", [2, 3, 7])
def test_sums_over_the_positives_closed_form(n_views: int) -> None:
    # B orthogonal images, every view identical: s(positive) = 1, s(negative) = 0, so each of the V-1 terms is
    # log(exp(1/T) + V(B-1)) - 1/T and the loss is V-1 times that (a sum, not a mean, over the positives)
    b, t = 4, 0.15
    features = torch.cat([torch.eye(b, 6)] * n_views)
    expected = (n_views - 1) * (math.log(math.exp(1 / t) + n_views * (b - 1)) - 1 / t)
    assert multiview_nt_xent(features, n_views, temperature=t).item() == pytest.approx(expected, abs=2e-5)


def test_gradient_flows_to_every_row() -> None:
    features = torch.randn(3 * 4, 6, generator=torch.Generator().manual_seed(3), requires_grad=True)
    multiview_nt_xent(features, 3).backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()
    assert (features.grad.abs().sum(dim=1) > 0).all()


def test_gradient_matches_direct_autograd_in_float64() -> None:
    features = torch.randn(
        2 * 3, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64, requires_grad=True
    )
    assert torch.autograd.gradcheck(lambda f: multiview_nt_xent(f, 2, 0.3), (features,))


def test_single_image_per_view_is_zero_with_finite_gradient() -> None:
    features = torch.randn(3, 4, generator=torch.Generator().manual_seed(5), requires_grad=True)
    loss = multiview_nt_xent(features, 3)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(features.grad).all()


@pytest.mark.parametrize("n_views,weight", [(1, 1.0), (0, 1.0), (2, 0.0), (7, 0.0)])
def test_zero_cases_return_a_zero_that_supports_backward(n_views: int, weight: float) -> None:
    features = torch.randn(14, 3, generator=torch.Generator().manual_seed(6), requires_grad=True)
    loss = multiview_nt_xent(features, n_views, weight=weight)
    assert loss.dim() == 0 and loss.item() == 0.0
    (loss + features.sum()).backward()  # a total loss containing it stays differentiable
    loss2 = multiview_nt_xent(features, n_views, weight=weight)
    loss2.backward()  # and so does the zero on its own
    assert torch.isfinite(features.grad).all()


def test_invariant_to_a_permutation_of_images_consistent_across_views_and_to_view_order() -> None:
    v, b = 4, 5
    features = torch.randn(v, b, 7, generator=torch.Generator().manual_seed(7))
    reference = multiview_nt_xent(features.reshape(v * b, 7), v).item()
    perm = torch.randperm(b, generator=torch.Generator().manual_seed(8))
    permuted = features[:, perm].reshape(v * b, 7)
    assert multiview_nt_xent(permuted, v).item() == pytest.approx(reference, rel=1e-5)
    views_reversed = features.flip(0).reshape(v * b, 7)
    assert multiview_nt_xent(views_reversed, v).item() == pytest.approx(reference, rel=1e-5)


def test_not_invariant_to_a_permutation_that_breaks_the_pairing() -> None:
    v, b = 2, 6
    features = torch.randn(v, b, 5, generator=torch.Generator().manual_seed(9))
    reference = multiview_nt_xent(features.reshape(v * b, 5), v).item()
    shuffled = features.clone()
    shuffled[1] = shuffled[1].roll(1, dims=0)
    assert multiview_nt_xent(shuffled.reshape(v * b, 5), v).item() != pytest.approx(reference, rel=1e-3)


def test_scale_of_features_does_not_matter_and_weight_scales_linearly() -> None:
    features = torch.randn(12, 5, generator=torch.Generator().manual_seed(10))
    base = multiview_nt_xent(features, 2).item()
    assert multiview_nt_xent(features * 37.0, 2).item() == pytest.approx(base, rel=1e-5)
    assert multiview_nt_xent(features, 2, weight=0.1).item() == pytest.approx(0.1 * base, rel=1e-5)


def test_aligned_views_give_lower_loss_than_random_ones() -> None:
    gen = torch.Generator().manual_seed(11)
    images = torch.randn(8, 16, generator=gen)
    aligned = torch.cat([images, images + 0.01 * torch.randn(8, 16, generator=gen)])
    random = torch.randn(16, 16, generator=gen)
    assert multiview_nt_xent(aligned, 2).item() < multiview_nt_xent(random, 2).item()


def test_half_precision_input_is_computed_in_float32() -> None:
    features = torch.randn(8, 4, generator=torch.Generator().manual_seed(12))
    got = multiview_nt_xent(features.half(), 2)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(_direct(features.half().float(), 2, 0.15, 1.0), rel=1e-4)


@pytest.mark.parametrize(
    "kwargs,match", [({"n_views": 3}, "cannot be split"), ({"n_views": 2, "temperature": 0.0}, "temperature")]
)
def test_bad_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        multiview_nt_xent(torch.randn(10, 3), **kwargs)
