"""Statistics a reviewer can trust: seeds as replicates, unordered sets of corruptions as units, every test kept.

From the tidy frames of `comprobust.results.RunStore` (`results()`, `invariance()`, `runs()`):

* `length_intervals`: per method and composition length, the mean over seeds of each seed's mean accuracy and
  its 95% t-interval;
* `paired_differences`: for every pair of methods and length, the seed-paired difference (method - baseline),
  its 95% t-interval and the number of seeds the method won;
* `set_comparisons`: orderings (and seeds) averaged within each unordered set of corruptions; per pair of
  methods and length (and lengths 2-6 pooled), the share of sets the method wins and a Wilcoxon signed-rank test
  over sets;
* `invariance_tests`: sets as units (elemental invariance depends only on the set); Pearson r, the partial
  correlation controlling for the mean accuracy of the set's member elementals, its bootstrap 95% CI (sets
  resampled) and p, Holm-adjusted over the whole grid: every test, not a chosen few;
* `training_diagnostics` and `commuting_diagnostics` (`comprobust.diagnostics`): how the runs behind the results
  trained, and whether a system tells apart two orders that give identical images.

With one seed every interval is NaN in the frames and prints as `ONE_SEED`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from comprobust.diagnostics import commuting_diagnostics, training_diagnostics
from comprobust.results import method_order

CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 0
ALPHA = 0.05
ONE_SEED = "n/a (1 seed)"
POOLED = "2-6"  # the `lengths` label of the row pooling every set of 2..6 corruptions
INVARIANCE_PAIRS = (
    ("elemental_invariance", "composition_invariance"),
    ("elemental_invariance", "accuracy"),
    ("composition_invariance", "accuracy"),
)


@dataclass(frozen=True)
class Interval:
    """A mean over `n` replicates with its two-sided t-interval (NaN bounds below 2 replicates)."""

    mean: float
    low: float
    high: float
    n: int


def t_interval(values: Iterable[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean and Student-t confidence interval of `values` (NaNs dropped)."""
    x = np.asarray([v for v in values if np.isfinite(v)], float)
    if len(x) == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    mean = float(x.mean())
    if len(x) < 2:
        return Interval(mean, float("nan"), float("nan"), len(x))
    half = float(stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x)))
    return Interval(mean, mean - half, mean + half, len(x))


def format_interval(mean: float, low: float, high: float, digits: int = 1, signed: bool = False) -> str:
    """'82.3 [80.1, 84.5]', or '82.3 [n/a (1 seed)]' when the bounds are undefined."""
    sign = "+" if signed else ""
    if not np.isfinite(mean):
        return "n/a"
    bounds = f"{low:{sign}.{digits}f}, {high:{sign}.{digits}f}" if np.isfinite(low) else ONE_SEED
    return f"{mean:{sign}.{digits}f} [{bounds}]"


# ------------------------------------------------------------------------------------------------ accuracy


