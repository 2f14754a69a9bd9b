"""Sets of compositions to test on: the paper's 167, all ordered pairs, all orderings up to length k, or a list.

A composition is a tuple of corruption names applied left to right, e.g. ("Contrast", "Rotate90").
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from typing import Any

from comprobust.corruption_names import ELEMENTALS, parse_composition
from comprobust.errors import UserError

Composition = tuple[str, ...]

PAPER_SEED = 2778
"""The seed of the paper's sampling of orderings (`random.seed(2778)`)."""


def paper_compositions(elementals: Sequence[str] = ELEMENTALS, seed: int = PAPER_SEED) -> list[Composition]:
    """The paper's test set: Identity, the elementals, all ordered pairs, then sampled orderings of longer sets.

    For n >= 3 elementals, each n-subset (lexicographic in `elementals` order) contributes
    ceil(30 / C(len, n)) orderings drawn with `random.sample`. With the defaults this is the paper's 167.
    """
    base = list(elementals)
    rng = random.Random(seed)
    sequences: list[Composition] = [("Identity",), *((name,) for name in base)]
    sequences += list(itertools.permutations(base, 2))
    for n in range(3, len(base) + 1):
        per_subset = math.ceil(30 / math.comb(len(base), n))
        for subset in itertools.combinations(base, n):
            sequences += rng.sample(list(itertools.permutations(subset)), per_subset)
    return sequences


def ordered_pairs(elementals: Sequence[str] = ELEMENTALS) -> list[Composition]:
    """Identity, the elementals and every ordered pair of distinct elementals."""
    return orderings_up_to(2, elementals)


def orderings_up_to(max_length: int, elementals: Sequence[str] = ELEMENTALS) -> list[Composition]:
    """Identity plus every ordering of every set of 1..max_length distinct elementals."""
    if not isinstance(max_length, int) or not 1 <= max_length <= len(elementals):
        raise UserError(f"max_length must be an integer in 1..{len(elementals)}, got {max_length!r}")
    sequences: list[Composition] = [("Identity",)]
    for n in range(1, max_length + 1):
        sequences += list(itertools.permutations(elementals, n))
    return sequences


def resolve_compositions(spec: Any) -> list[Composition]:
    """Turn a config value into a list of compositions.

    Accepted: "paper" (the 167), "pairs", {"max_length": k}, or a list of compositions, each a name such as
    "Contrast-Rotate90" or a list of names.
    """
    if spec in (None, "paper"):
        return paper_compositions()
    if spec == "pairs":
        return ordered_pairs()
    if isinstance(spec, dict) and set(spec) == {"max_length"}:
        return orderings_up_to(spec["max_length"])
    if isinstance(spec, list) and spec:
        resolved = [parse_composition(item) for item in spec]
        duplicates = sorted({"-".join(c) for c in resolved if resolved.count(c) > 1})
        if duplicates:
            raise UserError(f"compositions list repeats {', '.join(duplicates)}; list each once")
        return resolved
    raise UserError(
        f"compositions: expected 'paper', 'pairs', {{max_length: K}} or a list of names like "
        f"'Contrast-Rotate90', got {spec!r}"
    )
