"""Shared by the Compare and Explain tabs: photo → faces, explanations → captioned tiles.

Only composition and drawing live here; faces, maps, scales and faithfulness come from
:mod:`ferx.faces` and :mod:`ferx.explain`.
"""

from __future__ import annotations

import cv2
import numpy as np

from ferx.explain.overlay import DEFAULT_CMAP, DEFAULT_SIGNED_CMAP, MapScale, colormap, map_scale, overlay
from ferx.explain.report import ModelExplanation
from ferx.faces import FaceSearch, find_faces, load_photo

UNCERTAIN_MARGIN = 0.15  # top-1 minus top-2 probability below this: the model hesitates

# One line under every map: what it is and how to read it (teaching aid).
READING = {
    "massatt_block2_spatial": "LANMSFF's own spatial attention (MassAtt, block 2, native): the 0–1 weight the "
                              "network multiplies each location by. Part of the prediction, not an explanation of it.",
    "massatt_block4_spatial": "LANMSFF's own spatial attention (MassAtt, block 4, native, 8×8): coarse; bright = "
                              "kept, dark = suppressed before the last block.",
    "convcut_attention": "Conv-cut's own self-attention (native): how much attention each of the 14×14 locations "
                         "receives, averaged over heads and queries.",
    "gradcam": "Grad-CAM: feature maps of the last conv block weighted by the gradient of the target score; "
               "warm = regions whose features raise it.",
    "gradcam++": "Grad-CAM++: like Grad-CAM with higher-order gradient weights; better with several evidence regions.",
    "hirescam": "HiResCAM: gradient × activation per location (no averaging); faithful to the last conv layer.",
    "xgradcam": "XGrad-CAM: Grad-CAM with activation-normalised weights.",
    "layercam": "LayerCAM: positive gradients × activations per location; sharper than Grad-CAM.",
    "scorecam": "Score-CAM: masks the input with each feature map and weighs it by the score change (no gradients; "
                "slow).",
    "eigencam": "Eigen-CAM: first principal component of the feature maps; class-agnostic.",
    "eigengradcam": "Eigen-Grad-CAM: principal component of gradient × activations.",
    "integrated_gradients": "Integrated Gradients (signed): each pixel's contribution along a path from a baseline "
                            "image; red adds evidence for the target, blue removes it.",
    "saliency": "Saliency: |gradient| of the target score per pixel; where a small change would matter most.",
    "input_x_gradient": "Input × Gradient (signed): gradient times pixel value; red for, blue against.",
    "occlusion": "Occlusion (signed): score drop when a patch is covered; red = covering it hurts the target.",
    "guided_backprop": "Guided Backprop (signed): gradients with negative signals stopped at ReLUs; edges, not "
                       "evidence — fails sanity checks, read with care.",
    "gradient_shap": "GradientSHAP (signed): expected gradients over noisy baselines; red for, blue against.",
}
CAM_CHOICES = ["gradcam", "gradcam++", "hirescam", "layercam", "eigencam", "scorecam"]
CAPTUM_CHOICES = ["integrated_gradients", "saliency", "input_x_gradient", "occlusion", "guided_backprop"]
HEAVY = {"scorecam", "integrated_gradients", "occlusion"}


def search_faces(path: str, whole_image: bool) -> FaceSearch:
    """Decode an upload (our robust loader, not the browser's) and find its faces."""
    return find_faces(load_photo(path), whole_image=whole_image)


def photo_inputs(label: str, elem_id: str, height: int):
    """The photo, the "whole image" switch and the face number, as both tabs take them."""
    import gradio as gr

    image = gr.Image(label=label, type="filepath", sources=["upload", "webcam", "clipboard"], elem_id=elem_id,
                     height=height)
    whole = gr.Checkbox(False, label="Score the whole image as a face (skip face detection)")
    index = gr.Number(0, precision=0, minimum=0, label="Face to score (0 = largest)")
    return image, whole, index


def pick_face(search: FaceSearch, index) -> int:
    """The chosen face's number, or a ``ValueError`` saying which numbers exist."""
    index = int(index or 0)
    if not 0 <= index < len(search.faces):
        raise ValueError(f"There are {len(search.faces)} face(s); choose 0 to {len(search.faces) - 1}.")
    return index