def per_seed_length_means(results: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy over the compositions of each length, per (method, seed, length)."""
    return results.groupby(["method", "seed", "length"], as_index=False)["accuracy"].mean()


def length_intervals(results: pd.DataFrame) -> pd.DataFrame:
    """Per method and length: seeds, mean and 95% t-interval of the per-seed mean accuracy."""
    per_seed = per_seed_length_means(results)
    rows = [
        {"method": method, "length": length, **_interval_columns(part["accuracy"])}
        for method in method_order(per_seed["method"])
        for length, part in per_seed[per_seed["method"] == method].groupby("length")
    ]
    return pd.DataFrame(rows, columns=["method", "length", "seeds", "mean", "ci_low", "ci_high"])


def paired_differences(results: pd.DataFrame) -> pd.DataFrame:
    """Per pair (baseline before method in the paper's order) and length: the per-seed differences of mean
    accuracy (method - baseline) over the seeds both have, their mean, 95% t-interval and the seeds won."""
    wide = per_seed_length_means(results).pivot_table(
        index=["length", "seed"], columns="method", values="accuracy"
    )
    rows = []
    for baseline, method in combinations(method_order(results["method"]), 2):
        for length, part in wide.groupby(level="length"):
            diff = (part[method] - part[baseline]).dropna()
            rows.append(
                {
                    "method": method,
                    "baseline": baseline,
                    "length": length,
                    **_interval_columns(diff),
                    "seeds_won": int((diff > 0).sum()),
                }
            )
    return pd.DataFrame(
        rows, columns=["method", "baseline", "length", "seeds", "mean", "ci_low", "ci_high", "seeds_won"]
    )


def set_of(composition: str) -> str:
    """The unordered set of a composition's corruptions, as its sorted names joined by '+'."""
    return "+".join(sorted(composition.split("-")))


def set_means(results: pd.DataFrame) -> pd.DataFrame:
    """Accuracy per (method, set): every ordering and seed of the set averaged (seeds first)."""
    frame = results.assign(set=results["composition"].map(set_of))
    per_seed = frame.groupby(["method", "length", "set", "seed"], as_index=False)["accuracy"].mean()
    return per_seed.groupby(["method", "length", "set"], as_index=False)["accuracy"].mean()


def set_comparisons(results: pd.DataFrame) -> pd.DataFrame:
    """Per pair of methods and length (and lengths 2-6 pooled), over sets: the mean difference (method -
    baseline), the share of sets the method wins, ties, and the Wilcoxon signed-rank test of the differences."""
    wide = set_means(results).pivot_table(index=["length", "set"], columns="method", values="accuracy")
    length = wide.index.get_level_values("length")
    parts = [(str(n), wide[length == n]) for n in sorted(set(length))] + [(POOLED, wide[length >= 2])]
    rows = []
    for baseline, method in combinations(method_order(results["method"]), 2):
        for label, part in parts:
            diff = (part[method] - part[baseline]).dropna().to_numpy()
            rows.append(
                {
                    "method": method,
                    "baseline": baseline,
                    "lengths": label,
                    "sets": len(diff),
                    "mean_diff": float(diff.mean()) if len(diff) else float("nan"),
                    "share_won": float((diff > 0).mean()) if len(diff) else float("nan"),
                    "ties": int((diff == 0).sum()),
                    **_wilcoxon(diff),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "method",
            "baseline",
            "lengths",
            "sets",
            "mean_diff",
            "share_won",
            "ties",
            "wilcoxon",
            "p",
            "note",
        ],
    )


def _interval_columns(values: Iterable[float]) -> dict[str, Any]:
    interval = t_interval(values)
    return {"seeds": interval.n, "mean": interval.mean, "ci_low": interval.low, "ci_high": interval.high}


def _wilcoxon(diff: np.ndarray) -> dict[str, Any]:
    """scipy's two-sided Wilcoxon signed-rank test (zero differences dropped), or NaN with the reason."""
    nonzero = diff[diff != 0]
    if len(nonzero) == 0:
        return {
            "wilcoxon": float("nan"),
            "p": float("nan"),
            "note": "no set differs" if len(diff) else "no sets",
        }
    result = stats.wilcoxon(nonzero)
    return {"wilcoxon": float(result.statistic), "p": float(result.pvalue), "note": ""}


# ---------------------------------------------------------------------------------------------- invariance


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count as a test)."""
    p = np.asarray(pvalues, float)
    adjusted = np.full_like(p, np.nan)
    tested = np.flatnonzero(np.isfinite(p))
    order = tested[np.argsort(p[tested], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def partial_correlation(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Partial correlation of x and y given z, along the last axis (rows of a 2-D array are samples)."""
    rxy, rxz, ryz = _pearson_rows(x, y), _pearson_rows(x, z), _pearson_rows(y, z)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.clip((rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2)), -1.0, 1.0)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (a * b).sum(axis=-1) / np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))


def partial_p(r: float, n: int) -> float:
    """Two-sided p of a partial correlation with one covariate (t with n - 3 degrees of freedom)."""
    if not np.isfinite(r) or n < 4:
        return float("nan")
    if abs(r) >= 1:
        return 0.0
    t = r * np.sqrt((n - 3) / (1 - r * r))
    return float(2 * stats.t.sf(abs(t), n - 3))


