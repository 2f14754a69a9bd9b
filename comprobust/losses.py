"""Losses: the multi-view NT-Xent (SimCLR contrastive loss generalised to V views) of the paper (§5.4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def multiview_nt_xent(
    features: torch.Tensor, n_views: int, temperature: float = 0.15, weight: float = 1.0
) -> torch.Tensor:
    """The paper's ``ContrastiveLayerLoss``: ``weight * sum_{i<V-1} mean_a CE([s(a,p_i), s(a,N(a))] / T, 0)``.

    ``features`` is (V*B, ...) with the views stacked in blocks (rows v*B..(v+1)*B-1 are view v of images
    0..B-1); it is flattened to (V*B, D) and its rows L2-normalised, so s is the cosine similarity. For
    anchor a the positives p_0..p_{V-2} are the other views of the same image (in row order) and N(a) are
    the V*B - V rows of other images; each positive is contrasted with all negatives only (not with the
    other positives), and the V-1 terms are summed (not averaged). Computed in float32 or wider. Returns a
    zero that supports ``backward`` when ``weight == 0`` or ``n_views <= 1``.
    """
    if n_views <= 1 or weight == 0:
        return features.reshape(-1)[:0].sum()
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    n = features.shape[0]
    if n % n_views:
        raise ValueError(f"{n} feature rows cannot be split into {n_views} views of equal size")
    batch = n // n_views
    dtype = torch.promote_types(features.dtype, torch.float32)
    flat = F.normalize(features.reshape(n, -1).to(dtype), dim=1)
    logits = flat @ flat.T / temperature
    rows = torch.arange(n, device=features.device)
    same_image = (rows[:, None] % batch) == (rows[None, :] % batch)
    positive = same_image & (rows[:, None] != rows[None, :])
    positives = logits[positive].view(n, n_views - 1)  # row-major: each anchor's positives in column order
    if batch == 1:  # no negatives: every cross-entropy has a single logit and is 0
        return weight * (positives * 0).sum()
    negatives_lse = torch.logsumexp(logits.masked_fill(same_image, float("-inf")), dim=1, keepdim=True)
    # (n, V-1): minus the log-softmax of each positive among itself and the anchor's negatives
    per_positive = torch.logaddexp(positives, negatives_lse) - positives
    return weight * per_positive.mean(dim=0).sum()
