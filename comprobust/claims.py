"""The paper's three claims, judged by the criteria an experiment's `claims:` block fixed before the run
(`comprobust.claims_config.ClaimCriteria`). Each verdict is supported, refuted or inconclusive, with its numbers.

* C1, "an invariance-building contrastive loss gives only marginal gains over ERM": the seed-paired difference
  invariance - baseline in compositional accuracy (mean over the compositions of the claim's lengths) is
  equivalent to 0 within +/- `equivalence_margin` pp by two one-sided t-tests (TOST) over seeds, AND Modular's
  gain is larger (one-sided paired t-test of modular - invariance > 0). Refuted when the difference lies
  significantly outside the band, or Modular is significantly below the invariance method. The weight-0
  control, when given, is reported beside it: invariance - control isolates the contrastive term from the
  paired-view pipeline.
* C2, "Modular is consistently better than non-modular methods": against every other system of the block, the
  95% t-interval of the seed-paired difference is above 0 at every length, and Modular wins at least
  `share_of_sets` of the unordered sets (orderings and seeds averaged). Refuted when an interval lies below 0 or
  Modular wins at most half of the sets.
* C3, "elemental invariance does not predict compositional accuracy": the partial correlations of elemental
  invariance with accuracy (sets as units, controlling for the members' elemental accuracy; every method and
  length, Holm over this family). Refuted when one is significant; supported when none is and every bootstrap
  95% interval excludes |r| >= `max_abs_r` (a strong correlation is ruled out); otherwise inconclusive: a
  non-significant test on few sets is not evidence of no correlation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from comprobust.claims_config import ClaimCriteria
from comprobust.statistics import CONFIDENCE, Statistics, holm, per_seed_length_means, set_means, t_interval

SUPPORTED, REFUTED, INCONCLUSIVE = "supported", "refuted", "inconclusive"
STATEMENTS = {
    "C1": "Contrastive invariance gives only marginal gains over ERM (and less than Modular's)",
    "C2": "Modular is consistently better than the non-modular methods",
    "C3": "Elemental invariance does not predict compositional accuracy",
}


@dataclass(frozen=True)
class Verdict:
    """One claim's verdict and the numbers behind it (one line each)."""

    claim: str
    verdict: str
    evidence: list[str] = field(default_factory=list)

    @property
    def statement(self) -> str:
        return STATEMENTS[self.claim]


@dataclass(frozen=True)
class Tost:
    """Two one-sided t-tests of a paired mean difference against the band (-margin, +margin)."""

    mean: float
    low: float  # the (1 - 2 alpha) interval: inside the band exactly when p < alpha
    high: float
    p: float  # max of the two one-sided p-values
    p_above: float  # H0: difference <= +margin (small p: significantly above the band)
    p_below: float  # H0: difference >= -margin (small p: significantly below the band)
    n: int


def tost(diff: np.ndarray, margin: float, alpha: float) -> Tost:
    """TOST over paired differences with scipy's one-sample t-tests (NaN below 2 values or with no spread)."""
    diff = np.asarray(diff, float)
    nan = float("nan")
    interval = t_interval(diff, 1 - 2 * alpha)
    if len(diff) < 2 or np.ptp(diff) == 0:
        return Tost(interval.mean, interval.low, interval.high, nan, nan, nan, len(diff))
    p_lower = stats.ttest_1samp(diff, -margin, alternative="greater").pvalue  # H0: mean <= -margin
    p_upper = stats.ttest_1samp(diff, margin, alternative="less").pvalue  # H0: mean >= +margin
    return Tost(
        interval.mean,
        interval.low,
        interval.high,
        float(max(p_lower, p_upper)),
        float(stats.ttest_1samp(diff, margin, alternative="greater").pvalue),
        float(stats.ttest_1samp(diff, -margin, alternative="less").pvalue),
        len(diff),
    )


def one_sided_p(diff: np.ndarray, alternative: str) -> float:
    """scipy's one-sample t-test of mean 0 ('greater' or 'less'); NaN below 2 values or with no spread."""
    diff = np.asarray(diff, float)
    if len(diff) < 2 or np.ptp(diff) == 0:
        return float("nan")
    return float(stats.ttest_1samp(diff, 0.0, alternative=alternative).pvalue)


