"""Compare tab: a photo → its faces → every model's probabilities, native attention and Grad-CAM
side by side, each map on its own colour scale (raw CAM magnitudes of different networks are not comparable;
Explain offers a shared scale)."""

from __future__ import annotations

import functools
import time
from pathlib import Path

import gradio as gr

from ferx.data.datasets import load_fer2013
from ferx.data.packed import pack_split
from ferx.data.photos import example_faces
from ferx.explain.methods import map_caption, reading, units
from ferx.explain.overlay import CLIP_PERCENTILE, flat_range, map_scales
from ferx.explain.regions import breakdown_line
from ferx.explain.report import explain_photo
from ferx.faces import SMALL_FACE_SIDE
from ferx.models import get_model_info
from webapp.app_context import AppContext
from webapp.errors import user_errors
from webapp.explaining import (MODEL_COLUMN_PX, annotate, crop_strip, found_line, offer_examples, photo_inputs,
                               search_faces, tile, verdict)
from webapp.model_bank import ModelBank
from webapp.narrow import scroll_to_on_narrow
from webapp.uploads import user_temp_dir

HELP = ("Upload a photo, take one with the webcam, or pick an example. Faces are found with MTCNN (five landmarks; "
        "face 0 is the most face-like by detector confidence and size — click a box to score another face); images "
        f"under {SMALL_FACE_SIDE} px are scored as already-cropped faces. Each model scores the square crop shown. **Native** maps are the network's own "
        "attention (part of how it predicts); **Grad-CAM** is an after-the-fact explanation of the predicted "
        f"class. Each map is coloured from its own minimum to its {CLIP_PERCENTILE:g}th percentile (the numbers on its colour bar): "
        "compare where models look, not raw magnitudes, which differ between networks.")
POST_HOC = "gradcam"


# gradio's examples table shows a caption's first 60 characters ("… (public domain) · no la..."): captions fit in them
EXAMPLE_CAPTION_CHARS = 60


def portrait_examples() -> list[tuple[str, str]]:
    """Two public-domain portrait photos that ship inside installed packages (nothing is downloaded,
    no dataset pixels enter the repository): they work on a Space and on a machine without data."""
    import matplotlib.cbook
    import skimage.data

    return [(str(Path(skimage.data.__file__).parent / "astronaut.png"),
             "Photo: Eileen Collins (NASA, public domain) · no label"),
            (matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False),
             "Photo: Grace Hopper (US Navy, public domain) · no label")]


def example_photos(data_root: Path) -> list[tuple[str, str]]:
    """Example inputs with their captions: a few FER-2013 test faces (true label in the caption and the
    file name; written to one temp folder per user that every start overwrites, so pixels never enter
    the repo) when the data root has them, then the two portraits."""
    try:
        packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    except (ValueError, OSError):
        return portrait_examples()
    faces = example_faces(packed, user_temp_dir("examples"))
    return [(str(path), caption) for path, caption in faces] + portrait_examples()


def native_line(architecture: str) -> str:
    """How to read the model's first native map, as its registration declares it."""
    native = get_model_info(architecture).native_maps
    if not native:
        return "This architecture has no attention of its own."
    return f"{native[0].reading} Colour bar: {native[0].units}."


def untrained_line(bank: ModelBank) -> str:
    """Which registered architectures the comparison lacks, and why."""
    missing = bank.untrained_architectures()
    if not missing:
        return ""
    return (f"Also implemented, but without trained weights yet (so not compared here): "
            f"{', '.join(f'`{a}`' for a in missing)} — see the Models tab.")


@user_errors
def compare(bank: ModelBank, path, whole_image, index):
    """Score face ``index`` of a photo with every model: status, the photo with its face boxes, the
    crops, then per model its probabilities, verdict, native attention map and Grad-CAM."""
    if not path:
        raise gr.Error("Upload a photo, use the webcam or pick an example first.")
    start = time.perf_counter()
    search = search_faces(path, bool(whole_image))
    if search.no_face:
        gr.Warning(f"No face found in {search.photo.name}. Tick 'Score the whole image as a face' to score it anyway.")
        return [f"No face found in {search.photo.name}. Tick **Score the whole image as a face** to score it anyway."
                + (f"  \n_{search.note}_" if search.note else ""),
                annotate(search), None] + [None] * (4 * len(bank.names))
    try:
        index = search.pick(index)
    except ValueError as err:  # one message, and the panels keep what they showed (not a red "Error" in each)
        gr.Warning(str(err))
        return [f"**{err}**", annotate(search), crop_strip(search)] + [gr.skip()] * (4 * len(bank.names))
    result = explain_photo(bank.names, search, index, ["native", POST_HOC], using=bank.using, faithfulness=False)
    crop = search.faces[result.face].crop
    outputs = []
    # each map on its own scale: raw CAM magnitudes of different networks are not comparable
    for ex, sc in zip(result.rows, map_scales(result.rows, "per-map")):
        native = next((i for i, m in enumerate(ex.maps) if m.kind == "native"), None)
        cam = next(i for i, m in enumerate(ex.maps) if m.method == POST_HOC)
        shown = [i for i in (native, cam) if i is not None]  # the maps drawn, and only those, are read out
        outputs += [{c: float(p) for c, p in zip(ex.classes, ex.probs)},
                    verdict(ex) + "".join(region_text(ex.maps[i], sc[i]) for i in shown),
                    None if native is None else tile(crop, ex.maps[native].crop_values, sc[native]),
                    tile(crop, ex.maps[cam].crop_values, sc[cam])]
    note = (found_line(search, result.face)
            + f" · {time.perf_counter() - start:.2f} s" + (f"  \n_{search.note}_" if search.note else ""))
    return [note, annotate(search, result.face), crop_strip(search)] + outputs


