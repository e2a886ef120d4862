"""One label vocabulary for every dataset and model.

Canonical names are lower-case adjectives (``happy``, ``angry``, ``sad`` ...). Each dataset or
model has an ordered :class:`LabelSet`; :func:`label_mapping` maps indices between two sets by
name, so a 7-class FER-2013 model can be scored on 8-class FERPlus (``contempt`` has no
counterpart and maps to -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CANONICAL = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral", "contempt")
# one colour per class in every figure that colours by class: Okabe & Ito's palette for colour-blind readers (neutral
# a dark grey), every two classes at least 17 CIELAB units apart for deuteranopes and protanopes (tab10's red angry and
# green disgust were 7.3 apart for deuteranopes, its green disgust and orange happy 4.6 for protanopes)
CLASS_COLOURS = {"angry": "#d55e00", "disgust": "#009e73", "fear": "#cc79a7", "happy": "#e69f00", "sad": "#0072b2",
                 "surprise": "#56b4e9", "neutral": "#555555", "contempt": "#f0e442"}


def in_canonical_order(names) -> list[str]:
    """Class names in :data:`CANONICAL` order (others after them, as given): the order of every table and
    figure, whatever order a model's or a dataset's label set has."""
    names = list(names)
    return sorted(names, key=lambda n: (CANONICAL.index(n) if n in CANONICAL else len(CANONICAL), names.index(n)))


# Spellings found in dataset folders and label files -> canonical name.
ALIASES = {
    "anger": "angry",
    "angry": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "scared": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
    "neutral": "neutral",
    "contempt": "contempt",
}


def canonical_name(name: str) -> str:
    """Return the canonical label for a folder or column name, or raise ``KeyError``."""
    key = name.strip().lower()
    if key not in ALIASES:
        raise KeyError(f"unknown expression label {name!r}; known spellings: {sorted(ALIASES)}")
    return ALIASES[key]


@dataclass(frozen=True)
class LabelSet:
    name: str
    classes: tuple[str, ...]

    def __post_init__(self):
        unknown = [c for c in self.classes if c not in CANONICAL]
        if unknown:
            raise ValueError(f"label set {self.name!r} has non-canonical classes {unknown}")

    def __len__(self) -> int:
        return len(self.classes)

    def index(self, name: str) -> int:
        return self.classes.index(canonical_name(name))


# FER-2013 order (Kaggle CSV label ids 0..6).
FER2013_7 = LabelSet("fer2013", ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"))
# FERPlus label.csv column order (first eight columns).
FERPLUS_8 = LabelSet("ferplus", ("neutral", "happy", "surprise", "sad", "angry", "disgust", "fear", "contempt"))
# CK+48 folder names, alphabetical.
CKPLUS_7 = LabelSet("ckplus", ("angry", "contempt", "disgust", "fear", "happy", "sad", "surprise"))

LABEL_SETS = {s.name: s for s in (FER2013_7, FERPLUS_8, CKPLUS_7)}


def get_label_set(name_or_classes: str | list[str] | tuple[str, ...]) -> LabelSet:
    """A registered label set by name, or an ad-hoc one from a list of class names."""
    if isinstance(name_or_classes, str):
        if name_or_classes not in LABEL_SETS:
            raise KeyError(f"unknown label set {name_or_classes!r}; known: {sorted(LABEL_SETS)}")
        return LABEL_SETS[name_or_classes]
    classes = tuple(canonical_name(c) for c in name_or_classes)
    for s in LABEL_SETS.values():
        if s.classes == classes:
            return s
    return LabelSet("custom", classes)


def label_mapping(src: LabelSet, dst: LabelSet) -> np.ndarray:
    """``m[i]`` is the index in ``dst`` of ``src.classes[i]``, or -1 when ``dst`` lacks it."""
    return np.array([dst.classes.index(c) if c in dst.classes else -1 for c in src.classes], dtype=np.int64)
