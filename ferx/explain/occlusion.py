"""The occlusion brush: cover part of a face and see what each model makes of the rest.

The user paints a mask over the photo (in the app, the painted layers of ``gr.ImageEditor``: their
alpha is the mask, at the photo's size; :func:`painted_mask`). :func:`occlude_face` fills the painted
pixels of the photo (blurred, mean grey or black), crops the chosen face from the original and from
the occluded photo with the same square, and :func:`occlusion_effect` scores both crops with a model:
every class's probability before and after, and the change in the originally predicted class's
probability. :func:`explain_occlusion` adds the maps: each method on the unpainted face and on the
occluded one, both explaining the class the model first predicted.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from ferx.data.preprocess import to_model_input
from ferx.explain.report import ModelExplanation, explain_face
from ferx.faces import DEFAULT_MARGIN, Face, Photo, find_faces, square_crop
from ferx.memory_format import evaluating

FILLS = {"blur": "blurred", "mean": "mean grey", "black": "black"}  # fill -> how the user reads it


def blur_sigma(side: float) -> float:
    """The blur fill's Gaussian sigma for a face crop (or an image taken whole) of ``side`` pixels: a twelfth
    of it, at least 2 px, a strong blur at the face's own scale."""
    return max(2.0, side / 12)


def occlude(rgb: np.ndarray, mask: np.ndarray, fill: str = "blur", *, sigma: float | None = None,
            grey: int | None = None) -> np.ndarray:
    """``rgb`` with the pixels where ``mask`` is set replaced: ``blur`` (a strong Gaussian blur of
    the image itself, so no new edge or colour appears; ``sigma``, default :func:`blur_sigma` of the
    image's longer side), ``mean`` (``grey``, default the image's mean grey) or ``black``."""
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if mask.shape[:2] != rgb.shape[:2]:
        mask = cv2.resize(mask.astype(np.uint8), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    keep = mask.astype(bool)
    if fill == "blur":
        filler = cv2.GaussianBlur(rgb, (0, 0), blur_sigma(max(rgb.shape[:2])) if sigma is None else sigma)
    elif fill == "mean":
        filler = np.full_like(rgb, int(round(float(rgb.mean()))) if grey is None else grey)
    else:
        filler = np.zeros_like(rgb)
    out = rgb.copy()
    out[keep] = filler[keep]
    return out


def painted_mask(layers, size: tuple[int, int], name: str = "the painted photo") -> np.ndarray:
    """The pixels painted on any of ``layers`` (RGBA arrays: painted where alpha > 0) as one boolean
    mask of the photo's ``size`` (width, height). A layer of another size must at least have the
    photo's shape (an editor that exported a scaled canvas); anything else is refused, naming ``name``."""
    w, h = size
    mask = np.zeros((h, w), bool)
    for layer in layers:
        layer = np.asarray(layer)
        if layer.ndim != 3 or layer.shape[2] != 4:
            raise ValueError(f"{name}: a painted layer must be RGBA (its alpha is the mask), got shape {layer.shape}")
        painted = layer[..., 3] > 0
        if painted.shape != (h, w):
            lh, lw = painted.shape
            if abs(lw / lh - w / h) > 0.02:
                raise ValueError(f"{name}: the painted layer is {lw}x{lh} px but the photo is {w}x{h} px")
            painted = cv2.resize(painted.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)
        mask |= painted
    return mask


def read_masks(sources, size: tuple[int, int], name: str = "the painted photo") -> np.ndarray:
    """The mask painted on image files (paths or bytes): a layer with alpha (the app's painted layer)
    is painted where alpha > 0, a grey or colour mask (the command line's) where it is brighter than
    mid-grey. A file declaring far more pixels than the photo (``size``: width, height) is refused
    unread; all of them are combined by :func:`painted_mask`."""
    from ferx.faces import open_image, undecodable

    layers = []
    for source in sources:
        im, _, _ = open_image(source, name=name)  # the photo's checks and words: "file not found", "not an image ..."
        with im:
            if im.size[0] * im.size[1] > 4 * size[0] * size[1]:
                raise ValueError(f"{name}: the mask is {im.size[0]}x{im.size[1]} px, far larger than the photo "
                                 f"({size[0]}x{size[1]} px)")
            try:
                if "A" in im.getbands() or "transparency" in im.info:
                    layers.append(np.asarray(im.convert("RGBA")))
                    continue
                gray = np.asarray(im.convert("L"))
            except Exception as err:  # as a photo that cannot be decoded is refused
                raise undecodable(name, err) from None
        layers.append(np.dstack([gray, gray, gray, np.where(gray > 127, 255, 0).astype(np.uint8)]))
    return painted_mask(layers, size, name)


@dataclass
class OccludedFace:
    crop: np.ndarray  # the face as the models see it without the mask
    occluded: np.ndarray  # the same square of the occluded photo
    covered: float  # share of the crop's pixels that were painted over
    face: Face | None = None  # the face found on the unpainted photo (its landmarks place the facial regions)
    fill: str = "blur"
    note: str | None = None  # the face search's (ferx.faces.FaceSearch.note: a small image taken as a cropped face)

    def faces(self) -> tuple[Face, Face]:
        """The face unpainted and occluded, as :class:`Face` objects any explanation takes."""
        return replace(self.face, crop=self.crop), replace(self.face, crop=self.occluded)


def occlude_face(photo: Photo, mask: np.ndarray, *, face: int = 0, whole_image: bool = False, fill: str = "blur",
                 margin: float = DEFAULT_MARGIN) -> OccludedFace:
    """Face number ``face`` of ``photo`` (found on the unpainted photo, so a covered mouth does not
    hide the face), cropped from the photo and from its occluded copy with the same square. ``mask``
    may be at the photo's original or working size."""
    search = find_faces(photo, whole_image=whole_image, margin=margin)
    if search.no_face:
        raise ValueError(f"no face found in {photo.name}; score the whole image as a face instead"
                         + (f" ({search.note})" if search.note else ""))
    chosen = search.faces[search.pick(face)]
    rgb = photo.rgb
    if mask.shape[:2] != rgb.shape[:2]:
        mask = cv2.resize(mask.astype(np.uint8), (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
    box = tuple(v * photo.scale for v in chosen.box)  # working pixels, the ones find_faces cropped from
    pad = 0.0 if chosen.whole_image else margin  # as find_faces cropped it (a small image is a whole face)
    crop, (sx0, sy0, sx1, sy1), _ = square_crop(rgb, box, pad)
    # the fill is made at the face's scale and only around its crop: a blur of the whole photo at the photo's
    # scale took 15 s a stroke on a phone photo (2048 working px, sigma 170) and blurred a small face in a wide
    # photo into its background. The window reaches as far as the Gaussian kernel does (3 sigma), so the crop's
    # pixels are those of blurring the whole photo with that sigma.
    sigma = blur_sigma(sx1 - sx0)
    reach = int(np.ceil(3 * sigma)) + 2
    h, w = rgb.shape[:2]
    wy0, wy1, wx0, wx1 = max(0, sy0 - reach), min(h, sy1 + reach), max(0, sx0 - reach), min(w, sx1 + reach)
    filled = rgb.copy()
    if wy1 > wy0 and wx1 > wx0:
        filled[wy0:wy1, wx0:wx1] = occlude(rgb[wy0:wy1, wx0:wx1], mask[wy0:wy1, wx0:wx1], fill, sigma=sigma,
                                           grey=int(round(float(rgb.mean()))))
    occluded = square_crop(filled, box, pad)[0]
    covered = square_crop(np.repeat(mask.astype(np.uint8)[..., None] * 255, 3, 2), box, pad)[0][..., 0] > 127
    return OccludedFace(crop, occluded, float(covered.mean()), chosen, fill, search.note)


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
        def rounded(probs):  # rounded as float64: float32's 0.0003 prints as 0.0003000000142492354
            return {c: round(float(v), 4) for c, v in zip(self.classes, probs)}

        return {"label": self.classes[self.label], "before": rounded(self.before), "after": rounded(self.after),
                "change": round(self.change, 4),
                "new_top1": self.classes[int(self.after.argmax())]}


def occlusion_effect(model: torch.nn.Module, spec, classes: list[str], face: OccludedFace) -> OcclusionEffect:
    """Both crops in one batch through ``model``."""
    x = to_model_input(torch.as_tensor(np.stack([face.crop, face.occluded])), spec)
    with evaluating(model), torch.inference_mode():
        probs = torch.softmax(model(x.to(next(model.parameters()).device)).float(), dim=1).cpu().numpy()
    return OcclusionEffect(list(classes), probs[0], probs[1])


def occlusion_figure(face: OccludedFace, effects: list[OcclusionEffect], names: list[str], title: str = ""):
    """The face before and after the fill (what each model was given), then each model's probabilities
    before (grey) and after (coloured), classes in the canonical order, its first class marked: a
    matplotlib figure (not pyplot's: nothing needs closing)."""
    from matplotlib.figure import Figure

    from ferx.data.labels import in_canonical_order

    fig = Figure(figsize=(2.6 * (2 + len(effects)), 3.2), layout="constrained")
    axes = fig.subplots(1, 2 + len(effects), gridspec_kw={"width_ratios": [1, 1] + [1.2] * len(effects)})
    for ax, image, label in zip(axes, (face.crop, face.occluded), ("face", f"{face.covered:.0%} painted, {FILLS[face.fill]}")):
        ax.imshow(image)
        ax.set_title(label, fontsize=8)
        ax.axis("off")
    for ax, effect, name in zip(axes[2:], effects, names):
        order = [effect.classes.index(c) for c in in_canonical_order(effect.classes)]
        y = np.arange(len(order))
        ax.barh(y - 0.2, effect.before[order], 0.4, color="#bbbbbb", label="before")
        ax.barh(y + 0.2, effect.after[order], 0.4, color="#1f77b4", label="after")
        ax.set_yticks(y, [effect.classes[k] + (" *" if k == effect.label else "") for k in order], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(f"{name}\n{effect.classes[effect.label]} {effect.before[effect.label]:.2f} → "
                     f"{effect.after[effect.label]:.2f} ({effect.change:+.2f})", fontsize=7)
        ax.legend(fontsize=6, loc="lower right")
    fig.suptitle(title + ("; " if title else "") + "* the class the model predicted before", fontsize=8)
    return fig


@dataclass
class OcclusionExplanation:
    """One model on the unpainted face and on the occluded one, every map explaining the class it
    first predicted (so the maps show where that class's evidence went)."""

    before: ModelExplanation
    after: ModelExplanation

    @property
    def effect(self) -> OcclusionEffect:
        return OcclusionEffect(list(self.before.classes), self.before.probs, self.after.probs)

    def to_dict(self) -> dict:
        return {"model": self.before.model, **self.effect.to_dict(), "before": self.before.to_dict(),
                "after": self.after.to_dict()}


def explain_occlusion(em, occluded: OccludedFace, methods=("gradcam",)) -> OcclusionExplanation:
    """``methods`` maps of a :class:`~ferx.checkpoint.LoadedModel` on both faces (no faithfulness test:
    the brush is interactive). ``occluded`` must come from :func:`occlude_face`."""
    before_face, after_face = occluded.faces()
    before = explain_face(em, before_face, methods, faithfulness=False)
    after = explain_face(em, after_face, methods, target=before.predicted, faithfulness=False)
    return OcclusionExplanation(before, after)
