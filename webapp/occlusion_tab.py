"""Occlusion brush tab: paint over part of a face and watch every model's probabilities and maps.

The core is :mod:`ferx.explain.occlusion` (the fills are declared there, once): the painted layers'
alpha is the mask (:func:`~ferx.explain.occlusion.read_masks`), the face is found on the
unpainted photo, and :func:`~ferx.explain.occlusion.explain_occlusion` scores and maps both faces.
This tab only decodes the editor's payload and draws the result.
"""

from __future__ import annotations

import functools
import hashlib
import time

import gradio as gr
import numpy as np

from ferx.explain.methods import map_caption, reading, units
from ferx.explain.occlusion import FILLS, explain_occlusion, occlude_face, read_masks
from ferx.explain.overlay import map_scales
from ferx.faces import load_photo
from ferx.models import get_model_info
from webapp.app_context import AppContext
from webapp.errors import at_least_one, user_errors
from webapp.explaining import MODEL_COLUMN_PX, face_controls, offer_examples, tile
from webapp.inputs import PaintedPhoto

# The brush's radius in the photo's own pixels. gradio's default, 25, covered most of a 48-px face (the examples)
# with one dab. Sizing it to each photo needs an editor update after the photo is shown, which raced the first
# strokes (they were lost), so it is one size, chosen for the small faces the models read; the editor's Brush
# Size slider (1-100) widens it on a large photo.
BRUSH_RADIUS = 6

INTRO = ("### Occlusion brush: cover part of the face and see what each model makes of the rest\n"
         "Upload a photo (or pick an example), then paint over part of the face — the mouth, the eyes, the brows. "
         "The painted pixels are filled (blurred, mean grey or black) and every model scores the occluded face at "
         "once: its probabilities, the change in the probability of the class it predicted on the unpainted face, "
         "and each map before (left) and after (right) on one colour scale, both explaining that first class. "
         "A large drop means the model's evidence was under the paint. The brush paints in the photo's own pixels "
         f"(a radius of {BRUSH_RADIUS}, about a mouth's height on a 48-px face): on a large photo, widen it with the "
         "editor's *Brush Size* button.")
METHODS = ("native", "gradcam")  # the maps shown before/after (native: only for models with attention of their own)


def pair_tiles(before, after, crops) -> np.ndarray | None:
    """Every map of the unpainted face (left) beside the occluded face's (right), one scale per method."""
    if not before.maps:
        return None
    scales = map_scales([before, after], "shared")
    rows = []
    for b, a, sb, sa in zip(before.maps, after.maps, scales[0], scales[1]):
        left, right = tile(crops[0], b.crop_values, sb), tile(crops[1], a.crop_values, sa)
        rows.append(np.concatenate([left, np.full((left.shape[0], 8, 3), 255, np.uint8), right], 1))
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 8), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows])


def change_line(result) -> str:
    e = result.effect
    label, new = e.classes[e.label], e.classes[int(e.after.argmax())]
    arrow = "▼" if e.change < 0 else "▲" if e.change > 0 else "="
    return (f"**{label}** {e.before[e.label]:.0%} → {e.after[e.label]:.0%} ({arrow} {abs(e.change) * 100:.1f} points)"
            + (f" · now **{new}** {e.after.max():.0%}" if new != label else " · still the top class")
            + "  \n" + " · ".join(map_caption(m) for m in result.after.maps) + (" (left: unpainted, right: occluded)"
                                                                              if result.after.maps else ""))


def map_readings(architecture: str) -> str:
    """What each row of a model's maps means, in their order (its native maps, then Grad-CAM), as Compare says it
    under its maps: the tab named them and nothing more."""
    rows = [(m.reading, m.units) for m in get_model_info(architecture).native_maps]  # each reading names its map
    rows.append((reading("gradcam"), units("gradcam")))
    return "  \n".join(f"{what} Colour bar: {bar}." for what, bar in rows)


def painted(edited):
    """The editor's payload as the photo and its painted mask."""
    if not edited:
        raise gr.Error("Upload a photo, then paint over part of the face.")
    photo = load_photo(edited["background"], name=edited["name"])
    return photo, read_masks(edited["layers"], photo.original_size, edited["name"])


@user_errors
def occlude_view(bank, edited, whole_image, index, fill, chosen, with_maps):
    """Status, the two crops side by side, then per model: the occluded face's probabilities, the
    change line and the before/after maps."""
    start = time.perf_counter()
    return occlusion_outputs(bank, *painted(edited), whole_image, index, fill, chosen, with_maps, start)


def occlusion_outputs(bank, photo, mask, whole_image, index, fill, chosen, with_maps, start):
    at_least_one(chosen, "model")
    occluded = occlude_face(photo, mask, face=int(index or 0), whole_image=bool(whole_image), fill=fill)
    outputs = []
    for name in bank.names:
        if name not in chosen:
            outputs += [None, "", None]
            continue
        with bank.using(name) as loaded:
            result = explain_occlusion(loaded, occluded, METHODS if with_maps else ())
        outputs += [{c: float(p) for c, p in zip(result.after.classes, result.after.probs)}, change_line(result),
                    pair_tiles(result.before, result.after, (occluded.crop, occluded.occluded))]
    said = ("nothing painted yet: paint over part of the face" if not mask.any() else
            f"nothing painted over face {int(index or 0)}: the paint is elsewhere in the photo, outside its crop"
            if not occluded.covered else f"{occluded.covered:.0%} of the face crop painted over ({FILLS[fill]})")
    status = f"{said} · {time.perf_counter() - start:.2f} s" + (f"\n\n_{occluded.note}_" if occluded.note else "")
    return [status, crop_pair(occluded.crop, occluded.occluded)] + outputs


