"""Explain tab: chosen models × chosen methods on one face, with overlay controls, a shared scale,
faithfulness beside every map, and a slider to compare two maps."""

from __future__ import annotations

import gradio as gr

from ferx.explain.faithfulness import describe_baseline
from ferx.explain.report import ExplainableModel, explain_face
from webapp.errors import user_errors
from webapp.explaining import (CAM_CHOICES, CAPTUM_CHOICES, HEAVY, READING, faithfulness_line,
                               photo_inputs, pick_face, scales_for, search_faces, tile, verdict)
from webapp.model_bank import ModelBank

HELP = ("Pick models and methods. **Native** maps are the networks' own attention; CAM and Captum maps are "
        "post-hoc explanations of the target class. Beside each map, *deletion AUC* (remove the most important "
        "pixels first: a faithful map makes the score fall fast, so lower is better) is compared with the same "
        "test on random maps. Slow methods (Score-CAM, Integrated Gradients, Occlusion) run only when chosen.")
COLORMAPS = ["jet", "viridis", "inferno", "magma", "turbo", "RdBu_r", "coolwarm"]


def build_explain_tab(bank: ModelBank):
    classes = sorted({c for m in bank.models.values() for c in m.labels.classes})
    gr.Markdown(HELP)
    with gr.Row():
        with gr.Column(scale=2):
            image, whole, face_index = photo_inputs("Photo or face", "explain-photo", 300)
            models = gr.CheckboxGroup(bank.names, value=bank.names[:2], label="Models")
            native = gr.Checkbox(True, label="Native attention (LANMSFF MassAtt, Conv-cut self-attention)")
            cams = gr.CheckboxGroup(CAM_CHOICES, value=["gradcam"], label="CAM family (pytorch-grad-cam)")
            captum = gr.CheckboxGroup(CAPTUM_CHOICES, value=[], label="Captum attributions")
            with gr.Row():
                target = gr.Dropdown(["predicted"] + classes, value="predicted", label="Target class")
                contrast = gr.Dropdown(["none"] + classes, value="none", label="…over (contrastive)")
        with gr.Column(scale=3):
            with gr.Row():
                alpha = gr.Slider(0, 1, 0.5, step=0.05, label="Opacity")
                cmap = gr.Dropdown(["auto"] + COLORMAPS, value="auto", label="Colormap (auto: jet, RdBu for signed)")
            with gr.Row():
                clip = gr.Slider(90, 100, 99, step=0.5, label="Clip at percentile")
                shared = gr.Checkbox(True, label="Shared scale (one per method across models)")
            with gr.Row():
                faithful = gr.Checkbox(True, label="Faithfulness (deletion / insertion vs random maps)")
                baseline = gr.Dropdown(["blur", "black", "mean"], value="blur", label="Deleted pixels become")
            button = gr.Button("Explain", variant="primary")
            status = gr.Markdown()
            gallery = gr.Gallery(label="Maps", columns=3, height=520, elem_id="explain-gallery")
            readings = gr.Markdown()
            with gr.Row():
                pick_a = gr.Dropdown([], label="Slider: map A")
                pick_b = gr.Dropdown([], label="Slider: map B")
            slider = gr.ImageSlider(label="Compare two maps (drag)", height=360)
            numbers = gr.JSON(label="Numbers", visible=True)
    tiles_state = gr.State([])

    @user_errors
    def explain(path, whole_image, index, chosen, use_native, cam_methods, captum_methods, target_name, contrast_name,
                opacity, colormap_name, clip_pct, shared_scale, faithfulness, baseline_kind,
                progress=gr.Progress(track_tqdm=True)):
        if not path:
            raise gr.Error("Upload a photo (or open a face from the Dataset tab) first.")
        if not chosen:
            raise gr.Error("Choose at least one model.")
        methods = (["native"] if use_native else []) + list(cam_methods) + list(captum_methods)
        if not methods:
            raise gr.Error("Choose at least one method.")
        search = search_faces(path, bool(whole_image))
        if search.no_face:
            raise gr.Error("No face found. Tick 'Score the whole image as a face' to explain it anyway.")
        index = pick_face(search, index)
        face = search.faces[index]
        explanations = []
        for i, name in enumerate(chosen):
            progress(i / len(chosen), desc=f"{name}: {', '.join(methods)}"
                     + (" (slow methods take several seconds)" if HEAVY & set(methods) else ""))
            labels = bank.models[name].labels.classes
            t = None if target_name == "predicted" else _class_index(labels, target_name, name)
            c = None if contrast_name == "none" else _class_index(labels, contrast_name, name)
            if c is not None and t is None:
                raise gr.Error("A contrastive explanation needs an explicit target class (A over B).")
            with bank.using(name) as loaded:
                explanations.append(explain_face(ExplainableModel.from_loaded(loaded), face, methods, target=t,
                                                 contrast=c, faithfulness=bool(faithfulness), baseline=baseline_kind))
        scales = scales_for(explanations, bool(shared_scale), float(clip_pct))
        cm = None if colormap_name == "auto" else colormap_name
        tiles, lines = [], []
        for name, ex, sc in zip(chosen, explanations, scales):
            lines.append(f"**{name}** — {verdict(ex)}" + "".join(f" _{n}_" for n in ex.notes))
            for m, f, s in zip(ex.maps, ex.faithfulness, sc):
                caption = f"{name} · {m.title}"
                tiles.append((tile(face.crop, m.crop_values, s, cm, float(opacity)), caption))
                lines.append(f"- *{caption}* ({m.kind}, {m.elapsed_s * 1000:.0f} ms): {READING.get(m.method, '')}"
                             f"<br>{faithfulness_line(f)}")
        if faithfulness:
            lines.append(f"\nDeletion/insertion baseline — {describe_baseline(baseline_kind, 64)}; score: softmax "
                         "probability of the target class.")
        numbers = {"face": face.to_dict(), "models": [ex.to_dict() for ex in explanations]}
        names = [caption for _, caption in tiles]
        second = names[1] if len(names) > 1 else names[0]
        return (f"{len(search.faces)} face(s); explaining face {index}", tiles, "\n".join(lines), numbers, tiles,
                gr.update(choices=names, value=names[0]), gr.update(choices=names, value=second),
                (tiles[0][0], tiles[1][0] if len(tiles) > 1 else tiles[0][0]))

    button.click(explain, [image, whole, face_index, models, native, cams, captum, target, contrast, alpha, cmap, clip,
                           shared, faithful, baseline],
                 [status, gallery, readings, numbers, tiles_state, pick_a, pick_b, slider], api_name="explain")

    def compare_two(tiles, a, b):
        lookup = {caption: img for img, caption in tiles}
        if a not in lookup or b not in lookup:
            return gr.skip()
        return lookup[a], lookup[b]

    for picker in (pick_a, pick_b):
        picker.input(compare_two, [tiles_state, pick_a, pick_b], slider, api_visibility="undocumented")

    def show_faces(path, whole_image):
        if not path:
            return gr.skip()
        try:
            search = search_faces(path, bool(whole_image))
        except ValueError as err:
            raise gr.Error(str(err)) from None
        return f"{len(search.faces)} face(s) found" if not search.no_face else "No face found: tick 'whole image'."

    image.upload(show_faces, [image, whole], status, api_visibility="undocumented")
    return image, whole


def _class_index(classes, name: str, model: str) -> int:
    if name not in classes:
        raise gr.Error(f"{model} has no class '{name}' (its classes: {', '.join(classes)}).")
    return classes.index(name)

