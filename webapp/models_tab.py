"""Models tab: the cards of the loaded checkpoints, and what has no trained weights."""

from __future__ import annotations

import gradio as gr

from ferx.checkpoint import render_card
from ferx.data.datasets import get_dataset_info
from ferx.models import get_model_info
from webapp.errors import without_server_paths
from webapp.model_bank import ModelBank


def summary_table(bank: ModelBank) -> str:
    """One row per offered checkpoint: what it is, its input and size, and what ``ferx evaluate`` measured
    (accuracy and macro-F1 on each split its card records), before the cards' details."""
    rows = ["| checkpoint | what it is | input | parameters | measured by `ferx evaluate` |", "|---|---|---|---|---|"]
    for name, loaded in bank.models.items():
        card, spec = loaded.card, loaded.input_spec
        measured = "<br>".join(f"{get_dataset_info(m['dataset']).title} {m['split']}: accuracy **{m['accuracy']:.2%}**, "
                               f"macro-F1 {m['macro_f1']:.3f} ({m['n']:,} faces)" for m in card.get("metrics", []))
        rows.append(f"| `{name}` | {card.get('title', card['model'])} | {spec.size}×{spec.size} "
                    f"{'gray' if spec.channels == 1 else 'RGB'} | {card['parameters']:,} | {measured} |")
    return "\n".join(rows)


def models_markdown(bank: ModelBank) -> str:
    parts = ["Measured figures below come from `ferx evaluate` on the full split named; numbers a paper "
             "reports are quoted as the paper's."]
    if bank.models:
        parts.append(summary_table(bank))
    for name, loaded in bank.models.items():
        parts += [f"---\n### Checkpoint `{name}` — offered as a predictor", render_card(loaded.card).split("\n", 2)[2]]
    for arch in bank.untrained_architectures():
        parts += [f"---\n### `{arch}` — no trained weights: not offered as a predictor",
                  get_model_info(arch).description + ". Its architecture is implemented and tested; a trained "
                  "checkpoint will appear here once one has been trained and evaluated."]
    for name, why in bank.unusable.items():
        parts += [f"---\n### Checkpoint `{name}` — not offered", without_server_paths(why)]
    return "\n\n".join(parts)


def build_models_tab(ctx) -> None:
    gr.Markdown(models_markdown(ctx.bank))
