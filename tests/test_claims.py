"""The paper's claims: the verdict logic against hand computations and scipy, and the claims block's validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy import stats

from comprobust import claims as cl
from comprobust.claims_config import ClaimCriteria
from comprobust.config import load_experiment
from comprobust.errors import UserError
from comprobust.losses import multiview_nt_xent
from comprobust.report_statistics import claims_html
from comprobust.statistics import holm

CRITERIA = ClaimCriteria(
    baseline="ERM", invariance="Contrastive", control="Contrastive-w0", modular="Modular", lengths=(2, 3)
)
SEEDS = (1, 2, 3, 4, 5)
COMPOSITIONS = [
    "Contrast-Invert",
    "Invert-Contrast",
    "Rotate90-Swirl",
    "Contrast-Invert-Swirl",
    "Swirl-Invert-Rotate90",
]


def results(offsets: dict[str, object]) -> pd.DataFrame:
    """Accuracy = a seed- and composition-dependent ERM value plus `offsets[method](seed, length)`."""
    rows = []
    for method, offset in offsets.items():
        for seed in SEEDS:
            for i, composition in enumerate(COMPOSITIONS):
                length = composition.count("-") + 1
                base = 70.0 - 5 * length + 3 * np.sin(seed * 7 + i)
                rows.append(
                    {
                        "method": method,
                        "seed": seed,
                        "composition": composition,
                        "length": length,
                        "accuracy": base + offset(seed, length),
                    }
                )
    return pd.DataFrame(rows)


def jitter(seed: int, length: int) -> float:
    return [0.3, -0.4, 0.1, 0.5, -0.2][seed - 1] * (1 + 0.1 * length)


def test_tost_by_hand_and_its_interval_duality() -> None:
    diff = np.array([0.5, -0.3, 1.1, 0.2, 0.4])
    n, mean, se = len(diff), diff.mean(), diff.std(ddof=1) / np.sqrt(len(diff))
    result = cl.tost(diff, 2.0, 0.05)
    p_lower = stats.t.sf((mean + 2.0) / se, n - 1)  # H0: mean <= -2
    p_upper = stats.t.cdf((mean - 2.0) / se, n - 1)  # H0: mean >= +2
    assert result.p == pytest.approx(max(p_lower, p_upper)) and result.p < 0.05
    half = (
        stats.t.ppf(0.95, n - 1) * se
    )  # the 90% interval lies inside (-2, 2) exactly when TOST rejects at 5%
    assert (result.low, result.high) == pytest.approx((mean - half, mean + half))
    assert -2 < result.low and result.high < 2
    shifted = cl.tost(diff + 1.2, 2.0, 0.05)  # interval now crosses +2: not equivalent
    assert shifted.high > 2 and shifted.p > 0.05
    above = cl.tost(diff + 4.0, 2.0, 0.05)
    assert above.p_above == pytest.approx(stats.t.sf((mean + 4.0 - 2.0) / se, n - 1)) and above.p_above < 0.05
    assert np.isnan(cl.tost(np.array([1.0]), 2.0, 0.05).p) and np.isnan(cl.tost(np.ones(4), 2.0, 0.05).p)


def verdicts(offsets: dict[str, object]) -> dict[str, cl.Verdict]:
    frame = results(offsets)
    return {"C1": cl.judge_c1(frame, CRITERIA), "C2": cl.judge_c2(frame, CRITERIA)}


def test_c1_and_c2_supported_when_contrastive_is_within_the_band_and_modular_far_ahead() -> None:
    out = verdicts(
        {
            "ERM": lambda s, n: 0.0,
            "Contrastive": jitter,
            "Contrastive-w0": lambda s, n: -jitter(s, n),
            "Modular": lambda s, n: 8.0 + jitter(s, n) * 3,
        }
    )
    assert out["C1"].verdict == cl.SUPPORTED and out["C2"].verdict == cl.SUPPORTED
    assert (
        "TOST within +/-2 pp" in out["C1"].evidence[0]
        and "Contrastive - Contrastive-w0" in out["C1"].evidence[2]
    )
    assert "Sets won: 100% of 4" in out["C2"].evidence[0]


def test_c1_refuted_by_a_gain_significantly_beyond_the_band_c2_by_modular_behind_at_one_length() -> None:
    out = verdicts(
        {
            "ERM": lambda s, n: 0.0,
            "Contrastive": lambda s, n: 5.0 + jitter(s, n),
            "Contrastive-w0": jitter,
            "Modular": lambda s, n: (8.0 if n == 2 else -3.0) + jitter(s, n),
        }
    )
    assert out["C1"].verdict == cl.REFUTED and out["C2"].verdict == cl.REFUTED


def test_inconclusive_when_the_interval_straddles_the_band_or_modular_wins_too_few_sets() -> None:
    noisy = [3.0, -2.5, 4.0, -3.5, 1.0]
    out = verdicts(
        {
            "ERM": lambda s, n: 0.0,
            "Contrastive": lambda s, n: noisy[s - 1],
            "Contrastive-w0": jitter,
            "Modular": lambda s, n: 1.0 + noisy[s - 1] + jitter(s, n),
        }
    )
    assert out["C1"].verdict == cl.INCONCLUSIVE and out["C2"].verdict != cl.SUPPORTED


def invariance_tests(partial_r, ci, p, lengths=(2, 3, 4)) -> pd.DataFrame:
    rows = [
        {
            "x": "elemental_invariance",
            "y": "accuracy",
            "length": n,
            "method": m,
            "sets": 15,
            "partial_r": r,
            "ci_low": c[0],
            "ci_high": c[1],
            "p": q,
        }
        for (n, m), r, c, q in zip([(n, m) for n in lengths for m in ("ERM", "Modular")], partial_r, ci, p)
    ]
    other = [{**row, "x": "composition_invariance", "p": 1e-9} for row in rows]  # not in the C3 family
    return pd.DataFrame(rows + other)


def test_c3_holm_within_the_family_and_its_three_verdicts() -> None:
    narrow = [(-0.3, 0.3)] * 6
    p = [0.004, 0.2, 0.5, 0.03, 0.8, 0.9]
    family = cl.c3_tests(invariance_tests([0.1] * 6, narrow, p), CRITERIA)
    assert len(family) == 4  # lengths 2 and 3 of the claim, two methods; other pairs left out
    np.testing.assert_allclose(family["p_holm_family"], holm([0.004, 0.2, 0.5, 0.03]))
    assert family["p_holm_family"].iloc[0] == pytest.approx(0.016)
    refuted = cl.judge_c3(invariance_tests([0.8, 0.1, 0, 0, 0, 0], narrow, p), CRITERIA)
    assert refuted.verdict == cl.REFUTED and "ERM, length 2: partial r = +0.80" in refuted.evidence[-1]
    calm = [0.3, 0.2, 0.5, 0.4, 0.8, 0.9]
    assert cl.judge_c3(invariance_tests([0.1] * 6, narrow, calm), CRITERIA).verdict == cl.SUPPORTED
    wide = cl.judge_c3(invariance_tests([0.1] * 6, [(-0.7, 0.8)] * 6, calm), CRITERIA)
    assert (
        wide.verdict == cl.INCONCLUSIVE and "0 of 4 bootstrap intervals exclude |r| >= 0.5" in wide.evidence
    )


def test_missing_systems_make_every_claim_inconclusive_and_say_which() -> None:
    frame = results({"ERM": lambda s, n: 0.0, "Modular": jitter})
    out = cl.judge_claims(frame, None, CRITERIA)
    assert [v.verdict for v in out] == [cl.INCONCLUSIVE] * 3
    assert "invariance 'Contrastive'" in out[0].evidence[0]
    page = claims_html(out)
    assert "<h2>The paper's claims</h2>" in page and "inconclusive" in page
    assert "C3 INCONCLUSIVE" in cl.format_claims(out)


def test_the_claims_experiment_validates_and_its_control_removes_only_the_contrastive_term() -> None:
    experiment = load_experiment("experiments/claims.yaml")
    control = experiment.stages["contrastive0"]
    assert control.method == "contrastive" and control.params["weight"] == 0.0
    assert {k: v for k, v in control.params.items() if k != "weight"} == {
        k: v for k, v in experiment.stages["contrastive"].params.items() if k != "weight"
    }
    assert experiment.claims.control == "Contrastive-w0" and len(experiment.seeds) == 5
    features = torch.randn(14, 8, requires_grad=True)
    zero = multiview_nt_xent(features, 7, 0.15, 0.0)
    assert zero.item() == 0.0 and multiview_nt_xent(features, 7, 0.15, 0.1).item() > 0
    zero.backward()  # the loss stays part of the graph: the pipeline runs unchanged, only the term is gone
    assert torch.count_nonzero(features.grad) == 0


@pytest.mark.parametrize(
    "change, message",
    [
        ({"modular": "Modularr"}, "claims.modular: 'Modularr' is not an evaluation system; use one of"),
        ({"alpha": 0.7}, "claims.alpha"),
        ({"lengths": [1, 2]}, "claims.lengths[0]"),
        ({"invariance": "ERM"}, "each role needs its own system"),
        ({"margin": 2}, "unknown key 'margin'"),
    ],
)
def test_claims_block_mistakes_name_the_key(tmp_path: Path, change: dict, message: str) -> None:
    body = yaml.safe_load(Path("experiments/claims.yaml").read_text())
    body["claims"] = {**body["claims"], **change}
    path = tmp_path / "claims.yaml"
    path.write_text(yaml.safe_dump(body))
    with pytest.raises(UserError, match=None) as error:
        load_experiment(path)
    assert message in str(error.value) and str(path) in str(error.value)