def invariance_sets(invariance: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, length, set): invariance scores and accuracy averaged over orderings and seeds, and
    `elemental_accuracy`, the seed-averaged accuracy of the set's member elementals, averaged over them."""
    columns = ["elemental_invariance", "composition_invariance", "accuracy"]
    frame = invariance.assign(set=invariance["composition"].map(set_of))
    per_seed = frame.groupby(["method", "length", "set", "seed"], as_index=False)[columns].mean()
    sets = per_seed.groupby(["method", "length", "set"], as_index=False)[columns].mean()
    elementals = results[results["length"] == 1].groupby(["method", "composition"])["accuracy"].mean()

    def member_accuracy(row: pd.Series) -> float:
        values = [elementals.get((row["method"], name), np.nan) for name in row["set"].split("+")]
        return float(np.mean(values))

    sets["elemental_accuracy"] = sets.apply(member_accuracy, axis=1) if len(sets) else []
    return sets


def invariance_tests(
    invariance: pd.DataFrame,
    results: pd.DataFrame,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """Every (x, y) pair of `INVARIANCE_PAIRS` x length 2..6 x method, sets as units: Pearson r, the partial
    r controlling for `elemental_accuracy`, its bootstrap percentile 95% CI, p, and p Holm-adjusted over every
    row; `significant` when the adjusted p is below `ALPHA`."""
    sets = invariance_sets(invariance, results)
    rng = np.random.default_rng(seed)
    rows = []
    for x, y in INVARIANCE_PAIRS:
        for length in (2, 3, 4, 5, 6):
            for method in method_order(sets["method"]):
                part = sets[(sets["method"] == method) & (sets["length"] == length)]
                part = part[[x, y, "elemental_accuracy"]].dropna()
                values = part[x].to_numpy(), part[y].to_numpy(), part["elemental_accuracy"].to_numpy()
                rows.append(
                    {
                        "x": x,
                        "y": y,
                        "length": length,
                        "method": method,
                        **_partial_test(*values, rng, samples),
                    }
                )
    columns = ["x", "y", "length", "method", "sets", "r", "partial_r", "ci_low", "ci_high", "p", "note"]
    out = pd.DataFrame(rows, columns=columns)
    out["p_holm"] = holm(out["p"])
    out["significant"] = (out["p_holm"] < ALPHA).where(out["p_holm"].notna())
    return out


def _partial_test(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator, samples: int
) -> dict[str, Any]:
    n = len(x)
    nan = float("nan")
    if n < 4:
        return {
            "sets": n,
            "r": nan,
            "partial_r": nan,
            "ci_low": nan,
            "ci_high": nan,
            "p": nan,
            "note": f"{n} set{'s' if n != 1 else ''}, 4 needed",
        }
    r = float(_pearson_rows(x, y))
    partial = float(partial_correlation(x, y, z))
    draws = np.sort(rng.integers(0, n, size=(samples, n)), axis=1)
    draws = draws[(np.diff(draws, axis=1) != 0).sum(axis=1) >= 3]  # resamples of at least 4 distinct sets
    boot = partial_correlation(x[draws], y[draws], z[draws])
    boot = boot[np.isfinite(boot)]
    low, high = (
        np.percentile(boot, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)]) if len(boot) else (nan, nan)
    )
    note = "" if np.isfinite(partial) else "constant values"
    return {
        "sets": n,
        "r": r,
        "partial_r": partial,
        "ci_low": float(low),
        "ci_high": float(high),
        "p": partial_p(partial, n),
        "note": note,
    }


# ------------------------------------------------------------------------------------------------ together


@dataclass
class Statistics:
    """Every statistics table of a report, each written as `statistics-<name>.csv`."""

    lengths: pd.DataFrame
    differences: pd.DataFrame
    sets: pd.DataFrame
    invariance: pd.DataFrame
    training: pd.DataFrame
    commuting: pd.DataFrame

    def tables(self) -> dict[str, pd.DataFrame]:
        return {f"statistics-{name}.csv": frame for name, frame in vars(self).items()}


def compute_statistics(results: pd.DataFrame, invariance: pd.DataFrame, runs: pd.DataFrame) -> Statistics:
    """All statistics of the report from a store's frames."""
    return Statistics(
        lengths=length_intervals(results),
        differences=paired_differences(results),
        sets=set_comparisons(results),
        invariance=invariance_tests(invariance, results),
        training=training_diagnostics(runs, results),
        commuting=commuting_diagnostics(results),
    )
