"""Explain tab: chosen models × chosen methods on one face, with overlay controls, a shared scale,
faithfulness beside every map, and a slider to compare two maps.

The method choices, their readings and which of them are slow come from the method registry
(:mod:`ferx.explain.methods`); the loop and its JSON are :func:`ferx.explain.report.explain_photo`'s.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import SimpleNamespace

import gradio as gr

from ferx.explain.methods import FAMILIES, get_method, list_methods, reading, units
from ferx.explain.overlay import describe_scale, map_scales
from ferx.explain.regions import REGIONS, breakdown_line
from ferx.explain.report import FAITHFULNESS_COST, explain_photo
from ferx.models import get_model_info, list_models
from ferx.text import plural
from webapp.errors import user_errors
from webapp.narrow import scroll_to_on_narrow
from webapp.explaining import (baseline_line, channel_tile, faithfulness_line, from_png, photo_inputs, png_bytes,
                               search_faces, tile, verdict)

COLORMAPS = ["jet", "viridis", "inferno", "magma", "turbo", "RdBu_r", "coolwarm"]


def help_text() -> str:
    slow = ", ".join(get_method(m).title for m in list_methods(offered=True, cost="heavy"))
    return ("Pick models and methods. **Native** maps are the networks' own attention; CAM and Captum maps are "
            "post-hoc explanations of the target class. Beside each map, *deletion AUC* (remove the most important "
            "pixels first: a faithful map makes the score fall fast, so lower is better) is compared with the same "
            "test on random maps. **Faithfulness is the slow part** — about "
            f"{FAITHFULNESS_COST}× each map's own time (five maps: ~15 s with it, ~2 s without on 2 CPU cores); "
            f"untick it for quick maps. Of the methods, {slow} take seconds each.")


def native_label() -> str:
    with_attention = [m for m in list_models() if get_model_info(m).native_maps]
    return f"{FAMILIES['native']} ({', '.join(with_attention)})"


@user_errors
def explain(bank, path, whole_image, index, chosen, use_native, cam_methods, captum_methods, target_name,
            contrast_name, opacity, colormap_name, clip_pct, shared_scale, faithfulness, baseline_kind,
            source=None, progress=gr.Progress(track_tqdm=True)):
    """Explain face ``index`` of a photo with the ``chosen`` models and methods.

    Returns the status line, the captioned map tiles, the readings (with faithfulness), the numbers
    (the JSON of ``ferx explain``) and the slider's state. ``target_name`` is a class name or
    "predicted"; ``contrast_name`` a class name or "none". ``source`` describes a dataset face opened
    from the Dataset tab (dataset, split, sample, true label; see :func:`source_line`).
    """
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
    try:
        index = search.pick(index)
    except ValueError as err:  # one message; the maps shown stay (not a red "Error" in every panel)
        gr.Warning(str(err))
        return [f"**{err}**"] + [gr.skip()] * 7
    slow = " (slow methods take several seconds)" if set(methods) & set(list_methods(cost="heavy")) else ""


    scale = "shared" if shared_scale else "per-map"
    result = explain_photo(chosen, search, index, methods, using=bank.using,
                           progress=lambda fraction, what: progress(fraction, desc=f"{what}{slow}"),
                           target=None if target_name == "predicted" else target_name,
                           contrast=None if contrast_name == "none" else contrast_name,
                           faithfulness=bool(faithfulness), baseline=baseline_kind)
    scales = map_scales(result.rows, scale, float(clip_pct))
    crop = search.faces[result.face].crop
    cmap = None if colormap_name == "auto" else colormap_name
    tiles, lines = [], []
    for name, ex, sc in zip(chosen, result.rows, scales):
        lines.append(f"\n**{name}** — {verdict(ex)}" + "".join(f" _{n}_" for n in ex.notes))
        for m, f, s in zip(ex.maps, ex.faithfulness, sc):
            caption = f"{name} · {m.title}" + (" · ⚠️ off-face" if m.regions and m.regions["warning"] else "")
            tiles.append((tile(crop, m.crop_values, s, cmap, float(opacity)), caption))
            warn = m.regions["warning"] if m.regions else None
            lines.append(f"- *{caption}* ({m.kind}, {m.elapsed_s * 1000:.0f} ms): {reading(m.method)}"
                         f"<br>colour bar: {units(m.method)} — {describe_scale(s, scale)}<br>{faithfulness_line(f)}"
                         f"<br>facial regions, share of positive mass (area): "
                         f"{breakdown_line(m.regions, top=len(REGIONS))}" + (f"<br>⚠️ **{warn}**" if warn else ""))
        if ex.channel_weights:  # the channel half of MassAtt, beside its spatial maps
            tiles.append((channel_tile(ex.channel_weights), f"{name} · MassAtt channel weights"))
    lines.append(baseline_line(result.rows))
    names = [caption for _, caption in tiles]
    numbers = result.to_dict(scale)
    numbers["photo"]["name"] = Path(numbers["photo"]["name"]).name  # the user's file name, never a server path
    second = names[1] if len(names) > 1 else names[0]
    if source:
        numbers["photo"]["sample"] = source
    found = (source_line(source) if source else
             f"{plural(len(search.faces), 'face')} found; explaining face {result.face}"
             + (f" — {search.note}" if search.note else ""))
    return (found, tiles, "\n".join(lines),
            numbers, [(png_bytes(img), caption) for img, caption in tiles], gr.update(choices=names, value=names[0]),
            gr.update(choices=names, value=second), (tiles[0][0], tiles[1][0] if len(tiles) > 1 else tiles[0][0]))


def source_line(source: dict | None) -> str:
    """Where a face opened from the Dataset tab comes from, and its true label."""
    if not source:
        return ""
    votes = source.get("votes")
    said = (" · annotators: " + ", ".join(f"{c} {v:.0%}" for c, v in sorted(votes.items(), key=lambda cv: -cv[1]))
            if votes else "")
    return (f"{source['dataset']}/{source['split']} face #{source['sample']} (its exact pixels) · "
            f"true label **{source['true']}**{said}")


def compare_two(tiles, a, b):
    """The slider's two maps, from the session's tiles (kept PNG-encoded: a session holds ~0.4 MiB of them,
    not ~1.7 MiB of arrays, and up to FERX_MAX_SESSIONS sessions are kept)."""
    lookup = {caption: data for data, caption in tiles}
    if a not in lookup or b not in lookup:
        return gr.skip()
    return from_png(lookup[a]), from_png(lookup[b])


@user_errors
def show_faces(path, whole_image):
    if not path:
        return gr.skip()
    search = search_faces(path, bool(whole_image))
    if search.no_face:
        return "No face found: tick 'whole image'."
    return f"{plural(len(search.faces), 'face')} found" + (f" — {search.note}" if search.note else "")


def build_explain_tab(ctx) -> None:
    """The tab's layout and wiring; offers its photo inputs to later tabs as ``ctx.shared["explain_photo"]``."""
    bank = ctx.bank
    classes = sorted({c for m in bank.models.values() for c in m.labels.classes})
    gr.Markdown(help_text())
    with gr.Row():
        with gr.Column(scale=2):
            image, whole, face_index = photo_inputs("Photo or face", "explain-photo", 300)
            models = gr.CheckboxGroup(bank.names, value=bank.names[:2], label="Models")
            # ticked and shown only when an offered model has attention of its own (else it would always be skipped)
            any_native = any(get_model_info(m.name).native_maps for m in bank.models.values())
            native = gr.Checkbox(any_native, label=native_label(), visible=any_native)
            cams = gr.CheckboxGroup(list_methods("cam", offered=True), value=["gradcam"], label=FAMILIES["cam"])
            captum = gr.CheckboxGroup(list_methods("captum", offered=True), value=[], label=FAMILIES["captum"])
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
            status = gr.Markdown(elem_id="explain-results")
            gallery = gr.Gallery(label="Maps", columns=2, height=980, object_fit="contain",
                                 elem_id="explain-gallery")  # whole tiles: face, colour bar and its numbers
            readings = gr.Markdown()
            with gr.Row():
                pick_a = gr.Dropdown([], label="Slider: map A")
                pick_b = gr.Dropdown([], label="Slider: map B")
            slider = gr.ImageSlider(label="Compare two maps (drag)", height=360)
            numbers = gr.JSON(label="Numbers", visible=True)
    tiles_state = gr.State([], time_to_live=ctx.cfg.state_ttl_s)
    source = gr.State(None, time_to_live=ctx.cfg.state_ttl_s)  # a dataset face's origin, until the next upload
    run = SimpleNamespace(fn=functools.partial(explain, bank), inputs_kwargs=dict(
        path=image, whole_image=whole, index=face_index, chosen=models, use_native=native, cam_methods=cams,
        captum_methods=captum, target_name=target, contrast_name=contrast, opacity=alpha, colormap_name=cmap,
        clip_pct=clip, shared_scale=shared, faithfulness=faithful, baseline_kind=baseline, source=source),
        outputs=[status, gallery, readings, numbers, tiles_state, pick_a, pick_b, slider])
    button.click(run.fn, inputs_kwargs=run.inputs_kwargs, outputs=run.outputs, api_name="explain")
    scroll_to_on_narrow(button.click, "explain-results")
    for picker in (pick_a, pick_b):
        picker.input(compare_two, [tiles_state, pick_a, pick_b], slider, api_visibility="undocumented")
    image.upload(show_faces, [image, whole], status, api_visibility="undocumented").then(
        lambda: None, None, source, api_visibility="undocumented")  # an upload is not the dataset face any more
    # the Dataset tab opens a face here (its pixels, whole-image, face 0, its origin) and runs the explanation
    ctx.shared["explain_photo"] = SimpleNamespace(image=image, whole=whole, index=face_index, source=source, run=run)