def request_digest(photo, mask, *settings) -> str:
    """What one scoring of the editor depends on, as a digest: the photo's pixels, the paint and the switches."""
    h = hashlib.sha256(repr((photo.rgb.shape, mask.shape, settings)).encode())
    h.update(photo.rgb.tobytes())
    h.update(np.packbits(mask).tobytes())
    return h.hexdigest()


def score_edit(bank, edited, whole_image, index, fill, chosen, with_maps, last):
    """What the editor's events and the switches beside it run: :func:`occlude_view`'s outputs and the digest
    of what they score (:func:`request_digest`), or nothing new for an empty editor (cleared, or mid-upload) or
    a request the same as the last one scored (``last``): one new photo fires the editor's upload, change and
    input events, up to four times in all, and each was scored (4 models and their maps, on 2 CPU cores)."""
    if not edited:
        return None
    start = time.perf_counter()
    photo, mask = painted(edited)
    digest = request_digest(photo, mask, bool(whole_image), int(index or 0), fill, tuple(chosen or ()),
                            bool(with_maps))
    if digest == last:
        return None
    return occlusion_outputs(bank, photo, mask, whole_image, index, fill, chosen, with_maps, start) + [digest]


STRIP_MIN_SIDE = 192  # the strip's box is 200 px high: a 48-px face (the examples) was drawn at 48 px, a speck in it


def crop_pair(crop: np.ndarray, occluded: np.ndarray) -> np.ndarray:
    """The unpainted and the occluded crop side by side, a small crop enlarged by a whole factor (each of its pixels
    a block, so the painted pixels stay exactly where they were) to at least :data:`STRIP_MIN_SIDE`."""
    k = -(-STRIP_MIN_SIDE // crop.shape[0])
    if k > 1:
        crop, occluded = (np.repeat(np.repeat(a, k, 0), k, 1) for a in (crop, occluded))
    return np.concatenate([crop, np.full((crop.shape[0], 6, 3), 255, np.uint8), occluded], 1)


def build_occlusion_tab(ctx: AppContext) -> None:
    bank = ctx.bank
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=2):
            editor = PaintedPhoto(label="Photo — paint over part of the face", type="filepath", image_mode="RGBA",
                                  sources=["upload", "webcam", "clipboard"], layers=False, transforms=(),
                                  brush=gr.Brush(colors=["rgb(255, 0, 255)"], color_mode="fixed", default_size=BRUSH_RADIUS),
                                  elem_id="occlusion-editor", height=420)  # handed over undecoded (webapp/inputs.py)
            whole, face_index = face_controls("occlusion")
            fill = gr.Radio([(label, key) for key, label in FILLS.items()], value="blur",
                            label="Painted pixels become")
            models = gr.CheckboxGroup(bank.names, value=bank.names, label="Models")
            with_maps = gr.Checkbox(True, label="Maps before/after (native attention, Grad-CAM; slower)")
            button = gr.Button("Score the occluded face", variant="primary")
            offer_examples(ctx, editor, "Examples (FER-2013 test faces, two portraits)")
        with gr.Column(scale=3):
            status = gr.Markdown(elem_id="occlusion-status")
            # its title above it, not gradio's label: drawn over the image, that hid the top of the enlarged face
            gr.Markdown("The face crop, unpainted and occluded (what the models score)", elem_id="occlusion-strip-title")
            strip = gr.Image(label="The face crop, unpainted and occluded (what the models score)", show_label=False,
                             interactive=False, height=200, buttons=[], elem_id="occlusion-strip",
                             alt_text="The face crop unpainted (left) and occluded (right), as the models score it")
    columns = []
    with gr.Row():
        for name in bank.names:
            with gr.Column(min_width=MODEL_COLUMN_PX):
                gr.Markdown(f"### {name}")
                columns += [gr.Label(num_top_classes=3, label="Probabilities of the occluded face",
                                     elem_classes=["occlusion-probs"]),
                            gr.Markdown(elem_classes=["occlusion-change"]),
                            # no label drawn over it: it hid the first colour bar's top number (the line above
                            # names the maps and says which side is which)
                            gr.Image(label="Maps: unpainted | occluded", show_label=False, interactive=False,
                                     buttons=[], alt_text=f"{name}: each map of the unpainted face (left) beside the "
                                     "occluded face's (right), one colour scale per row (named above)")]
                gr.Markdown(map_readings(bank.models[name].name), elem_classes=["occlusion-readings"])
    handler = functools.partial(occlude_view, bank)
    inputs = [editor, whole, face_index, fill, models, with_maps]
    outputs = [status, strip] + columns
    button.click(handler, inputs, outputs, api_name="occlude")

    last = gr.State(None)  # the digest of what the editor's events last had scored in this session (not a photo)

    @user_errors
    def rescore(*args):
        return score_edit(bank, *args) or [gr.skip()] * (len(outputs) + 1)

    # a new photo (an upload or an example), every stroke and every switch beside them re-score, once: the
    # editor fires upload, change and input for one photo (an example picked after the first fires input alone),
    # so all of them trigger one listener, and a request the same as the last scored is not scored again.
    # Strokes made while a request runs are folded into the next one. The face number re-scores once the user
    # leaves its box or presses Enter (its value then is the one used)
    gr.on([editor.upload, editor.change, editor.input, fill.input, models.input, with_maps.input, whole.input,
           face_index.blur, face_index.submit], rescore, inputs + [last], outputs + [last],
          trigger_mode="always_last", api_visibility="undocumented")