@user_errors
def compare_new_photo(bank: ModelBank, path, whole_image, index):
    """:func:`compare` in the browser (a photo just uploaded, or the button): one that cannot be used (not an
    image, truncated, too large) clears the previous photo's results and says why once, instead of an error
    badge on each of its 16 panels (one over the message itself). ``/predict`` still raises."""
    try:
        return compare(bank, path, whole_image, index)
    except gr.Error as err:
        gr.Warning(err.message)
        return [f"**{err.message}**", None, None] + [None] * (4 * len(bank.names))


def region_text(m, scale) -> str:
    """One map's facial-region breakdown as a markdown line, saying when its colour ``scale`` makes a nearly
    flat map look structured (and the off-face warning, when raised)."""
    flat = flat_range(scale)
    line = (f"  \n{map_caption(m)}" + (f" (**{flat}**: its colours exaggerate it)" if flat else "")
            + f": {breakdown_line(m.regions)}")
    return line + (f"  \n⚠️ **{m.regions['warning']}**" if m.regions and m.regions["warning"] else "")


@user_errors
def face_at(path, whole_image, evt: gr.SelectData):
    """The number of the face whose box holds the clicked point of the annotated photo (the smallest such box)."""
    if not path or evt is None or evt.index is None:
        return gr.skip()
    search = search_faces(path, bool(whole_image))
    x, y = (v / search.photo.scale for v in evt.index[:2])  # the annotated photo is at working resolution
    index = search.face_at(x, y)
    return gr.skip() if index is None else index


def build_compare_tab(ctx: AppContext) -> None:
    bank = ctx.bank
    gr.Markdown(HELP)
    with gr.Row():
        with gr.Column(scale=2):
            photo, whole, face_index = photo_inputs("Photo", "compare-photo", 360)
            button = gr.Button("Compare models", variant="primary")
            ctx.shared["examples"] = example_photos(ctx.cfg.data_root)  # later tabs offer them too
            offer_examples(ctx, photo, "Examples (FER-2013 test faces when the data root has them; two portrait photos)")
        with gr.Column(scale=3, elem_id="compare-results"):
            status = gr.Markdown(elem_id="compare-status")
            # alt_text: what a screen reader says of each image (gradio's is empty: "image", or nothing)
            boxes = gr.Image(label="Detected faces (orange: the one scored; click a box to score it)", interactive=False, height=300,
                             elem_id="compare-boxes", alt_text="The photo with a numbered box on each face found; "
                             "the scored face's box is orange")
            crops = gr.Image(label="Face crops, as cropped for the models (numbered)", interactive=False,
                             height=160, alt_text="Each face's crop, numbered, as the models are given it")
    columns = []
    with gr.Row():
        for name in bank.names:
            has_native = bool(get_model_info(bank.models[name].name).native_maps)
            with gr.Column(min_width=MODEL_COLUMN_PX):
                gr.Markdown(f"### {name}")
                label = gr.Label(num_top_classes=len(bank.models[name].labels), label="Probabilities",
                                 elem_classes=["compare-probs"])
                summary = gr.Markdown()
                # no empty panel for an architecture without attention of its own
                # no download/share buttons: they would cover the colour bar's maximum
                # each map's title above it, not gradio's label: drawn over the map, that hid the face's top left
                gr.Markdown("**Native attention**", visible=has_native, elem_classes=["compare-map-title"])
                native = gr.Image(label="Native attention", show_label=False, interactive=False, height=220,
                                  visible=has_native, buttons=[], alt_text=f"{name}: its own attention over the face "
                                  "crop, with its colour bar (read below)")
                gr.Markdown(native_line(bank.models[name].name), visible=has_native)
                gr.Markdown("**Grad-CAM** (predicted class)", elem_classes=["compare-map-title"])
                gradcam = gr.Image(label="Grad-CAM (predicted class)", show_label=False, interactive=False, height=220,
                                   buttons=[], alt_text=f"{name}: Grad-CAM of its predicted class over the face crop, "
                                   "with its colour bar (read below)")
                gr.Markdown(f"{reading(POST_HOC)} Colour bar: {units(POST_HOC)}.")
                columns += [label, summary, native, gradcam]
    if untrained_line(bank):
        gr.Markdown(untrained_line(bank), elem_id="compare-untrained")
    handler = functools.partial(compare, bank)
    inputs = dict(path=photo, whole_image=whole, index=face_index)
    outputs = [status, boxes, crops] + columns
    in_browser = functools.partial(compare_new_photo, bank)
    button.click(in_browser, inputs_kwargs=inputs, outputs=outputs, api_visibility="undocumented")
    # /predict, for API clients: the same comparison, raising on a photo it cannot use (a hidden button's event)
    gr.Button(visible=False).click(handler, inputs_kwargs=inputs, outputs=outputs, api_name="predict")
    # a new photo starts at its face 0 (a face number clicked on the previous photo may not exist in this one)
    photo.upload(lambda: 0, None, face_index, api_visibility="undocumented").then(
        in_browser, inputs_kwargs=inputs, outputs=outputs, api_visibility="undocumented")
    boxes.select(face_at, [photo, whole], face_index, api_visibility="undocumented").success(
        handler, inputs_kwargs=inputs, outputs=outputs, api_visibility="undocumented")
    for trigger in (button.click, photo.upload, boxes.select):
        scroll_to_on_narrow(trigger, "compare-results")