def compositional_accuracy(results: pd.DataFrame, lengths: tuple[int, ...]) -> pd.DataFrame:
    """Seeds x methods: each seed's mean accuracy over the compositions whose length is in `lengths`."""
    part = results[results["length"].isin(lengths)]
    return part.groupby(["seed", "method"])["accuracy"].mean().unstack("method")


def paired(table: pd.DataFrame, method: str, baseline: str) -> np.ndarray:
    """method - baseline over the seeds (or other rows) both have."""
    return (table[method] - table[baseline]).dropna().to_numpy()


def _p(value: float) -> str:
    return f"{value:.3g}" if np.isfinite(value) else "n/a"


def _interval(mean: float, low: float, high: float, level: float) -> str:
    bounds = f"[{low:+.2f}, {high:+.2f}]" if np.isfinite(low) else "[n/a]"
    return f"{mean:+.2f} pp, {level:.0%} CI {bounds}"


def judge_c1(results: pd.DataFrame, criteria: ClaimCriteria) -> Verdict:
    table = compositional_accuracy(results, criteria.lengths)
    a, margin = criteria.alpha, criteria.equivalence_margin
    gain = tost(paired(table, criteria.invariance, criteria.baseline), margin, a)
    beyond = paired(table, criteria.modular, criteria.invariance)
    p_modular_more, p_modular_less = one_sided_p(beyond, "greater"), one_sided_p(beyond, "less")
    evidence = [
        f"{criteria.invariance} - {criteria.baseline} (mean over lengths {_lengths(criteria)}, {gain.n} seeds): "
        f"{_interval(gain.mean, gain.low, gain.high, 1 - 2 * a)}; TOST within +/-{margin:g} pp: p = {_p(gain.p)} "
        f"(above the band: p = {_p(gain.p_above)}, below: p = {_p(gain.p_below)})",
        f"{criteria.modular} - {criteria.invariance}: mean {np.mean(beyond) if len(beyond) else np.nan:+.2f} pp; "
        f"one-sided paired t-test > 0: p = {_p(p_modular_more)}",
    ]
    if criteria.control is not None:
        term = tost(paired(table, criteria.invariance, criteria.control), margin, a)
        evidence.append(
            f"{criteria.invariance} - {criteria.control} (the contrastive term alone): "
            f"{_interval(term.mean, term.low, term.high, 1 - 2 * a)}; TOST p = {_p(term.p)}"
        )
    if min(gain.p_above, gain.p_below) < a or p_modular_less < a:
        verdict = REFUTED
    elif gain.p < a and p_modular_more < a:
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    return Verdict("C1", verdict, evidence)


def judge_c2(results: pd.DataFrame, criteria: ClaimCriteria) -> Verdict:
    per_length = per_seed_length_means(results).pivot_table(
        index=["length", "seed"], columns="method", values="accuracy"
    )
    sets = set_means(results)
    sets = sets[sets["length"].isin(criteria.lengths)].pivot_table(
        index="set", columns="method", values="accuracy"
    )
    others = [o for o in (criteria.baseline, criteria.invariance, criteria.control) if o is not None]
    evidence, above, below, shares = [], [], [], []
    for other in others:
        cells = []
        for length in criteria.lengths:
            part = per_length[per_length.index.get_level_values("length") == length]
            interval = t_interval(paired(part, criteria.modular, other))
            above.append(np.isfinite(interval.low) and interval.low > 0)
            below.append(np.isfinite(interval.high) and interval.high < 0)
            cells.append(f"{length}: {_interval(interval.mean, interval.low, interval.high, CONFIDENCE)}")
        diff = paired(sets, criteria.modular, other)
        share = float((diff > 0).mean()) if len(diff) else float("nan")
        shares.append(share)
        evidence.append(
            f"{criteria.modular} - {other} by length: "
            + "; ".join(cells)
            + f". Sets won: {share:.0%} of {len(diff)}"
        )
    if any(below) or any(s <= 0.5 for s in shares):
        verdict = REFUTED
    elif all(above) and all(s >= criteria.share_of_sets for s in shares):
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    evidence.append(
        f"criteria: every {CONFIDENCE:.0%} interval above 0 and at least {criteria.share_of_sets:.0%} "
        "of sets won against each; refuted by an interval below 0 or at most half the sets"
    )
    return Verdict("C2", verdict, evidence)


