"""Stability tab: does each model keep its label when the camera changes a little?

The core is :func:`ferx.explain.stability.stability_probe` (the variants are declared there, once);
this tab shows the variants as thumbnails and one compact table of every model's answers.
"""

from __future__ import annotations

import functools

import gradio as gr
import pandas as pd

from ferx.explain.stability import VARIANTS, stability_probe
from webapp.app_context import AppContext
from webapp.errors import user_errors
from webapp.tables import result_table
from webapp.explaining import chosen_face, photo_inputs

INTRO = ("### Stability probe: the same face, as a camera might take it again\n"
         f"The face is changed the way a second shot would change it ({', '.join(v.name for v in VARIANTS)}); "
         "every model scores all the versions at once. The table shows, per model, the share of versions that keep "
         "the original top-1 label and, per version, the label and its probability; *map ρ* is the Spearman "
         "correlation of the version's Grad-CAM with the original's at the same pixels (tilts and shifts undone).")


@user_errors
def run_stability(bank, path, whole_image, index, chosen):
    if not chosen:
        raise gr.Error("Choose at least one model.")
    face = chosen_face(path, whole_image, index, to="probe it")
    columns, summary = {}, []
    probe = None
    for name in chosen:
        with bank.using(name) as loaded:
            probe = stability_probe(loaded.model, loaded.input_spec, loaded.classes, face.crop, name=name)
        label = probe.classes[probe.label]
        summary.append(f"- **{name}**: *{label}* {probe.frame.attrs['original_prob']:.0%} on the original; keeps it "
                       f"in **{probe.kept_share:.0%}** of the versions; mean map ρ {probe.mean_map_spearman:.2f}")
        columns[name] = [f"{'✓' if r.keeps_label else '✗'} {r.top1} {r.prob_of_label:.2f} · ρ {r.map_spearman:.2f}"
                         for r in probe.frame.itertuples()]
    table = pd.DataFrame({"version": [v.name for v in VARIANTS], **columns})
    thumbnails = [(img, name) for name, img in probe.thumbnails.items()]
    return "\n".join(summary), table, [(face.crop, "original")] + thumbnails


def build_stability_tab(ctx: AppContext) -> None:
    bank = ctx.bank
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=2):
            photo, whole, face_index = photo_inputs("Photo", "stability-photo", 300)
            models = gr.CheckboxGroup(bank.names, value=bank.names, label="Models")
            button = gr.Button("Probe stability", variant="primary")
        with gr.Column(scale=3):
            summary = gr.Markdown(elem_id="stability-summary")
            table = result_table("Per version and model: ✓ keeps the original label (✗: the new top-1), the original "
                                 "label's probability · map ρ", "Probe stability: one row per version of the photo",
                                 wrap=True)
    gallery = gr.Gallery(label="The versions each model scored", columns=len(VARIANTS) + 1, height=220,
                         object_fit="contain")
    button.click(functools.partial(run_stability, bank), [photo, whole, face_index, models],
                 [summary, table, gallery], api_name="stability")
