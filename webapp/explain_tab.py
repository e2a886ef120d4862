"""Explain tab: chosen models × chosen methods on one face, with overlay controls, a shared scale,
faithfulness beside every map, and a slider to compare two maps.

The method choices, their readings and which of them are slow come from the method registry
(:mod:`ferx.explain.methods`); the loop and its JSON are :func:`ferx.explain.report.explain_photo`'s.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import cv2
import gradio as gr

from ferx.explain.card import write_card
from ferx.explain.methods import FAMILIES, get_method, list_methods, map_caption, reading, units
from ferx.explain.attributions import BASELINES, DELETION_BASELINE
from ferx.explain.overlay import (ALPHA, CLIP_PERCENTILE, DEFAULT_CMAP, DEFAULT_SIGNED_CMAP, describe_scale, flat_range,
                                  map_scales)
from ferx.explain.regions import REGIONS, breakdown_line
from ferx.explain.report import FAITHFULNESS_COST, explain_photo
from ferx.models import get_model_info, list_models
from webapp.errors import at_least_one, given, user_errors
from webapp.links import face_of, is_origin_of, linked_settings, view_link
from webapp.narrow import scroll_to_on_narrow
from webapp.explaining import (CHANNEL_READING, baseline_line, channel_tile, faithfulness_line, faithfulness_tag,
                               found_line, from_png, offer_examples, photo_inputs, png_bytes, search_faces, tile,
                               verdict)
from webapp.stops import stoppable
from webapp.uploads import KEPT_AT_MOST, photo_state, user_temp_dir

COLORMAPS = ["inferno", "viridis", "magma", "jet", "turbo", "RdBu_r", "coolwarm"]


def help_text() -> str:
    slow = ", ".join(get_method(m).title for m in list_methods(offered=True, cost="heavy"))
    return ("Pick models and methods. **Native** maps are the networks' own attention; CAM and Captum maps are "
            "post-hoc explanations of the target class. Beside each map, *deletion AUC* (remove the most important "
            "pixels first: a faithful map makes the score fall fast, so lower is better) is compared with the same "
            "test on random maps. **Faithfulness is the slow part** — about "
            f"{FAITHFULNESS_COST}× each map's own time, most with Conv-cut; "
            f"untick it for quick maps. Of the methods, {slow} take seconds each.")


def native_label() -> str:
    with_attention = [m for m in list_models() if get_model_info(m).native_maps]
    return f"{FAMILIES['native']} ({', '.join(with_attention)})"


class Explained:
    """The last explanations of dataset faces and examples, keyed by the face, the models' checkpoint hashes and
    every setting that changes a number (not the view's colours or scale): explaining the same face again with
    another colormap, opacity or scale redraws it at once instead of recomputing it (16 s for Conv-cut and LANMSFF
    with faithfulness on 2 CPU cores). An upload is never kept (``face_of`` is None for it)."""

    def __init__(self, size: int = 16):
        self.size, self.kept, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            if key in self.kept:
                self.kept.move_to_end(key)
            return self.kept.get(key)

    def put(self, key, result) -> None:
        with self.lock:
            self.kept[key] = result
            while len(self.kept) > self.size:
                self.kept.popitem(last=False)


EXPLAINED = Explained()


@user_errors
def explain(bank, path, whole_image, index, chosen, use_native, cam_methods, captum_methods, target_name,
            contrast_name, opacity, colormap_name, clip_pct, shared_scale, faithfulness, baseline_kind,
            source=None, examples=(), request: gr.Request = None, progress=gr.Progress(track_tqdm=True)):
    """Explain face ``index`` of a photo with the ``chosen`` models and methods.

    Returns the status line, the captioned map tiles, the readings (with faithfulness), the numbers
    (the JSON of ``ferx explain``) and the slider's state. ``target_name`` is a class name or
    "predicted"; ``contrast_name`` a class name or "none". ``source`` describes a dataset face opened
    from the Dataset tab (dataset, split, sample, true label; see :func:`source_line`). The last output
    is what the explanation card draws (:func:`explanation_card`): the result, these settings, and the
    face as a link names it (None for an upload). Closing the page stops the run between its steps
    (:mod:`webapp.stops`).
    """
    settings = {k: v for k, v in locals().items() if k in LINKED}  # as the user set them: the card and link say so
    if not path:
        raise gr.Error("Upload a photo (or open a face from the Dataset tab) first.")
    at_least_one(chosen, "model")
    methods = (["native"] if use_native else []) + list(cam_methods) + list(captum_methods)
    at_least_one(methods, "method")
    search = search_faces(path, bool(whole_image))
    if search.no_face:
        raise gr.Error(f"No face found in {search.photo.name}. Tick 'Score the whole image as a face' to explain it "
                       "anyway." + (f" ({search.note})" if search.note else ""))
    try:
        index = search.pick(index)
    except ValueError as err:  # one message; the maps shown stay (not a red "Error" in every panel)
        gr.Warning(str(err))
        return [f"**{err}**"] + [gr.skip()] * 8
    slow = " (slow methods take several seconds)" if set(methods) & set(list_methods(cost="heavy")) else ""
    scale = "shared" if shared_scale else "per-map"
    if not is_origin_of(source, path):
        source = None  # the origin of a face opened earlier: this photo is another (an example, a link's)
    face = face_of(path, source, examples)  # a dataset face or an example (an upload or a zip's: None, not kept)
    key = face and (json.dumps(face, sort_keys=True), bool(whole_image), index, tuple(methods), target_name,
                    contrast_name, bool(faithfulness), baseline_kind,
                    tuple((name, bank.models[name].sha256) for name in chosen if name in bank.models))
    kept = EXPLAINED.get(key) if key else None
    result = replace(kept, search=search) if kept else None  # this photo's file and name, the same pixels
    if result is None:
        def step(fraction, what):
            check()  # the page was closed: no one waits for the rest
            progress(fraction, desc=f"{what}{slow}")

        with stoppable(request, "explanation") as check:
            result = explain_photo(chosen, search, index, methods, using=bank.own_copy,  # others' Compare does not wait
                                   progress=step, target=None if target_name == "predicted" else target_name,
                                   contrast=None if contrast_name == "none" else contrast_name,
                                   faithfulness=bool(faithfulness), baseline=baseline_kind)
        if key:
            EXPLAINED.put(key, result)
    scales = map_scales(result.rows, scale, float(clip_pct))
    crop = search.faces[result.face].crop
    cmap = None if colormap_name == "auto" else colormap_name
    tiles, shown, lines = [], [], []  # shown: the gallery's captions (the slider picks by the tiles')
    for name, ex, sc in zip(chosen, result.rows, scales):
        lines.append(f"\n**{name}** — {verdict(ex)}" + "".join(f" _{n}_" for n in ex.notes))
        for m, f, s in zip(ex.maps, ex.faithfulness, sc):
            flat = flat_range(s)  # as drawn: a narrow colour range would make it look structured
            caption = (f"{name} · {map_caption(m)}" + (f" · {flat}" if flat else "")
                       + (" · ⚠️ off-face" if m.regions and m.regions["warning"] else ""))
            tiles.append((tile(crop, m.crop_values, s, cmap, float(opacity)), caption))
            shown.append(caption + faithfulness_tag(f))  # the gallery's: faithfulness beside the map
            warn = m.regions["warning"] if m.regions else None
            lines.append(f"- *{caption}* ({m.kind}, {m.elapsed_s * 1000:.0f} ms): {reading(m.method)}"
                         f"<br>colour bar: {units(m.method)} — {describe_scale(s, scale)}<br>{faithfulness_line(f)}"
                         f"<br>facial regions, share of positive mass (area): "
                         f"{breakdown_line(m.regions, top=len(REGIONS))}" + (f"<br>⚠️ **{warn}**" if warn else ""))
        if ex.channel_weights:  # the channel half of MassAtt, beside its spatial maps
            tiles.append((channel_tile(ex.channel_weights), f"{name} · MassAtt channel weights"))
            shown.append(tiles[-1][1])
            lines.append(f"- *{tiles[-1][1]}*: {CHANNEL_READING}")
    if not tiles:  # only native attention was asked for, of models without any
        raise gr.Error(f"No map to draw: {', '.join(chosen)} {'has' if len(chosen) == 1 else 'have'} no native "
                       "attention. Tick Grad-CAM or a Captum method as well.")
    lines.append(baseline_line(result.rows))
    names = [caption for _, caption in tiles]
    numbers = result.to_dict(scale)
    numbers["photo"]["name"] = Path(numbers["photo"]["name"]).name  # the user's file name, never a server path
    second = names[1] if len(names) > 1 else names[0]
    if source:
        numbers["photo"]["sample"] = source
    found = (source_line(source) if source else
             found_line(search, result.face, "explaining") + (f" — {search.note}" if search.note else ""))
    return (found, [(img, caption) for (img, _), caption in zip(tiles, shown)], "\n".join(lines),
            numbers, [(png_bytes(img), caption) for img, caption in tiles], gr.update(choices=names, value=names[0]),
            gr.update(choices=names, value=second), (tiles[0][0], tiles[1][0] if len(tiles) > 1 else tiles[0][0]),
            {"result": kept_for_card(result), "settings": settings, "face": face})


LINKED = linked_settings(explain)
CARD_PHOTO_SIDE = 1024  # the card's header photo: a session keeps at most this much of it


def kept_for_card(result):
    """What a session keeps for the card: the result with its photo at most CARD_PHOTO_SIDE px (its
    scale follows, so the face boxes stay in place) and maps without their crop-size copies (the card
    redraws them from the maps' own resolution)."""
    photo = result.search.photo
    k = CARD_PHOTO_SIDE / max(photo.rgb.shape[:2])
    if k < 1:  # each side at least 1 px: a 1x2048 strip is 1x1024, not 0x1024 (cv2 refused it: "went wrong")
        h, w = photo.rgb.shape[:2]
        size = (max(1, round(w * k)), max(1, round(h * k)))
        photo = replace(photo, rgb=cv2.resize(photo.rgb, size, interpolation=cv2.INTER_AREA))
    rows = [replace(row, maps=[replace(m, crop_values=None) for m in row.maps]) for row in result.rows]
    return replace(result, search=replace(result.search, photo=photo), rows=rows)


@user_errors
def explanation_card(bank, swept: set, card, base_url: str):
    """The card of the explanation on screen (PNG, PDF, JSON) and the link that restores the view."""
    if not card:
        raise gr.Error("Explain a face first: the card shows the explanation on screen (a photo is kept at most "
                       f"{KEPT_AT_MOST} for its card, then dropped: explain it again).")
    s = card["settings"]
    link = view_link(base_url, card["face"], s) if card["face"] else None
    folder = user_temp_dir("cards") / uuid.uuid4().hex
    files = write_card(folder / f"{Path(card['result'].search.photo.name).stem}_card", card["result"],
                       [bank.models[name] for name in s["chosen"]], scale="shared" if s["shared_scale"] else "per-map",
                       clip_percentile=float(s["clip_pct"]), alpha=float(s["opacity"]),
                       cmap=None if s["colormap_name"] == "auto" else s["colormap_name"],
                       target=None if s["target_name"] == "predicted" else s["target_name"],
                       contrast=None if s["contrast_name"] == "none" else s["contrast_name"], link=link)
    swept.update(map(str, files))  # deleted with the uploads (webapp/uploads.py)
    note = (f"[Link to this view]({link}) — opens this face with these settings and explains it again" if link else
            "No link: an uploaded photo is not stored, so no link can reopen it (faces opened from the Dataset "
            "tab and the examples have links).")
    return [str(f) for f in files], str(files.png), note, link or ""


def source_line(source: dict | None) -> str:
    """Where a face opened from the Dataset tab comes from, and its true label."""
    if not source:
        return ""
    votes = source.get("votes")
    said = (" · annotators: " + ", ".join(f"{c} {v:.0%}" for c, v in sorted(votes.items(), key=lambda cv: -cv[1]))
            if votes else "")
    return (f"{source['dataset']}/{source['split']} face #{source['sample']} (its exact pixels) · "
            f"true label **{source['true']}**{said}")


@user_errors
def compare_two(tiles, a, b):
    """The slider's two maps, from the session's tiles (kept PNG-encoded: a session holds ~0.4 MiB of them,
    not ~1.7 MiB of arrays, and up to FERX_MAX_SESSIONS sessions are kept)."""
    lookup = {caption: data for data, caption in tiles or ()}
    if not tiles and (a or b):
        gr.Info(f"The maps of this face were dropped within {KEPT_AT_MOST} of being drawn (a photo is not kept): "
                "press Explain again to compare them.")
    if a not in lookup or b not in lookup:
        return gr.skip()
    return from_png(lookup[a]), from_png(lookup[b])


@user_errors
def show_faces(path, whole_image):
    if not path:
        return gr.skip()
    search = search_faces(path, bool(whole_image))
    if search.no_face:
        return (f"No face found in {search.photo.name}: tick 'Score the whole image as a face'."
                + (f" ({search.note})" if search.note else ""))
    return found_line(search) + (f" — {search.note}" if search.note else "")


def build_explain_tab(ctx) -> None:
    """The tab's layout and wiring; offers its photo inputs to later tabs as ``ctx.shared["explain_photo"]``."""
    bank = ctx.bank
    classes = sorted({c for m in bank.models.values() for c in m.labels.classes})
    gr.Markdown(help_text())
    with gr.Row():
        with gr.Column(scale=2):
            image, whole, face_index = photo_inputs("Photo or face", "explain-photo", 300)
            offer_examples(ctx, image)  # an example's view has a link (an upload's cannot)
            models = gr.CheckboxGroup(bank.names, value=bank.names[:2], label="Models", elem_id="explain-models")
            # ticked and shown only when an offered model has attention of its own (else it would always be skipped)
            any_native = any(get_model_info(m.name).native_maps for m in bank.models.values())
            native = gr.Checkbox(any_native, label=native_label(), visible=any_native)
            cams = gr.CheckboxGroup([(get_method(m).title, m) for m in list_methods("cam", offered=True)],
                                    value=["gradcam"], label=FAMILIES["cam"])
            captum = gr.CheckboxGroup([(get_method(m).title, m) for m in list_methods("captum", offered=True)],
                                      value=[], label=FAMILIES["captum"])
            with gr.Row():
                target = gr.Dropdown(["predicted"] + classes, value="predicted", label="Target class")
                contrast = gr.Dropdown(["none"] + classes, value="none", label="…over (contrastive)")
        with gr.Column(scale=3):
            with gr.Row():
                alpha = gr.Slider(0, 1, ALPHA, step=0.05, label="Opacity")
                cmap = gr.Dropdown(["auto"] + COLORMAPS, value="auto",
                                   label=f"Colormap (auto: {DEFAULT_CMAP}, {DEFAULT_SIGNED_CMAP} for signed)")
            with gr.Row():
                clip = gr.Slider(90, 100, CLIP_PERCENTILE, step=0.5, label="Clip at percentile")
                shared = gr.Checkbox(True, label="Shared scale (one per method across models)")
            with gr.Row():
                faithful = gr.Checkbox(True, label="Faithfulness (deletion / insertion vs random maps)")
                baseline = gr.Dropdown(list(BASELINES), value=DELETION_BASELINE, label="Deleted pixels become")
            button = gr.Button("Explain", variant="primary")
            # the progress of a run shows here, under the button (on the 980-px gallery it sat below the fold and
            # its line overprinted the slider's labels)
            status = gr.Markdown(elem_id="explain-results", min_height=60)
            gallery = gr.Gallery(label="Maps", columns=2, height=980, object_fit="contain",
                                 elem_id="explain-gallery")  # whole tiles: face, colour bar and its numbers
            readings = gr.Markdown()
            with gr.Row():
                pick_a = gr.Dropdown([], label="Slider: map A")
                pick_b = gr.Dropdown([], label="Slider: map B")
            # max_height fits the whole tile (a height crops it to fill the box: the mouth and the colour bar's numbers
            # were cut off)
            slider = gr.ImageSlider(label="Compare two maps (drag)", max_height=360)
            numbers = gr.JSON(label="Numbers", visible=True)
            card_button = gr.Button("Explanation card (PNG, PDF) and link")
            card_note = gr.Markdown(elem_id="explain-card-link")
            card_url = gr.Textbox(label="Link to this view", buttons=["copy"], interactive=False,
                                  elem_id="explain-card-url", visible=False)  # shown when there is a link
            card_files = gr.File(label="The card: PNG, PDF and its JSON", file_count="multiple",
                                 elem_id="explain-card-files")
            card_png = gr.Image(label="The card", interactive=False, elem_id="explain-card-png",
                                alt_text="The explanation card: the photo, each model's crop, probabilities and maps "
                                "with their colour bars and faithfulness, and the settings (the JSON beside it holds "
                                "its numbers)")
    tiles_state, card_state = photo_state(ctx), photo_state(ctx)  # the face's pixels: kept as briefly as its files
    source = gr.State(None, time_to_live=ctx.cfg.state_ttl_s)  # a dataset face's origin, until the next upload
    run = SimpleNamespace(fn=given(explain, bank, examples=ctx.shared.get("examples")), inputs_kwargs=dict(
        path=image, whole_image=whole, index=face_index, chosen=models, use_native=native, cam_methods=cams,
        captum_methods=captum, target_name=target, contrast_name=contrast, opacity=alpha, colormap_name=cmap,
        clip_pct=clip, shared_scale=shared, faithfulness=faithful, baseline_kind=baseline, source=source),
        outputs=[status, gallery, readings, numbers, tiles_state, pick_a, pick_b, slider, card_state],
        show_progress_on=[status])
    button.click(run.fn, inputs_kwargs=run.inputs_kwargs, outputs=run.outputs, show_progress_on=run.show_progress_on,
                 api_name="explain")
    scroll_to_on_narrow(button.click, "explain-results")

    @user_errors
    def card(state, request: gr.Request):  # a named function: gradio passes the request to it
        page = request.headers.get("referer") or ""  # the page's own address, as the browser shows it
        return explanation_card(bank, card_files.temp_files, state, page)

    card_button.click(card, card_state, [card_files, card_png, card_note, card_url], api_name="card").then(
        lambda link: gr.update(visible=bool(link)), card_url, card_url, api_visibility="undocumented")  # no link: hidden
    for picker in (pick_a, pick_b):
        picker.input(compare_two, [tiles_state, pick_a, pick_b], slider, api_visibility="undocumented")
    image.upload(show_faces, [image, whole], status, api_visibility="undocumented").then(
        lambda: None, None, source, api_visibility="undocumented")  # an upload is not the dataset face any more
    # the Dataset tab opens a face here (its pixels, whole-image, face 0, its origin) and runs the explanation
    ctx.shared["explain_photo"] = SimpleNamespace(image=image, whole=whole, index=face_index, source=source,
                                                  models=models, run=run)
