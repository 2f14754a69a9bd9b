"""The report's tables over compositions: per-composition means over seeds, the headline (mean accuracy by
composition length), mean and std over seeds, invariance means and their correlations, chance and ceiling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from comprobust.errors import UserError
from comprobust.results import method_order
from comprobust.statistics import per_seed_length_means

PAIRS = {  # invariance figure -> (x, y)
    "elem-comp": ("elemental_invariance", "composition_invariance"),
    "elem-acc": ("elemental_invariance", "accuracy"),
    "comp-acc": ("composition_invariance", "accuracy"),
}


def composition_means(results: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, composition): accuracy and loss averaged over seeds, and the number of seeds."""
    grouped = results.groupby(["method", "composition"], sort=False)
    out = grouped.agg(
        abbreviation=("abbreviation", "first"),
        length=("length", "first"),
        accuracy=("accuracy", "mean"),
        loss=("loss", "mean"),
        seeds=("seed", "nunique"),
    )
    return out.reset_index()


def headline_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean accuracy (%) by number of corruptions (columns 1..6) per method (rows, paper order), averaged
    over seeds; column "all" is the mean over every composition."""
    per_seed = per_seed_length_means(results)
    table = per_seed.groupby(["method", "length"])["accuracy"].mean().unstack("length")
    overall = results.groupby(["method", "seed"])["accuracy"].mean().groupby("method").mean()
    table["all"] = overall
    table = table.reindex(method_order(results["method"]))
    table.index.name = "method"
    table.columns.name = "corruptions"
    return table


def summary_table(results: pd.DataFrame) -> pd.DataFrame:
    """Mean ± sample std (ddof 1) over seeds of the per-seed mean accuracy, per method and length."""
    per_seed = per_seed_length_means(results)
    out = per_seed.groupby(["method", "length"])["accuracy"].agg(mean="mean", std="std", seeds="count")
    out = out.reset_index()
    order = {m: i for i, m in enumerate(method_order(out["method"]))}
    out = out.sort_values(["method", "length"], key=lambda s: s.map(order) if s.name == "method" else s)
    return out.reset_index(drop=True)


def invariance_means(invariance: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, composition): invariance scores and accuracy averaged over seeds."""
    if invariance.empty:
        return pd.DataFrame(
            columns=[
                "method",
                "composition",
                "length",
                "elemental_invariance",
                "composition_invariance",
                "accuracy",
            ]
        )
    return invariance.groupby(["method", "composition"], as_index=False, sort=False).agg(
        length=("length", "first"),
        elemental_invariance=("elemental_invariance", "mean"),
        composition_invariance=("composition_invariance", "mean"),
        accuracy=("accuracy", "mean"),
    )


def pearson(x_values: Sequence[float], y_values: Sequence[float]) -> tuple[float, float, str]:
    """(r, two-sided p, note) from scipy.stats.pearsonr; NaN with a reason when it is undefined."""
    from scipy import stats

    x, y = np.asarray(x_values, float), np.asarray(y_values, float)
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 3:
        return float("nan"), float("nan"), f"{len(x)} point{'s' if len(x) != 1 else ''}"
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan"), "constant values"
    result = stats.pearsonr(x, y)
    return float(result.statistic), float(result.pvalue), ""


def correlation_table(means: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """Pearson r and p per invariance figure, composition length (2..6) and method."""
    rows = []
    for plot, (x, y) in PAIRS.items():
        for length in (2, 3, 4, 5, 6):
            for method in methods:
                part = means[(means["method"] == method) & (means["length"] == length)]
                part = part[[x, y]].dropna()
                r, p, note = pearson(part[x], part[y])
                rows.append(
                    {
                        "plot": plot,
                        "x": x,
                        "y": y,
                        "length": length,
                        "method": method,
                        "n": len(part),
                        "r": r,
                        "p": p,
                        "note": note,
                    }
                )
    return pd.DataFrame(rows, columns=["plot", "x", "y", "length", "method", "n", "r", "p", "note"])


def chance_level(dataset: str) -> float | None:
    """100 / number of classes of the dataset, or None for a dataset this installation does not know."""
    from comprobust.data.registry import get_dataset_spec

    try:
        return 100.0 / get_dataset_spec(dataset).num_classes
    except UserError:
        return None


def ceiling_level(means: pd.DataFrame) -> float | None:
    """The best Identity accuracy of any method (seed-averaged)."""
    identity = means[means["composition"] == "Identity"]
    return float(identity["accuracy"].max()) if len(identity) else None


# ---------------------------------------------------------------------------------------------------- report
