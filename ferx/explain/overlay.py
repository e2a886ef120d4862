"""Maps drawn over faces: colormap, opacity, percentile clipping and a scale maps can share.

A :class:`MapScale` fixes which value is the bottom and which the top of the colormap. Per map
(``map_scale([m])``) every map uses its full range, which makes any map look confident; shared
(``map_scale(maps)``) one range covers several maps, so "hotter" means "larger" across them — use
it for maps in the same units (one method on two models, or on two classes). The top is a
percentile of the values (99th by default), so one extreme pixel cannot wash the rest out.

Unsigned maps run from the bottom (dark end of ``inferno``) to the top (bright yellow); signed maps are
symmetric around 0 on a diverging colormap (``RdBu_r``: red for the target, blue against), and
their opacity follows |value| so regions without evidence show the face unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from ferx.explain.maps import ExplanationMap

# perceptually uniform, dark (low) to bright (high) in even steps, legible to colour-blind readers and in grey: jet ran
# dark blue → bright cyan → dark red, its top as dark as its bottom, so "bright = kept" and "warm" misread it
DEFAULT_CMAP = "inferno"
DEFAULT_SIGNED_CMAP = "RdBu_r"
CLIP_PERCENTILE = 99.0  # a colour scale's top: this percentile of the maps' values (--clip-percentile, the app)
ALPHA = 0.5  # a map's opacity over the face (ferx explain --alpha, the app)


@dataclass(frozen=True)
class MapScale:
    vmin: float
    vmax: float
    signed: bool
    clip_percentile: float

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Values -> [0, 1] (signed: 0.5 is zero), clipped."""
        span = max(self.vmax - self.vmin, 1e-12)
        return np.clip((np.asarray(values, dtype=np.float32) - self.vmin) / span, 0.0, 1.0)

    def to_dict(self) -> dict:
        return {"vmin": self.vmin, "vmax": self.vmax, "signed": self.signed, "clip_percentile": self.clip_percentile}


def _values(m) -> np.ndarray:
    return m.values if isinstance(m, ExplanationMap) else np.asarray(m, dtype=np.float32)


def map_scale(maps: Iterable[ExplanationMap | np.ndarray], clip_percentile: float = CLIP_PERCENTILE,
              signed: bool | None = None) -> MapScale:
    """One scale for all of ``maps``: unsigned [minimum, p-th percentile];
    signed [-p, p] with p the percentile of |value|."""
    maps = list(maps)
    if not maps:
        raise ValueError("map_scale needs at least one map")
    if signed is None:
        signed = any(m.signed for m in maps if isinstance(m, ExplanationMap))
    flat = np.concatenate([_values(m).reshape(-1) for m in maps])
    if signed:
        top = float(np.percentile(np.abs(flat), clip_percentile))
        top = top if top > 0 else 1.0
        return MapScale(-top, top, True, clip_percentile)
    # 0 where the maps reach it (ReLU'd CAMs); else their minimum, so a gate that never closes (MassAtt's
    # sigmoid, ~0.45-0.5 everywhere) shows its contrast instead of one flat colour
    low = float(flat.min())
    top = float(np.percentile(flat, clip_percentile))
    if top <= low:
        top = low + 1.0 if flat.max() <= low else float(flat.max())
    return MapScale(low, top, False, clip_percentile)


# how maps share colour scales (map_scales); ferx explain's --scale lists the same two (its parser does not import
# this module: that would import torch for every command)
SCALES = ("per-map", "shared")


def map_scales(rows, scale: str = "per-map", clip_percentile: float = CLIP_PERCENTILE) -> list[list[MapScale]]:
    """A :class:`MapScale` per (row, map) of rows that each hold ``.maps`` (one row per model):
    each map its own (``per-map``), or one per method across all rows (``shared``: the same method
    on several models is drawn on one scale)."""
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
    if scale == "per-map":
        return [[map_scale([m], clip_percentile) for m in row.maps] for row in rows]
    by_method: dict[str, list] = {}
    for row in rows:
        for m in row.maps:
            by_method.setdefault(m.method, []).append(m)
    shared = {k: map_scale(v, clip_percentile) for k, v in by_method.items()}
    return [[shared[m.method] for m in row.maps] for row in rows]


FLAT_SPREAD = 0.15  # a map whose values (minimum to 99th percentile) span less than this share of their top is nearly flat


def flat_range(scale: MapScale | np.ndarray) -> str | None:
    """'nearly flat: 0.147-0.164' for a map drawn on a colour scale that stretches a small spread into every
    colour (a sigmoid gate at about 0.15 everywhere looks as structured as a sharp map); None otherwise.
    ``scale``: the :class:`MapScale` the map is drawn with, so the range quoted is its colour bar's (or the
    map's values, for the scale :func:`map_scale` gives them alone)."""
    scale = scale if isinstance(scale, MapScale) else map_scale([scale])
    lo, hi = scale.vmin, scale.vmax
    top = max(abs(lo), abs(hi))
    return f"nearly flat: {lo:.3g}–{hi:.3g}" if top > 0 and hi - lo < FLAT_SPREAD * top else None


def describe_scale(scale: MapScale, mode: str) -> str:
    """The colour bar's range in words: what its two numbers are, and which maps share it."""
    p = f"{scale.clip_percentile:g}th percentile"
    span = (f"−/+ the {p} of |value|, 0 in the middle" if scale.signed else f"the map's minimum to its {p}")
    return f"{span}; {'one scale for this method across models' if mode == 'shared' else 'this map alone'}"


def colormap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def overlay(image: np.ndarray, values: np.ndarray, scale: MapScale | None = None, *, cmap: str | None = None,
            alpha: float = ALPHA) -> np.ndarray:
    """``values`` (H x W, the image's size) coloured and blended over ``image`` (uint8 H x W or
    H x W x 3). Returns uint8 H x W x 3."""
    values = np.asarray(values, dtype=np.float32)
    rgb = np.asarray(image)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if rgb.shape[:2] != values.shape:
        raise ValueError(f"map {values.shape} and image {rgb.shape[:2]} differ in size; resize the map first "
                         "(ExplanationMap.at_size / with_crop)")
    scale = scale or map_scale([values])
    cmap = cmap or (DEFAULT_SIGNED_CMAP if scale.signed else DEFAULT_CMAP)
    norm = scale.normalise(values)
    colour = colormap(cmap)(norm)[..., :3]
    if scale.signed:
        weight = alpha * np.abs(norm - 0.5)[..., None] * 2  # no evidence -> no colour
    else:
        weight = np.full(values.shape + (1,), alpha, dtype=np.float32)
    out = (1 - weight) * (rgb.astype(np.float32) / 255) + weight * colour
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
