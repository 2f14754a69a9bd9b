"""Cue datasets' mechanisms and conditions (Robust Socratic's "mechanisms"; Wu et al. 2024), without torch.

A cue dataset has ordered *mechanisms* (cues); the first, the base, carries the label (dominoes: I the image, A the
class box, B the digit half). A *condition* gives each mechanism one setting:

- a fraction f in [0, 1] of the images carry the cue of their own label. How the fraction is taken is the
  mechanism's: `first` (the first floor(n_c f) images of each class in split order, deterministic, as the
  reference's `get_cue_ids`) or `keep` (each image keeps it with probability f, drawn per (seed, epoch, index));
- `R` (randomised): every image carries the cue of a class drawn uniformly from the mechanism's `random_classes`;
- `X` (conflict): every image carries the cue of a class other than its label, drawn uniformly from the
  mechanism's `conflict_classes`, and distinct across the mechanisms in conflict.

A condition is written as letters (`IAB`: the listed mechanisms at 1, the rest at 0), one setting per mechanism in
percent (`"100 R 60"`), a mapping (`{image: 1.0, box: R, half: 0.6}`, missing mechanisms at 0), or a named set
(`exhaustive`, `targeted`, `targeted_cf`, `frac_cf`). Its canonical name is its letters when every setting is 0
or 1 (and one is 1), else its percent form (`100 R 60`); its *length* is the number of mechanisms at f > 0 that
are neither R nor X.

`CueModel.draw` decides, for a batch of images, which class each cue shows (-1 where absent) and gives each
(image, mechanism) a 64-bit number for choosing source items: a pure function of (seed, epoch, stream, index),
so an image's cues never depend on its batch.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Literal

import numpy as np

from comprobust.errors import UserError
from comprobust.noise import noise_keys

RANDOM = "R"
CONFLICT = "X"
Setting = float | str  # a fraction in [0, 1], RANDOM or CONFLICT

ABSENT, TRUE, RANDOMISED, CONFLICTING = 0, 1, 2, 3
"""`CueDraws.modes` values: the cue is absent, shows the label's class, a random class, a conflicting class."""

ROBUST_SOCRATIC_SETS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "exhaustive": ("I", "A", "B", "AB", "IB", "IA", "IAB"),
        "targeted": ("100 0 0", "100 0 60", "100 30 60", "100 60 90", "100 90 60"),
        "targeted_cf": ("100 100 100", "0 100 100", "100 R 100", "100 100 R", "R 100 100"),
        "frac_cf": ("100 0 0", "0 100 0", "0 0 100"),
    }
)
"""The reference's `ConfigGroups` for three mechanisms (image, box, half), in percent per mechanism."""


@dataclasses.dataclass(frozen=True)
class Mechanism:
    """One cue of a dataset."""

    name: str  # e.g. "image"
    letter: str  # one upper-case letter, e.g. "I"
    fraction: Literal["first", "keep"]  # how a fraction f < 1 picks the images that carry the cue
    random_classes: tuple[int, ...] | None = None  # what R draws from; None: every class
    conflict_classes: tuple[int, ...] | None = None  # what X draws from (minus the label); None: every class


@dataclasses.dataclass(frozen=True)
class Condition:
    """One setting per mechanism, in the model's mechanism order, and its canonical name."""

    name: str
    settings: tuple[Setting, ...]

    @property
    def length(self) -> int:
        """How many mechanisms carry the label's own cue in some images (f > 0, not R, not X)."""
        return sum(1 for s in self.settings if not isinstance(s, str) and s > 0)


@dataclasses.dataclass(frozen=True)
class CueDraws:
    """What a batch of images shows, per mechanism (arrays of the batch's length)."""

    labels: np.ndarray  # int64: the training target (the base mechanism's true class)
    classes: Mapping[str, np.ndarray]  # int64: the class each cue shows, -1 where it is absent
    modes: Mapping[str, np.ndarray]  # uint8: ABSENT, TRUE, RANDOMISED or CONFLICTING
    picks: Mapping[str, np.ndarray]  # uint64: a random number to choose the cue's source item with


