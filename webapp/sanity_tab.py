"""Sanity check tab: does a map depend on the model at all? (Adebayo et al., 2018)

The core is :func:`ferx.explain.sanity.cascading_randomization`; this tab takes a photo, one model
and some methods, and shows the grid of maps as the layers are randomised, the similarity table and
which methods are flagged.
"""

from __future__ import annotations

import re

import gradio as gr

from ferx.explain.methods import get_method, list_methods, map_title
from ferx.explain.sanity import (DEFAULT_METHODS, DEFAULT_STEPS, INDEPENDENT_SPEARMAN, applicable_methods,
                                 cascading_randomization)
from webapp.app_context import AppContext
from webapp.errors import at_least_one, given, user_errors
from webapp.tables import result_table
from webapp.explaining import face_and_note, offer_examples, photo_inputs
from webapp.stops import stoppable

INTRO = ("### Sanity check: does each map depend on the model?\n"
         "Some saliency maps look the same whatever the network learned (Adebayo et al., *Sanity checks for "
         "saliency maps*, 2018). This check keeps the photo and the class fixed, replaces the model's learned "
         "weights by random ones from the head down, one group of layers more at each step, and redraws every map. "
         "A map that depends on the model changes; one whose mean rank correlation (Spearman ρ) with the trained "
         f"map stays at or above {INDEPENDENT_SPEARMAN} is flagged (the mean over the steps from the first that "
         "changes it: an early block's own attention stays the same until the randomisation reaches its block). "
         "The trained model itself is never changed "
         "(the check works on a copy) and the randomisation is seeded, so the same settings give the same result.")


@user_errors
def run_sanity(bank, path, whole_image, index, model_name, methods, n_steps, request: gr.Request = None,
               progress=gr.Progress()):
    """Closing the page stops the check between its steps (:mod:`webapp.stops`)."""
    if not model_name:
        raise gr.Error("Choose a model.")
    at_least_one(methods, "method")
    face, note = face_and_note(path, whole_image, index, to="check it")
    progress(0, desc=f"{model_name}: {len(methods)} method(s) × {int(n_steps) + 1} versions of the model")
    def step(fraction, what):
        stopped()  # the page was closed: no one waits for the rest
        progress(fraction, desc=f"{model_name}: {what}")  # the bar moves with each step (it sat at 0)

    # randomised in place: the shared model is free during the check
    with stoppable(request, "sanity check") as stopped, bank.own_copy(model_name) as loaded:
        chosen = applicable_methods(loaded.model, methods, model_name)
        x = face.model_input(loaded.input_spec).to(loaded.device)
        check = cascading_randomization(loaded.model, x, chosen, n_steps=int(n_steps), name=loaded.display,
                                        classes=loaded.classes, progress=step, copy_model=False)
    figure = check.figure(face=face.crop)
    # one row per step (how far down it randomised), one column per map: a few narrow columns, however
    # long the layer names, instead of a table wider than the panel
    table = check.spearman_table().T
    table.columns = [map_title(name) for name in table.columns]
    table.insert(0, "randomised from the head down to", [f"{s.index}: {s.label}" for s in check.steps])
    mean = check.mean_similarity()
    lines = [f"**{loaded.display}**, class *{check.target_label}* (fixed at every step):"]
    for name, flag in check.independent().items():
        lines.append(f"- **{map_title(name)}**: mean ρ {mean[name]:.2f} — "
                     + ("**does not depend on the model** (flagged)" if flag else "changes with the model (passes)"))
    # two decimals, as the figure and the verdicts give ρ (the numbers stay numbers: "1", "0", "-0.2" otherwise)
    return "\n".join(lines) + (f"\n\n_{note}_" if note else ""), figure, table.style.format(precision=2)


@user_errors
def fit_columns(table):
    """The widths of a new result's columns (:func:`column_widths`), set in the browser once it arrives: the
    ``/sanity`` API answers with the table itself, as before."""
    return gr.skip() if table is None or table.empty or len(table.columns) < 2 else \
        gr.Dataframe(column_widths=column_widths(table))


def column_widths(table) -> list[str]:
    """Each column's share of the table's width, after the longest run of its text that cannot wrap (a layer's
    name; a word of a header, which breaks after a hyphen), so that the table fits its panel: gradio's own widths
    gave the layers' column 271 px of the panel's 566 at 1,024 px, and the maps' names broke inside words
    ("Salienc-y")."""
    def longest(texts) -> int:
        return max(len(run) for text in texts for run in re.split(r"\s+|(?<=-)", str(text)))

    # ρ as shown (two decimals); two characters more a column for its padding
    runs = [longest([name] + [v if isinstance(v, str) else f"{v:.2f}" for v in table[name]]) + 2 for name in table]
    return [f"{100 * r / sum(runs):.2f}%" for r in runs]


def build_sanity_tab(ctx: AppContext) -> None:
    bank = ctx.bank
    gr.Markdown(INTRO)
    offered = list_methods(offered=True, cost="light")
    defaults = [m for m in DEFAULT_METHODS if m in offered]
    with gr.Row():
        with gr.Column(scale=2):
            photo, whole, face_index = photo_inputs("Photo", "sanity-photo", 300)
            offer_examples(ctx, photo)
            model = gr.Dropdown(bank.names, value=bank.names[0] if bank.names else None, label="Model")
            methods = gr.CheckboxGroup([(get_method(m).title, m) for m in offered], value=defaults,
                                       label="Methods (native: the model's own attention, where it has one)")
            steps = gr.Slider(2, 8, value=DEFAULT_STEPS, step=1, label="Randomisation steps (groups of layers, head first)")
            button = gr.Button("Run the sanity check", variant="primary")
        with gr.Column(scale=3):
            verdicts = gr.Markdown(elem_id="sanity-verdicts")
            # each cell wraps in its column: at 1,024 px the table (662 px) hid its last maps' columns (Grad-CAM,
            # Saliency) behind a sideways scroll in its 566-px panel
            table = result_table("Spearman ρ with the trained map, per step (rows: what was randomised)",
                                 "Run the sanity check: one row per step, one column per map", wrap=True,
                                 elem_id="sanity-table")
    plot = gr.Plot(show_label=False, elem_id="sanity-figure")  # the figure's own title says what it shows
    button.click(given(run_sanity, bank), [photo, whole, face_index, model, methods, steps],
                 [verdicts, plot, table], api_name="sanity")
    table.change(fit_columns, table, table, api_visibility="undocumented")
