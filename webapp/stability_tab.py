"""Stability tab: does each model keep its label when the camera changes a little?

The core is :func:`ferx.explain.stability.stability_probe` (the variants are declared there, once);
this tab shows the variants as thumbnails and one compact table of every model's answers.
"""

from __future__ import annotations

import functools

import gradio as gr
import pandas as pd

from ferx.explain.stability import VARIANTS, stability_probe
from ferx.text import unbroken
from webapp.app_context import AppContext
from webapp.errors import at_least_one, user_errors
from webapp.tables import result_table
from webapp.explaining import face_and_note, offer_examples, photo_inputs

INTRO = ("### Stability probe: the same face, as a camera might take it again\n"
         f"The face is changed the way a second shot would change it ({', '.join(v.name for v in VARIANTS)}); "
         "every model scores all the versions at once. The summary gives, per model, the share of versions that keep "
         "the original top-1 label. The table gives, per version and model, ✓ and the label kept with its "
         "probability, or ✗, the version's new top-1 with its probability and then the original label's; *ρ* is "
         "the Spearman correlation of the version's Grad-CAM with the original's at the same pixels (tilts and "
         "shifts undone).")


def version_cell(row, label: str) -> str:
    """One version as one model scored it, each probability beside the label it is of: ``✓ happy 0.93 · ρ 0.91``
    (the label kept), ``✗ now angry 0.41 · neutral 0.12 · ρ 0.00`` (the new top-1, then the original ``label``'s)."""
    top = unbroken(row.top1, f"{row.top1_prob:.2f}")  # a narrow cell wraps between its parts
    said = f"✓ {top}" if row.keeps_label else f"✗ now {top} · {unbroken(label, f'{row.prob_of_label:.2f}')}"
    return f"{said} · {unbroken('ρ', f'{row.map_spearman:.2f}')}"


@user_errors
def run_stability(bank, path, whole_image, index, chosen):
    at_least_one(chosen, "model")
    face, note = face_and_note(path, whole_image, index, to="probe it")
    columns, summary = {}, []
    probe = None
    for name in chosen:
        with bank.using(name) as loaded:
            probe = stability_probe(loaded.model, loaded.input_spec, loaded.classes, face.crop, name=name)
        label = probe.classes[probe.label]
        summary.append(f"- **{name}**: *{label}* {probe.frame.attrs['original_prob']:.0%} on the original; keeps it "
                       f"in **{probe.kept_share:.0%}** of the versions; mean map ρ {probe.mean_map_spearman:.2f}")
        columns[name] = [version_cell(r, label) for r in probe.frame.itertuples()]
    # a narrow first column wraps between words, not between a number and its unit ("crop shifted 6" / "%")
    table = pd.DataFrame({"version": [v.name.replace(" %", "\u00a0%") for v in VARIANTS], **columns})
    thumbnails = [(img, name) for name, img in probe.thumbnails.items()]
    return "\n".join(summary) + (f"\n\n_{note}_" if note else ""), table, [(face.crop, "original")] + thumbnails


def build_stability_tab(ctx: AppContext) -> None:
    bank = ctx.bank
    gr.Markdown(INTRO)
    with gr.Row():
        with gr.Column(scale=2):
            photo, whole, face_index = photo_inputs("Photo", "stability-photo", 300)
            offer_examples(ctx, photo)
            models = gr.CheckboxGroup(bank.names, value=bank.names, label="Models")
            button = gr.Button("Probe stability", variant="primary")
        with gr.Column(scale=3):
            summary = gr.Markdown(elem_id="stability-summary")
            gallery = gr.Gallery(label="The versions each model scored", columns=5, height=300, object_fit="contain",
                                 elem_id="stability-gallery")  # captions under the faces, whole (webapp/app.py CSS)
    # the page's full width, shared by the models, each cell wrapping in its column (beside the photo, columns as
    # wide as their text, the third and fourth models' were cut off)
    widths = ["14%"] + [f"{86 / max(1, len(bank.names)):.2f}%"] * len(bank.names)
    table = result_table("Per version and model: ✓ the label kept and its probability, or ✗ now the new top-1 and "
                         "its probability · the original label's · map ρ",
                         "Probe stability: one row per version of the photo", wrap=True, column_widths=widths,
                         elem_id="stability-table")
    button.click(functools.partial(run_stability, bank), [photo, whole, face_index, models],
                 [summary, table, gallery], api_name="stability")