def class_ranks(labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(rank of each image within its class in split order, images per class): what `first` fractions need."""
    labels = np.asarray(labels, np.int64)
    ranks = np.zeros(len(labels), np.int64)
    counts = np.zeros(num_classes, np.int64)
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        ranks[members] = np.arange(len(members))
        counts[label] = len(members)
    return ranks, counts


def first_count(count: int, fraction: float) -> int:
    """floor(count * fraction), robust to float error (0.3 * 300 is 90, never 89)."""
    return math.floor(round(count * fraction, 9))


def _percent(setting: Setting) -> str:
    return setting if isinstance(setting, str) else f"{100 * setting:g}"


def _uniform(keys: np.ndarray) -> np.ndarray:
    """Floats in [0, 1) from the top 53 bits of uint64 keys."""
    return (keys >> np.uint64(11)).astype(np.float64) / float(2**53)


@dataclasses.dataclass(frozen=True)
class CueModel:
    """A cue dataset's mechanisms, class count and named condition sets; parses conditions and draws cues."""

    dataset: str  # for messages
    mechanisms: tuple[Mechanism, ...]
    num_classes: int
    condition_sets: Mapping[str, tuple[str, ...]] = dataclasses.field(
        default_factory=lambda: ROBUST_SOCRATIC_SETS
    )

    def __post_init__(self) -> None:
        letters = [m.letter for m in self.mechanisms]
        if not self.mechanisms or len(set(letters)) != len(letters):
            raise TypeError(f"{self.dataset}: mechanisms need distinct letters, got {letters}")
        if any(
            len(m.letter) != 1 or not m.letter.isupper() or m.letter in (RANDOM, CONFLICT)
            for m in self.mechanisms
        ):
            raise TypeError(f"{self.dataset}: a mechanism letter is one upper-case letter other than R and X")
        object.__setattr__(self, "condition_sets", MappingProxyType(dict(self.condition_sets)))

    # ---------------------------------------------------------------------------------------------------------
    # Parsing.

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.mechanisms)

    def describe(self) -> str:
        """`I (image), A (box), B (half)`: the valid mechanisms, for messages."""
        return ", ".join(f"{m.letter} ({m.name})" for m in self.mechanisms)

    def _syntax(self) -> str:
        example = "".join(m.letter for m in self.mechanisms)
        percent = " ".join(["100", "R", "60", "0", "X"][: len(self.mechanisms)])
        return (
            f"write letters of {self.describe()} such as {example}, one setting per mechanism such as "
            f"'{percent}' (percent, R randomised, X conflict), a mapping such as "
            f"{{{self.mechanisms[0].name}: 1.0, {self.mechanisms[-1].name}: R}}, or a set: "
            f"{', '.join(self.condition_sets) or 'none defined'}"
        )

    def condition(self, settings: Sequence[Setting]) -> Condition:
        """The condition of explicit settings (fractions in [0, 1], R or X), with its canonical name."""
        settings = tuple(settings)
        if len(settings) != len(self.mechanisms):
            raise UserError(
                f"a condition of {self.dataset} has {len(self.mechanisms)} settings ({self.describe()}), "
                f"got {len(settings)}"
            )
        binary = all(not isinstance(s, str) and s in (0, 1) for s in settings)
        if binary and any(s == 1 for s in settings):
            name = "".join(m.letter for m, s in zip(self.mechanisms, settings) if s == 1)
        else:
            name = " ".join(_percent(s) for s in settings)
        return Condition(name, tuple(s if isinstance(s, str) else float(s) for s in settings))

    def _setting(self, value: object, where: str, percent: bool) -> Setting:
        if isinstance(value, str) and value.strip().upper() in (RANDOM, CONFLICT):
            return value.strip().upper()
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if isinstance(value, bool) or math.isnan(number):
            unit = "a percentage 0..100" if percent else "a fraction in [0, 1]"
            raise UserError(f"{where}: setting {value!r} must be {unit}, R (randomised) or X (conflict)")
        fraction = number / 100 if percent else number
        if not 0.0 <= fraction <= 1.0:
            unit = "percentages must be in 0..100" if percent else "fractions must be in [0, 1]"
            raise UserError(f"{where}: setting {value!r} is out of range; {unit}")
        return fraction

    def parse(self, value: object) -> Condition:
        """One condition from letters, percent settings or a mapping (module docstring); one-line UserErrors
        name the bad value and the valid choices."""
        if isinstance(value, Condition):
            return value
        if isinstance(value, Mapping):
            by_key = {m.name: i for i, m in enumerate(self.mechanisms)}
            by_key.update({m.letter: i for i, m in enumerate(self.mechanisms)})
            settings: list[Setting] = [0.0] * len(self.mechanisms)
            for key, setting in value.items():
                if key not in by_key:
                    raise UserError(
                        f"condition {dict(value)!r}: unknown mechanism {key!r}; mechanisms of {self.dataset}: "
                        f"{self.describe()}"
                    )
                settings[by_key[key]] = self._setting(
                    setting, f"condition {dict(value)!r}, {key}", percent=False
                )
            return self.condition(settings)
        if not isinstance(value, str) or not value.strip():
            raise UserError(f"condition {value!r} of {self.dataset}: {self._syntax()}")
        text = value.strip()
        if text in self.condition_sets:
            raise UserError(
                f"{text!r} is a set of conditions ({', '.join(self.condition_sets[text])}), not one condition; "
                "use it where a list of conditions is expected"
            )
        tokens = text.split()
        if len(tokens) > 1 or re.fullmatch(r"[0-9.]+", text):
            where = f"condition {text!r}"
            if len(tokens) != len(self.mechanisms):
                raise UserError(
                    f"{where} has {len(tokens)} setting(s) but {self.dataset} has {len(self.mechanisms)} mechanisms "
                    f"({self.describe()}); {self._syntax()}"
                )
            return self.condition([self._setting(token, where, percent=True) for token in tokens])
        letters = {m.letter: i for i, m in enumerate(self.mechanisms)}
        bad = [c for c in text if c not in letters]
        if bad and not text.isupper():  # a word: a misspelt set name, not letters
            close = difflib.get_close_matches(text, list(self.condition_sets), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"unknown condition {text!r}{hint}; {self._syntax()}")
        if bad:
            shown = (
                f"unknown mechanism {bad[0]!r} in {text!r}"
                if len(text) > 1
                else f"unknown mechanism {text!r}"
            )
            raise UserError(f"condition {text!r}: {shown}; {self._syntax()}")
        if len(set(text)) != len(text):
            raise UserError(f"condition {text!r} names a mechanism twice; mechanisms: {self.describe()}")
        return self.condition([1.0 if m.letter in text else 0.0 for m in self.mechanisms])

    def conditions(self, value: object) -> tuple[Condition, ...]:
        """A list of conditions: a set name, one condition, or a list of conditions and set names (in order,
        each once; a condition listed twice under any spelling is an error)."""
        items: list[object]
        if isinstance(value, str) and value.strip() in self.condition_sets:
            items = list(self.condition_sets[value.strip()])
        elif isinstance(value, (str, Mapping, Condition)):
            items = [value]
        elif isinstance(value, Sequence) and value:
            items = []
            for item in value:
                if isinstance(item, str) and item.strip() in self.condition_sets:
                    items.extend(self.condition_sets[item.strip()])
                else:
                    items.append(item)
        else:
            raise UserError(
                f"conditions of {self.dataset}: expected a set name or a list, got {value!r}; {self._syntax()}"
            )
        out: dict[str, Condition] = {}
        for item in items:
            condition = self.parse(item)
            if condition.name in out:
                raise UserError(f"conditions of {self.dataset}: {condition.name!r} is listed twice")
            out[condition.name] = condition
        return tuple(out.values())

    # ---------------------------------------------------------------------------------------------------------
    # Drawing.

    def _class_pool(self, classes: tuple[int, ...] | None) -> np.ndarray:
        return np.arange(self.num_classes) if classes is None else np.asarray(classes, np.int64)

    def draw(
        self,
        condition: Condition,
        labels: np.ndarray,
        ranks: np.ndarray,
        counts: np.ndarray,
        indices: np.ndarray,
        seed: int,
        epoch: int = 0,
        stream: str = "",
    ) -> CueDraws:
        """Which class each cue shows for images `indices` (with their `labels` and within-class `ranks`; `counts`
        holds the images per class of the whole split). A pure function of (seed, epoch, stream, index): pass the
        split's name as `stream`, the training epoch for training and a fixed epoch (0) for evaluation."""
        labels = np.asarray(labels, np.int64)
        ranks, indices = np.asarray(ranks, np.int64), np.asarray(indices, np.int64)
        if not len(labels) == len(ranks) == len(indices):
            raise ValueError(f"{len(labels)} labels, {len(ranks)} ranks and {len(indices)} indices")
        n = len(labels)
        classes: dict[str, np.ndarray] = {}
        modes: dict[str, np.ndarray] = {}
        picks: dict[str, np.ndarray] = {}
        used = np.zeros((n, self.num_classes), bool)
        used[np.arange(n), labels] = True  # conflicts avoid the label and each other
        for mechanism, setting in zip(self.mechanisms, condition.settings):

            def keys(purpose: str, name: str = mechanism.name) -> np.ndarray:
                return noise_keys(seed, ("cues", stream, f"epoch{epoch}", name, purpose), indices)

            picks[mechanism.name] = keys("pick")
            mode = np.zeros(n, np.uint8)
            shown = np.full(n, -1, np.int64)
            if setting == RANDOM:
                pool = self._class_pool(mechanism.random_classes)
                shown = pool[(keys("class") % np.uint64(len(pool))).astype(np.int64)]
                mode[:] = RANDOMISED
            elif setting == CONFLICT:
                allowed = np.zeros(self.num_classes, bool)
                allowed[self._class_pool(mechanism.conflict_classes)] = True
                available = allowed[None, :] & ~used
                choices = available.sum(axis=1)
                if n and choices.min() == 0:
                    raise UserError(
                        f"condition {condition.name!r}: mechanism {mechanism.name} has no class left for a conflict "
                        f"(too many mechanisms in conflict for {self.num_classes} classes)"
                    )
                draw = (keys("class") % np.maximum(choices, 1).astype(np.uint64)).astype(np.int64)
                shown = np.argmax(np.cumsum(available, axis=1) > draw[:, None], axis=1).astype(np.int64)
                used[np.arange(n), shown] = True
                mode[:] = CONFLICTING
            else:
                assert not isinstance(setting, str)
                if mechanism.fraction == "keep":
                    present = _uniform(keys("keep")) < setting
                else:
                    counts = np.asarray(counts, np.int64)
                    limit = np.array([first_count(int(c), setting) for c in counts], np.int64)
                    present = ranks < limit[labels]
                shown = np.where(present, labels, -1)
                mode[present] = TRUE
            classes[mechanism.name] = shown
            modes[mechanism.name] = mode
        return CueDraws(labels, MappingProxyType(classes), MappingProxyType(modes), MappingProxyType(picks))
