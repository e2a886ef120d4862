"""The one result type every explanation method returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

KINDS = ("native", "cam", "attribution")


def resize_map(values: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Bilinear resize of an H x W map to ``size`` (an int for a square, or (height, width)), with
    pixel centres aligned as in ``cv2.resize`` / ``F.interpolate(align_corners=False)`` — the same
    geometry as the resize that made the model input from the crop, so the map stays registered."""
    import cv2

    h, w = (size, size) if isinstance(size, int) else size
    values = np.asarray(values, dtype=np.float32)
    if values.shape == (h, w):
        return values.copy()
    return cv2.resize(values, (w, h), interpolation=cv2.INTER_LINEAR)


@dataclass
class ExplanationMap:
    """One map of one image: where a method says the model's evidence for ``target`` lies.

    ``raw`` is what the method produced, at its own resolution (8 x 8 for LANMSFF block 4's MassAtt,
    4 x 4 for mini-Xception's last block, the input size for pixel attributions). ``values`` is
    ``raw`` resized to the model input (size x size) and ``crop_values`` to the photo crop, the
    resolution maps are overlaid at. Values are never renormalised per image: scales are chosen
    when drawing (:mod:`ferx.explain.overlay`), so maps can share one.
    """

    raw: np.ndarray
    values: np.ndarray
    method: str  # "gradcam", "massatt_block4_spatial", "integrated_gradients", ...
    kind: str  # "native" (the model's own attention), "cam", "attribution"
    model: str
    target: int | None  # the class explained; None where the method ignores classes (attention, EigenCAM)
    signed: bool  # True when negative values mean evidence *against* the target
    params: dict = field(default_factory=dict)
    elapsed_s: float = 0.0
    target_label: str | None = None
    contrast: int | None = None  # explained "target over contrast" (logit difference) when set
    contrast_label: str | None = None
    crop_values: np.ndarray | None = None
    regions: dict | None = None  # facial-region breakdown over the crop (ferx.explain.regions.region_breakdown)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def size(self) -> int:
        return self.values.shape[0]

    @property
    def source_shape(self) -> tuple[int, int]:
        return tuple(self.raw.shape)

    def at_size(self, size: int | tuple[int, int]) -> np.ndarray:
        """The map at another resolution, resized from ``raw`` (not from an upsampled copy)."""
        return resize_map(self.raw, size)

    def with_crop(self, crop_size: int) -> "ExplanationMap":
        """Fill ``crop_values`` for a square photo crop of ``crop_size`` pixels."""
        self.crop_values = self.at_size(crop_size)
        return self

    def with_labels(self, classes) -> "ExplanationMap":
        if self.target is not None:
            self.target_label = classes[self.target]
        if self.contrast is not None:
            self.contrast_label = classes[self.contrast]
        return self

    def to_dict(self) -> dict:
        """Everything but the arrays' full contents (JSON-ready)."""
        v = self.values
        return {"method": self.method, "kind": self.kind, "model": self.model, "target": self.target,
                "target_label": self.target_label, "contrast": self.contrast, "contrast_label": self.contrast_label,
                "signed": self.signed, "params": self.params, "elapsed_s": round(self.elapsed_s, 6),
                "source_shape": list(self.source_shape), "size": self.size,
                "crop_size": None if self.crop_values is None else self.crop_values.shape[0],
                "regions": self.regions,
                "stats": {"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
                          "abs_sum": float(np.abs(v).sum())}}


def make_map(raw, size: int, **fields) -> ExplanationMap:
    raw = np.asarray(raw, dtype=np.float32)
    return ExplanationMap(raw=raw, values=resize_map(raw, size), **fields)
