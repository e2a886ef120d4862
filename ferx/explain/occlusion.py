"""The occlusion brush: cover part of a face and see what each model makes of the rest.

The user paints a mask over the photo (in the app, the painted layer of ``gr.ImageEditor``: its
alpha is the mask, at the photo's size). :func:`occlude_face` fills the painted pixels of the photo
(blurred, mean grey or black), crops the chosen face from the original and from the occluded photo
with the same square, and :func:`occlusion_effect` scores both crops with a model: every class's
probability before and after, and the change in the originally predicted class's probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ferx.data.preprocess import to_model_input
from ferx.faces import DEFAULT_MARGIN, Photo, find_faces, square_crop

FILLS = {"blur": "blurred", "mean": "mean grey", "black": "black"}  # fill -> how the user reads it


def occlude(rgb: np.ndarray, mask: np.ndarray, fill: str = "blur") -> np.ndarray:
    """``rgb`` with the pixels where ``mask`` is set replaced: ``blur`` (a strong Gaussian blur of
    the image itself, so no new edge or colour appears), ``mean`` (the image's mean grey) or ``black``."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if mask.shape[:2] != rgb.shape[:2]:
        mask = cv2.resize(mask.astype(np.uint8), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    keep = mask.astype(bool)
    if fill == "blur":
        filler = cv2.GaussianBlur(rgb, (0, 0), max(2.0, max(rgb.shape[:2]) / 12))
    elif fill == "mean":
        filler = np.full_like(rgb, int(round(float(rgb.mean()))))
    else:
        filler = np.zeros_like(rgb)
    out = rgb.copy()
    out[keep] = filler[keep]
    return out


@dataclass
class OccludedFace:
    crop: np.ndarray  # the face as the models see it without the mask
    occluded: np.ndarray  # the same square of the occluded photo
    covered: float  # share of the crop's pixels that were painted over


def occlude_face(photo: Photo, mask: np.ndarray, *, face: int = 0, whole_image: bool = False, fill: str = "blur",
                 margin: float = DEFAULT_MARGIN) -> OccludedFace:
    """Face number ``face`` of ``photo`` (found on the unpainted photo, so a covered mouth does not
    hide the face), cropped from the photo and from its occluded copy with the same square. ``mask``
    may be at the photo's original or working size."""
    search = find_faces(photo, whole_image=whole_image, margin=margin)
    if search.no_face:
        raise ValueError(f"no face found in {photo.name}; score the whole image as a face instead")
    chosen = search.faces[search.pick(face)]
    rgb = photo.rgb
    if mask.shape[:2] != rgb.shape[:2]:
        mask = cv2.resize(mask.astype(np.uint8), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    box = tuple(v * photo.scale for v in chosen.box)  # working pixels, the ones find_faces cropped from
    pad = 0.0 if whole_image else margin
    crop = square_crop(rgb, box, pad)[0]
    occluded = square_crop(occlude(rgb, mask, fill), box, pad)[0]
    covered = square_crop(np.repeat(mask.astype(np.uint8)[..., None] * 255, 3, 2), box, pad)[0][..., 0] > 127
    return OccludedFace(crop, occluded, float(covered.mean()))


@dataclass
class OcclusionEffect:
    classes: list[str]
    before: np.ndarray  # probabilities of the unpainted face
    after: np.ndarray  # ... and of the occluded one

    @property
    def label(self) -> int:
        return int(self.before.argmax())

    @property
    def change(self) -> float:
        """How the originally predicted class's probability moved (negative: the model lost it)."""
        return float(self.after[self.label] - self.before[self.label])

    def to_dict(self) -> dict:
        return {"label": self.classes[self.label], "before": dict(zip(self.classes, self.before.round(4).tolist())),
                "after": dict(zip(self.classes, self.after.round(4).tolist())), "change": round(self.change, 4),
                "new_top1": self.classes[int(self.after.argmax())]}


def occlusion_effect(model: torch.nn.Module, spec, classes: list[str], face: OccludedFace) -> OcclusionEffect:
    """Both crops in one batch through ``model``."""
    x = to_model_input(torch.as_tensor(np.stack([face.crop, face.occluded])), spec)
    with torch.inference_mode():
        model.eval()
        probs = torch.softmax(model(x.to(next(model.parameters()).device)).float(), dim=1).cpu().numpy()
    return OcclusionEffect(list(classes), probs[0], probs[1])
