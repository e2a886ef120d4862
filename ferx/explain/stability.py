"""Stability probe: do a model's label and map survive the small changes a camera makes?

FER users' most common complaint is a confident label that flips between two shots of the same
face. :func:`stability_probe` applies the changes a camera or a pose makes — a mirror image,
brighter and darker exposure, a slight blur, JPEG quality 30, a ±10° tilt, a shifted crop — to one
face crop, scores all of them in one batch, and reports for each variant whether the model keeps
its top-1 label, the probabilities of its top-1 and of the original label, and how similar the variant's map is to the
original's (Spearman ρ, after undoing the geometric change so the same pixels are compared).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
import pandas as pd
import torch

from ferx.data.preprocess import to_model_input
from ferx.explain.faithfulness import map_agreement
from ferx.explain.methods import get_method
from ferx.memory_format import evaluating


@dataclass(frozen=True)
class Variant:
    name: str
    apply: Callable[[np.ndarray], np.ndarray]  # uint8 S x S x 3 crop -> the changed crop
    undo: Callable[[np.ndarray], np.ndarray] = lambda m: m  # a map of the changed crop -> original positions


def _warp(img: np.ndarray, angle: float = 0.0, shift: float = 0.0) -> np.ndarray:
    """Rotate by ``angle`` degrees about the centre and shift right/down by ``shift`` of the side;
    edges replicated (as a crop from a larger photo would continue the background)."""
    h, w = img.shape[:2]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    matrix[:, 2] += shift * w
    return cv2.warpAffine(img, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _jpeg(img: np.ndarray, quality: int = 30) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", img[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1].copy()


def _exposure(img: np.ndarray, delta: int) -> np.ndarray:
    return np.clip(img.astype(np.int16) + delta, 0, 255).astype(np.uint8)


# the changes, each declared once with how to undo it on a map (photometric ones move no pixel)
VARIANTS: tuple[Variant, ...] = (
    Variant("mirror", lambda im: im[:, ::-1].copy(), lambda m: m[:, ::-1]),
    Variant("brighter", lambda im: _exposure(im, 40)),
    Variant("darker", lambda im: _exposure(im, -40)),
    Variant("blur", lambda im: cv2.GaussianBlur(im, (0, 0), max(0.6, im.shape[0] / 96))),
    Variant("JPEG q30", _jpeg),
    Variant("tilt +10°", lambda im: _warp(im, 10), lambda m: _warp(m, -10)),
    Variant("tilt -10°", lambda im: _warp(im, -10), lambda m: _warp(m, 10)),
    Variant("crop shifted 6 %", lambda im: _warp(im, shift=0.06), lambda m: _warp(m, shift=-0.06)),
)


@dataclass
class StabilityProbe:
    model: str
    classes: list[str]
    label: int  # the original crop's top-1 class
    # one row per variant: top1 and top1_prob (its probability), keeps_label, prob_of_label (the original
    # top-1's probability), map_spearman
    frame: pd.DataFrame
    thumbnails: dict[str, np.ndarray]  # variant name -> the changed crop

    @property
    def kept_share(self) -> float:
        return float(self.frame["keeps_label"].mean())

    @property
    def mean_map_spearman(self) -> float:
        return float(self.frame["map_spearman"].mean())

    def to_dict(self) -> dict:
        return {"model": self.model, "label": self.classes[self.label], "kept_share": round(self.kept_share, 4),
                "mean_map_spearman": round(self.mean_map_spearman, 4),
                "variants": self.frame.round(4).to_dict(orient="records")}


def stability_probe(model: torch.nn.Module, spec, classes: list[str], crop: np.ndarray, *, method: str = "gradcam",
                    variants: tuple[Variant, ...] = VARIANTS, name: str = "model") -> StabilityProbe:
    """Score ``crop`` (uint8 S x S x 3) and its camera ``variants`` in one batch; each variant's
    ``method`` map of the original label is compared with the original's at the same pixels."""
    images = np.stack([crop] + [v.apply(crop) for v in variants])
    device = next(model.parameters()).device
    x = to_model_input(torch.as_tensor(images), spec).to(device)
    with evaluating(model), torch.inference_mode():
        probs = torch.softmax(model(x).float(), dim=1).cpu().numpy()
    label = int(probs[0].argmax())
    maps = get_method(method)(model, x, targets=[label] * len(images))  # every map explains the original label
    original = maps[0].values
    rows = []
    for variant, p, m in zip(variants, probs[1:], maps[1:]):
        top = int(p.argmax())
        rows.append({"variant": variant.name, "top1": classes[top], "top1_prob": float(p[top]),
                     "keeps_label": top == label, "prob_of_label": float(p[label]),
                     "map_spearman": map_agreement(original, variant.undo(m.values))["spearman"]})
    frame = pd.DataFrame(rows)
    frame.attrs["original_prob"] = float(probs[0][label])
    return StabilityProbe(name, list(classes), label, frame, {v.name: im for v, im in zip(variants, images[1:])})
