"""Models tab: the cards of the loaded checkpoints, and what has no trained weights."""

from __future__ import annotations

import gradio as gr

from ferx.checkpoint import render_card
from ferx.data.datasets import get_dataset_info
from ferx.models import get_model_info
from ferx.text import short_count
from webapp.errors import without_server_paths
from webapp.model_bank import ModelBank


NB_HYPHEN = "\u2011"  # "macro-F1" stays on one line in a narrow cell


def summary_table(bank: ModelBank) -> str:
    """One row per offered checkpoint: what it is (its input and size on a second line) and what ``ferx evaluate``
    measured (accuracy and macro-F1 on each split its card records), before the cards' details. Three columns: with
    five, a 1,024-px window broke words and numbers mid-way ("inpu/t", "112×1/12", "52,906,9/84")."""
    rows = ["| checkpoint | what it is | measured by `ferx evaluate` |", "|---|---|---|"]
    for name, loaded in bank.models.items():
        card, spec = loaded.card, loaded.input_spec
        measured = "<br>".join(f"{get_dataset_info(m['dataset']).title} {m['split']}: accuracy **{m['accuracy']:.2%}**, "
                               f"macro{NB_HYPHEN}F1 {m['macro_f1']:.3f} ({m['n']:,} faces)"
                               for m in card.get("metrics", []))
        rows.append(f"| `{name}` | {card.get('title', card['model'])}<br>{spec.size}×{spec.size} "
                    f"{'gray' if spec.channels == 1 else 'RGB'} · {short_count(card['parameters'])} parameters | "
                    f"{measured} |")
    return "\n".join(rows)


def card_sections(bank: ModelBank) -> tuple[str, list[tuple[str, str, str]]]:
    """The tab's page: its head (the summary table), then per checkpoint or architecture a heading, what it
    is in plain words (the card's summary, or why it is not offered) and the full card, for whoever wants the
    data, recipe and training log (shown folded)."""
    head = ["Measured figures below come from `ferx evaluate` on the full split named; numbers a paper "
            "reports are quoted as the paper's."]
    if bank.models:
        head.append(summary_table(bank))
    sections = []
    for name, loaded in bank.models.items():
        # the card less its title (the heading says it) and its summary (shown unfolded, above it)
        body = render_card(loaded.card, summary=False).split("\n", 2)[2]
        summary = loaded.card.get("summary", "")
        sections.append((f"### Checkpoint `{name}` — offered as a predictor", summary, body))
    for arch in bank.untrained_architectures():
        sections.append((f"### `{arch}` — no trained weights: not offered as a predictor",
                         get_model_info(arch).description + ". Its architecture is implemented and tested; a trained "
                         "checkpoint will appear here once one has been trained and evaluated.", ""))
    for name, why in bank.unusable.items():
        sections.append((f"### Checkpoint `{name}` — not offered", without_server_paths(why), ""))
    return "\n\n".join(head), sections


def build_models_tab(ctx) -> None:
    head, sections = card_sections(ctx.bank)
    gr.Markdown(head)
    for heading, summary, body in sections:
        gr.Markdown(heading + ("\n\n" + summary if summary else ""))
        if body:
            with gr.Accordion("Full card: data, recipe, training log, per-class figures", open=False):
                gr.Markdown(body)
