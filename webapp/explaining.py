"""Shared by the Compare and Explain tabs: photo → faces, explanations → captioned tiles.

Only composition and drawing live here; faces, maps, scales, readings and faithfulness come
from :mod:`ferx.faces` and :mod:`ferx.explain`.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import gradio as gr
import numpy as np

from ferx.explain.overlay import ALPHA, DEFAULT_CMAP, DEFAULT_SIGNED_CMAP, MapScale, colormap, overlay
from ferx.explain.report import ModelExplanation
from ferx.faces import WORK_SIDE, FaceSearch, find_faces, load_photo
from ferx.text import plural
from webapp.inputs import Photo, count_box


# the narrowest a model's column of results may be (Compare, Occlusion): four models side by side in a 1,024-px
# window (a projector's), whose page is 960 px wide: 4 x 220 + 3 gaps of 16 = 928. gradio's default, 320 px, and
# then 240 (4 x 240 + 48 = 1,008) put the fourth alone on a full-width row, its maps twice the others' size
MODEL_COLUMN_PX = 220


def search_faces(path: str, whole_image: bool) -> FaceSearch:
    """Decode an upload (our robust loader, not the browser's) and find its faces. Messages name
    the file as the user named it (gradio keeps that name as the upload's), never the server path."""
    return find_faces(load_photo(path, name=Path(path).name), whole_image=whole_image)


def chosen_face(path, whole_image, index, *, to: str = "check it"):
    """The face a teaching view works on: the upload's face number ``index``, or one clear message."""
    return face_and_note(path, whole_image, index, to=to)[0]


def face_and_note(path, whole_image, index, *, to: str = "check it"):
    """:func:`chosen_face` and the search's note (:attr:`ferx.faces.FaceSearch.note`: a small image taken as an
    already-cropped face), or None."""
    if not path:
        raise gr.Error("Upload a photo first.")
    search = search_faces(path, bool(whole_image))
    if search.no_face:
        raise gr.Error(f"No face found in {search.photo.name}. Tick 'Score the whole image as a face' to {to} anyway."
                       + (f" ({search.note})" if search.note else ""))
    return search.faces[search.pick(index)], search.note


def photo_inputs(label: str, elem_id: str, height: int):
    """The photo, the "whole image" switch and the face number, as both tabs take them."""
    image = Photo(label=label, type="filepath", image_mode=None, sources=["upload", "webcam", "clipboard"],
                  elem_id=elem_id, height=height,  # its handler gets the upload undecoded (webapp/inputs.py)
                  elem_classes=["ferx-photo"])  # drawn to fill its box (webapp/app.py CSS): a 48-px face was a speck
    return (image, *face_controls())


def offer_examples(ctx, photo, label: str = "Examples") -> None:
    """The Compare tab's example photos (``ctx.shared["examples"]``, when it has any) offered to another tab's
    ``photo`` input, each beside its caption as in Compare: thumbnails alone were buttons without a name (a screen
    reader said "button" six times) and without the face's true label. The table's headers are "Photo" and
    "What it is", whatever the photo input's own label (the Occlusion brush's long one squeezed the captions to five
    lines at 1,024 px)."""
    if ctx.shared.get("examples"):
        caption = gr.Textbox(visible=False, label="What it is")  # shown beside each example's thumbnail
        examples = gr.Examples([list(example) for example in ctx.shared["examples"]], inputs=[photo, caption],
                               label=label)
        examples.dataset.headers = ["Photo", caption.label]


def face_controls(elem_prefix: str | None = None):
    """The "whole image" switch and the face number that go with every photo input."""
    whole = gr.Checkbox(False, label="Score the whole image as a face (skip face detection)",
                        elem_id=elem_prefix and f"{elem_prefix}-whole")
    index = count_box(0, minimum=0, label="Face to score (0 = the most face-like)")
    return whole, index


def found_line(search: FaceSearch, index: int | None = None, doing: str = "scoring") -> str:
    """How the photo's faces were found and which one is used ("2 faces found; scoring face 1"); a photo taken
    whole (ticked, or too small to search) is one face, not one found: "scoring face 0 (whole image)"."""
    whole = bool(search.faces) and search.faces[0].whole_image
    found = "the whole image taken as one face" if whole else f"{plural(len(search.faces), 'face')} found"
    if index is None:
        return found
    return f"{doing} face {index} (whole image)" if whole else f"{found}; {doing} face {index}"


SHOWN_MIN_SIDE = 240  # a smaller photo is drawn enlarged, so its box, number and landmarks do not cover the face


def annotate(search: FaceSearch, selected: int = 0) -> np.ndarray:
    """The photo with numbered face boxes; the face being scored in orange, others in blue. A small photo (a
    48-px face) is enlarged first, by a whole factor: the marks were as large as the face itself."""
    img = search.photo.rgb.copy()
    scale = search.photo.scale
    if min(img.shape[:2]) < SHOWN_MIN_SIDE:
        # at most WORK_SIDE long: a 3x10000 strip (1x2048 at work size) was drawn 240x491,520 (354 MB), which
        # gradio could not encode ("Could not postprocess output component", no result)
        k = max(1, min(-(-SHOWN_MIN_SIDE // min(img.shape[:2])), WORK_SIDE // max(img.shape[:2])))
        img = cv2.resize(img, (img.shape[1] * k, img.shape[0] * k), interpolation=cv2.INTER_NEAREST)
        scale *= k
    thickness = max(2, int(round(max(img.shape[:2]) / 300)))
    for i, face in enumerate(search.faces):
        x0, y0, x1, y1 = (int(round(v * scale)) for v in face.box)
        colour = (255, 140, 0) if i == selected else (40, 120, 255)
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, thickness)
        cv2.putText(img, str(i), (x0 + 4, y0 + 8 + 10 * thickness), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, colour,
                    thickness)
        for x, y in ([] if face.landmarks is None else face.landmarks * scale):  # the five landmarks
            cv2.circle(img, (int(round(x)), int(round(y))), thickness + 1, colour, -1)
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
    state = "**uncertain** — the top two classes are close" if ex.certainty == "uncertain" else ex.certainty
    return (f"**{ex.classes[order[0]]}** {top:.0%} · then {ex.classes[order[1]]} {second:.0%} · margin {ex.margin:.2f} "
            f"· {state}")


def png_bytes(rgb: np.ndarray) -> bytes:
    """An RGB image as PNG bytes (lossless, a fraction of the array's memory: what session state keeps)."""
    return cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))[1].tobytes()


def from_png(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[..., ::-1].copy()


TILE_MIN = 256  # pixels: the smallest side a map tile is shown at


def tile(crop: np.ndarray, values: np.ndarray, scale: MapScale, cmap: str | None = None,
         alpha: float = ALPHA) -> np.ndarray:
    """The map over the crop with a colour bar on its right (labelled with the scale's range)."""
    over = overlay(crop, values, scale, cmap=cmap, alpha=alpha)
    if over.shape[0] < TILE_MIN:  # a 48-px FER face: enlarge, or the map is too small to read
        over = cv2.resize(over, (TILE_MIN, TILE_MIN), interpolation=cv2.INTER_CUBIC)
    h = over.shape[0]
    bar_w = max(12, h // 20)
    gradient = np.linspace(1, 0, h)[:, None].repeat(bar_w, 1)
    cm = colormap(cmap or (DEFAULT_SIGNED_CMAP if scale.signed else DEFAULT_CMAP))
    bar = (cm(gradient)[..., :3] * 255).astype(np.uint8)
    font = 0.3 + h / 1400
    texts = (f"{scale.vmax:.3g}", f"{scale.vmin:.3g}")
    widest = max(cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, font, 1)[0][0] for t in texts)
    labels = np.full((h, max(48, h // 6, widest + 8), 3), 255, np.uint8)  # room for "-0.192" and "0.001"
    for text, y in zip(texts, (int(14 * font / 0.4), h - 6)):
        cv2.putText(labels, text, (3, y), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), 1, cv2.LINE_AA)
    gap = np.full((h, 4, 3), 255, np.uint8)
    return np.concatenate([over, gap, bar, labels], 1)


# what channel_tile draws, for the readings under the gallery (ferx.models.lanmsff.MassAtt computes it)
CHANNEL_READING = ("LANMSFF's own channel attention (MassAtt, native), for this face: the 0–1 weight each block "
                   "multiplies each of its feature channels by, one bar per channel (numbered as the network stores "
                   "them: their order means nothing). Near 1: the channel passes; near 0: it is suppressed. The "
                   "block's features are multiplied by these weights and by its spatial map (the MassAtt map of the "
                   "same block).")


def channel_tile(channel_weights: dict[str, np.ndarray], height: int = TILE_MIN) -> np.ndarray:
    """MassAtt channel weights M_c (one bar per channel, per block) as an image for the map gallery. Its text is
    10 and 9 pt (7 and 6 were 5-6 px high once the gallery fitted the tile into its column)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), dpi=height / 3)  # not pyplot's: requests draw at once, and nothing needs closing
    canvas = FigureCanvasAgg(fig)
    axes = fig.subplots(len(channel_weights), 1, squeeze=False)
    for ax, (block, w) in zip(axes[:, 0], channel_weights.items()):
        ax.bar(np.arange(len(w)), w, width=1.0, color="tab:orange")
        ax.set_ylim(0, 1)
        ax.set_title(f"{block}: weight per channel (0-1)", fontsize=10)
        ax.tick_params(labelsize=9)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def baseline_line(rows: list[ModelExplanation]) -> str:
    """What deleted pixels became, as each result records it (the blur depends on the input size)."""
    baselines = dict.fromkeys(f.baseline for row in rows for f in row.faithfulness if f is not None)
    if not baselines:
        return ""
    return f"\nDeletion/insertion baseline — {'; '.join(baselines)}; score: softmax probability of the target class."


def beats_random(f) -> bool:
    """A map is more faithful than random maps when deleting its top pixels first lowers the score faster."""
    return f.deletion_auc < f.random_deletion_auc


def faithfulness_tag(f) -> str:
    """A map's faithfulness in a few words, for its caption: ``deletion 0.123 vs random 0.204 ✓`` (✗: no better;
    three decimals, so two close AUCs do not read as a tie beside a verdict)."""
    if f is None:
        return ""
    better = "✓" if beats_random(f) else "✗ no better"
    return f" · deletion {f.deletion_auc:.3f} vs random {f.random_deletion_auc:.3f} {better}"


def faithfulness_line(f) -> str:
    if f is None:
        return "faithfulness not computed"
    better = "better" if beats_random(f) else "**no better**"
    return (f"deletion AUC {f.deletion_auc:.3f} vs random {f.random_deletion_auc:.3f} ({better} than random; lower is "
            f"better) · insertion AUC {f.insertion_auc:.3f} vs random {f.random_insertion_auc:.3f}")
