"""``ferx app``: the Gradio Blocks app, composed from the ferx core."""

from __future__ import annotations

import logging

import gradio as gr

from webapp.config import AppConfig
from webapp.dataset_tab import build_dataset_tab
from webapp.model_bank import ModelBank
from webapp.models_tab import build_models_tab

log = logging.getLogger(__name__)

INTRO = ("# ferx — facial-expression recognition, explained\n"
         "Compare models on a photo, see what each one looked at, and analyse whole datasets. "
         "Uploaded images are processed in memory and not kept after the request.")


def build_app(cfg: AppConfig, bank: ModelBank | None = None) -> gr.Blocks:
    bank = bank or ModelBank.load(cfg.checkpoints, cfg.device)
    if not bank.models:
        log.warning("no trained checkpoints found in %s: Compare, Explain and Dataset have no models", cfg.checkpoints)
    with gr.Blocks(title="ferx") as app:
        gr.Markdown(INTRO)
        with gr.Tabs() as tabs:
            with gr.Tab("Explain", id="explain"):
                open_face = gr.Image(label="Face", type="numpy")
            with gr.Tab("Dataset", id="dataset"):
                build_dataset_tab(bank, cfg, open_face, tabs)
            with gr.Tab("Models", id="models"):
                build_models_tab(bank)
    app.queue(default_concurrency_limit=cfg.concurrency)
    return app


def launch(cfg: AppConfig) -> None:
    app = build_app(cfg)
    app.launch(server_name=cfg.host, server_port=cfg.port, max_file_size=f"{cfg.max_upload_mb}mb", show_error=True)