def annotate(search: FaceSearch, selected: int = 0) -> np.ndarray:
    """The photo with numbered face boxes; the face being scored in orange, others in blue."""
    img = search.photo.rgb.copy()
    scale = search.photo.scale
    thickness = max(2, int(round(max(img.shape[:2]) / 300)))
    for i, face in enumerate(search.faces):
        x0, y0, x1, y1 = (int(round(v * scale)) for v in face.box)
        colour = (255, 140, 0) if i == selected else (40, 120, 255)
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, thickness)
        cv2.putText(img, str(i), (x0 + 4, y0 + 8 + 10 * thickness), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, colour,
                    thickness)
    return img


def crop_strip(search: FaceSearch, side: int = 128) -> np.ndarray:
    """Every face crop, numbered, side by side at one size: what each model was given."""
    tiles = []
    for i, face in enumerate(search.faces):
        tile_img = cv2.resize(face.crop, (side, side), interpolation=cv2.INTER_AREA).copy()
        cv2.putText(tile_img, str(i), (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 140, 0), 2, cv2.LINE_AA)
        tiles += [tile_img, np.full((side, 6, 3), 255, np.uint8)]
    return np.concatenate(tiles[:-1], 1)


def verdict(ex: ModelExplanation) -> str:
    order = np.argsort(ex.probs)[::-1]
    top, second = ex.probs[order[0]], ex.probs[order[1]]
    margin = top - second
    state = ("**uncertain** — the top two classes are close" if margin < UNCERTAIN_MARGIN
             else "confident" if top >= 0.6 else "leaning")
    return (f"**{ex.classes[order[0]]}** {top:.0%} · then {ex.classes[order[1]]} {second:.0%} · margin {margin:.2f} "
            f"· {state}")


def scales_for(explanations: list[ModelExplanation], shared: bool, clip: float) -> list[list[MapScale]]:
    """Per map, the colour scale: its own, or one per method shared across models (so the same
    method on two models is drawn on one scale)."""
    if not shared:
        return [[map_scale([m], clip) for m in ex.maps] for ex in explanations]
    by_method: dict[str, list] = {}
    for ex in explanations:
        for m in ex.maps:
            by_method.setdefault(m.method, []).append(m)
    common = {k: map_scale(v, clip) for k, v in by_method.items()}
    return [[common[m.method] for m in ex.maps] for ex in explanations]


def tile(crop: np.ndarray, values: np.ndarray, scale: MapScale, cmap: str | None, alpha: float) -> np.ndarray:
    """The map over the crop with a colour bar on its right (labelled with the scale's range)."""
    over = overlay(crop, values, scale, cmap=cmap, alpha=alpha)
    h = over.shape[0]
    bar_w = max(12, h // 20)
    gradient = np.linspace(1, 0, h)[:, None].repeat(bar_w, 1)
    cm = colormap(cmap or (DEFAULT_SIGNED_CMAP if scale.signed else DEFAULT_CMAP))
    bar = (cm(gradient)[..., :3] * 255).astype(np.uint8)
    label_w = max(48, h // 6)
    labels = np.full((h, label_w, 3), 255, np.uint8)
    font = 0.3 + h / 1400
    for text, y in ((f"{scale.vmax:.3g}", int(14 * font / 0.4)), (f"{scale.vmin:.3g}", h - 6)):
        cv2.putText(labels, text, (3, y), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA)
    gap = np.full((h, 4, 3), 255, np.uint8)
    return np.concatenate([over, gap, bar, labels], 1)


def faithfulness_line(f) -> str:
    if f is None:
        return "faithfulness not computed"
    better = "better" if f.deletion_auc < f.random_deletion_auc else "**no better**"
    return (f"deletion AUC {f.deletion_auc:.3f} vs random {f.random_deletion_auc:.3f} ({better} than random; lower is "
            f"better) · insertion AUC {f.insertion_auc:.3f} vs random {f.random_insertion_auc:.3f}")
