"""The names of corruptions and compositions, without the engine: what configs, plans and commands need to
check and print them, importable without torch (so `launch.py run --dry-run` and `status` start fast).

The built-in corruptions are listed here with their abbreviations; the engine (`comprobust.corruptions`)
implements them, and its `register` adds any new corruption's name here too.
"""

from __future__ import annotations

from collections.abc import Sequence

from comprobust.errors import UserError

ELEMENTALS: tuple[str, ...] = ("Contrast", "GaussianBlur", "ImpulseNoise", "Invert", "Rotate90", "Swirl")
"""The paper's six elemental corruptions, in the paper's order."""

BUILT_IN: dict[str, str] = {
    "Identity": "ID",
    "Contrast": "CO",
    "GaussianBlur": "GB",
    "ImpulseNoise": "IM",
    "Invert": "IN",
    "Rotate90": "R90",
    "Swirl": "SW",
}
"""Name -> abbreviation of the corruptions the engine implements."""

MOVES_AFTER: dict[str, frozenset[str]] = {
    # 255 - x commutes with every affine map whose weights sum to 1 (Contrast, the blur, the swirl's bilinear
    # sampling) and with every permutation of the pixels; not with ImpulseNoise (which element becomes 0 or 255).
    "Invert": frozenset({"Contrast", "GaussianBlur", "Swirl", "Rotate90"}),
    # A pixel permutation: Contrast's mean ignores it, and the blur's kernel is the same along both axes and
    # symmetric. Not the swirl (its centre is half a pixel off the grid's) nor ImpulseNoise (noise by position).
    "Rotate90": frozenset({"Contrast", "GaussianBlur"}),
}
"""Built-in corruption -> those it commutes with exactly (at every severity) and is applied after when it directly
precedes one of them (the engine's `Corruption.moves_after`): the two orders of such a pair give identical images."""


def exactly_commuting_pairs() -> tuple[tuple[str, str], ...]:
    """The pairs of elementals whose two orders give identical images (`MOVES_AFTER`), each in `ELEMENTALS` order."""
    rank = ELEMENTALS.index
    pairs = {(a, b) if rank(a) < rank(b) else (b, a) for a, after in MOVES_AFTER.items() for b in after}
    return tuple(sorted(pairs, key=lambda pair: (rank(pair[0]), rank(pair[1]))))


CompositionLike = str | Sequence[str]

_ABBREVIATION: dict[str, str] = dict(BUILT_IN)  # name -> abbreviation, built-ins and registered ones
_BY_ABBREVIATION: dict[str, str] = {short: name for name, short in BUILT_IN.items()}


def add_name(name: str, abbreviation: str) -> None:
    """Make a new corruption's name and abbreviation known (the engine's `register` calls this)."""
    if "-" in name or "-" in abbreviation:
        raise TypeError(
            f"corruption name {name!r} and abbreviation {abbreviation!r} must not contain '-' (it "
            "joins compositions)"
        )
    taken = _BY_ABBREVIATION.get(abbreviation)
    if _ABBREVIATION.get(name, abbreviation) != abbreviation or taken not in (None, name):
        raise TypeError(
            f"corruption {name!r} ({abbreviation}) clashes with a known one: "
            f"{name} is {_ABBREVIATION.get(name)}, {abbreviation} is {taken}"
        )
    _ABBREVIATION[name] = abbreviation
    _BY_ABBREVIATION[abbreviation] = name


def known_names() -> list[str]:
    """Names of every known corruption."""
    return list(_ABBREVIATION)


def abbreviation_of(name: str) -> str:
    return _ABBREVIATION[name]


def corruption_name(name: str) -> str:
    """The full name of a corruption given by name or abbreviation; a UserError for an unknown one."""
    full_name = _BY_ABBREVIATION.get(name, name)
    if full_name not in _ABBREVIATION:
        raise UserError(f"unknown corruption {name!r}; known corruptions: {', '.join(known_names())}")
    return full_name


def parse_composition(composition: CompositionLike) -> tuple[str, ...]:
    """Normalise "Contrast-Rotate90", ["CO", "R90"] or ("Contrast",) to a tuple of full names, checked."""
    parts = composition.split("-") if isinstance(composition, str) else list(composition)
    if not parts:
        raise UserError("a composition needs at least one corruption (use 'Identity' for clean images)")
    names = []
    for part in parts:
        if not isinstance(part, str):
            raise UserError(f"composition {composition!r}: corruption names must be strings, got {part!r}")
        try:
            names.append(corruption_name(part))
        except UserError as err:
            raise UserError(f"composition {composition!r}: {err}") from None
    return tuple(names)


def composition_name(composition: CompositionLike) -> str:
    """Canonical name, e.g. "Contrast-Rotate90" (Contrast first, then Rotate90)."""
    return "-".join(parse_composition(composition))


def abbreviate(composition: CompositionLike) -> str:
    """Short name, e.g. "CO-R90"."""
    return "-".join(_ABBREVIATION[name] for name in parse_composition(composition))
