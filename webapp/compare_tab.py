"""Compare tab: a photo → its faces → every model's probabilities, native attention and Grad-CAM
side by side, each method drawn on one colour scale shared by the models."""

from __future__ import annotations

import time

import gradio as gr

from ferx.explain.report import ExplainableModel, explain_face
from webapp.errors import user_errors
from webapp.explaining import (READING, annotate, crop_strip, photo_inputs, pick_face, scales_for, search_faces, tile,
                               verdict)
from webapp.model_bank import ModelBank

HELP = ("Upload a photo, take one with the webcam, or pick an example. Faces are found with OpenCV's Haar "
        "detector (largest first); each model scores the square crop shown. **Native** maps are the network's own "
        "attention (part of how it predicts); **Grad-CAM** is an after-the-fact explanation of the predicted "
        "class. Each method uses one colour scale for all models, so their maps can be compared.")


NATIVE_LINE = {"lanmsff": READING["massatt_block2_spatial"], "convcut": READING["convcut_attention"]}


def build_compare_tab(bank: ModelBank, examples: list[str]):
    gr.Markdown(HELP)
    with gr.Row():
        with gr.Column(scale=2):
            photo, whole, face_index = photo_inputs("Photo", "compare-photo", 360)
            button = gr.Button("Compare models", variant="primary")
            if examples:
                gr.Examples(examples, inputs=photo, label="Examples (FER-2013 test faces from the data root)")
        with gr.Column(scale=3):
            status = gr.Markdown()
            boxes = gr.Image(label="Detected faces (orange: the one scored)", interactive=False, height=300)
            crops = gr.Image(label="Face crops, as cropped for the models (numbered)", interactive=False,
                             height=160)
    columns = []
    with gr.Row():
        for name in bank.names:
            with gr.Column():
                gr.Markdown(f"### {name}")
                label = gr.Label(num_top_classes=len(bank.models[name].labels), label="Probabilities",
                                 elem_classes=["compare-probs"])
                summary = gr.Markdown()
                native = gr.Image(label="Native attention", interactive=False, height=220)
                gr.Markdown(NATIVE_LINE.get(bank.models[name].name, "This architecture has no attention of its own."))
                gradcam = gr.Image(label="Grad-CAM (predicted class)", interactive=False, height=220)
                gr.Markdown(READING["gradcam"])
                columns.append((label, summary, native, gradcam))

    @user_errors
    def compare(path, whole_image, index):
        if not path:
            raise gr.Error("Upload a photo, use the webcam or pick an example first.")
        start = time.perf_counter()
        search = search_faces(path, bool(whole_image))
        if search.no_face:
            gr.Warning("No face found. Tick 'Score the whole image as a face' to score it anyway.")
            return ["No face found in this photo. Tick **Score the whole image as a face** to score it anyway.",
                    annotate(search), None] + [None] * (4 * len(columns))
        index = pick_face(search, index)
        face = search.faces[index]
        explanations = []
        for name in bank.names:
            with bank.using(name) as loaded:
                explanations.append(explain_face(ExplainableModel.from_loaded(loaded), face, ["native", "gradcam"],
                                                 faithfulness=False))
        scales = scales_for(explanations, shared=True, clip=99.0)
        outputs = []
        for ex, sc in zip(explanations, scales):
            native = next((i for i, m in enumerate(ex.maps) if m.kind == "native"), None)
            cam = next(i for i, m in enumerate(ex.maps) if m.method == "gradcam")
            native_img = None if native is None else tile(face.crop, ex.maps[native].crop_values, sc[native], None, 0.5)
            outputs += [{c: float(p) for c, p in zip(ex.classes, ex.probs)}, verdict(ex)
                        + ("" if native is not None else "<br>*no native attention in this architecture*"),
                        native_img, tile(face.crop, ex.maps[cam].crop_values, sc[cam], None, 0.5)]
        note = (f"{len(search.faces)} face(s) found; scoring face {index}"
                + (" (whole image)" if face.whole_image else "") + f" · {time.perf_counter() - start:.2f} s")
        return [note, annotate(search, index), crop_strip(search)] + outputs

    outputs = [status, boxes, crops] + [c for col in columns for c in col]
    button.click(compare, [photo, whole, face_index], outputs, api_name="predict")
    photo.upload(compare, [photo, whole, face_index], outputs, api_visibility="undocumented")
    return photo