def c3_tests(invariance_tests: pd.DataFrame, criteria: ClaimCriteria) -> pd.DataFrame:
    """The C3 family: elemental invariance vs accuracy per method and claim length, Holm within the family."""
    family = invariance_tests[
        (invariance_tests["x"] == "elemental_invariance")
        & (invariance_tests["y"] == "accuracy")
        & invariance_tests["length"].isin(criteria.lengths)
    ].copy()
    family["p_holm_family"] = holm(family["p"])
    return family


def judge_c3(invariance_tests: pd.DataFrame, criteria: ClaimCriteria) -> Verdict:
    family = c3_tests(invariance_tests, criteria)
    tested = family[family["p_holm_family"].notna()]
    if tested.empty:
        return Verdict(
            "C3",
            INCONCLUSIVE,
            [
                "no partial correlation could be computed (invariance scores missing "
                "or fewer than 4 sets per length)"
            ],
        )
    significant = tested[tested["p_holm_family"] < criteria.alpha]
    bound = criteria.max_abs_r
    ruled_out = tested[(tested["ci_low"] > -bound) & (tested["ci_high"] < bound)]
    strongest = tested.loc[tested["partial_r"].abs().idxmax()]
    evidence = [
        f"{len(tested)} partial correlations (methods x lengths with >= 4 sets; Holm within them): "
        f"{len(significant)} significant at {criteria.alpha:g}",
        f"strongest: {strongest['method']}, length {strongest['length']}: partial r = "
        f"{strongest['partial_r']:+.2f} [{strongest['ci_low']:+.2f}, {strongest['ci_high']:+.2f}], "
        f"p_Holm = {_p(strongest['p_holm_family'])} ({strongest['sets']} sets)",
        f"{len(ruled_out)} of {len(tested)} bootstrap intervals exclude |r| >= {bound:g}",
    ]
    evidence += [
        f"significant: {r.method}, length {r.length}: partial r = {r.partial_r:+.2f}, p_Holm = "
        f"{_p(r.p_holm_family)}"
        for r in significant.itertuples()
    ]
    if len(significant):
        verdict = REFUTED
    elif len(ruled_out) == len(tested):
        verdict = SUPPORTED
    else:
        verdict = INCONCLUSIVE
    return Verdict("C3", verdict, evidence)


def _lengths(criteria: ClaimCriteria) -> str:
    return f"{min(criteria.lengths)}-{max(criteria.lengths)}"


def judge_claims(results: pd.DataFrame, statistics: Statistics, criteria: ClaimCriteria) -> list[Verdict]:
    """The three verdicts from a report's results and statistics; all inconclusive, naming what is missing,
    when a system the claims name has no results (an evaluation failed or has not run)."""
    roles = {
        "baseline": criteria.baseline,
        "invariance": criteria.invariance,
        "control": criteria.control,
        "modular": criteria.modular,
    }
    have = set(results["method"])
    missing = [
        f"{role} {label!r}" for role, label in roles.items() if label is not None and label not in have
    ]
    if missing:
        reason = f"no results for {', '.join(missing)}: finish those evaluations (launch.py run) first"
        return [Verdict(claim, INCONCLUSIVE, [reason]) for claim in STATEMENTS]
    return [
        judge_c1(results, criteria),
        judge_c2(results, criteria),
        judge_c3(statistics.invariance, criteria),
    ]


def claims_frame(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per claim (the report's claims.csv)."""
    return pd.DataFrame(
        [
            {
                "claim": v.claim,
                "statement": v.statement,
                "verdict": v.verdict,
                "evidence": " | ".join(v.evidence),
            }
            for v in verdicts
        ],
        columns=["claim", "statement", "verdict", "evidence"],
    )


def format_claims(verdicts: list[Verdict]) -> str:
    """The "paper's claims" section as plain text for the terminal."""
    lines = ["The paper's claims (criteria fixed in the experiment's claims: block):"]
    for v in verdicts:
        lines.append(f"  {v.claim} {v.verdict.upper()}: {v.statement}")
        lines += [f"      {line}" for line in v.evidence]
    return "\n".join(lines)
