"""``ferx app``: the Gradio Blocks app, composed from the ferx core."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import gradio as gr
from PIL import Image

from ferx.data.datasets import load_fer2013
from ferx.data.packed import pack_split
from webapp.compare_tab import build_compare_tab
from webapp.config import AppConfig
from webapp.dataset_tab import build_dataset_tab
from webapp.explain_tab import build_explain_tab
from webapp.model_bank import ModelBank
from webapp.models_tab import build_models_tab

log = logging.getLogger(__name__)

INTRO = ("# ferx — facial-expression recognition, explained\n"
         "Compare models on a photo, see what each one looked at, and analyse whole datasets. "
         "Uploaded images are processed in memory; the server's copies are deleted within two minutes.")
EXAMPLE_SAMPLES = (0, 7, 19, 42)  # fixed FER-2013 PrivateTest faces


def example_photos(data_root: Path) -> list[str]:
    """A few FER-2013 test faces as example inputs, written to a temp folder (pixels never enter the repo)."""
    try:
        packed = pack_split(load_fer2013(data_root, "test"), progress=False)
    except (ValueError, OSError):
        return []
    folder = Path(tempfile.mkdtemp(prefix="ferx-examples-"))
    paths = []
    for i in EXAMPLE_SAMPLES:
        path = folder / f"fer2013_test_{i}_{packed.classes[packed.targets[i]]}.png"
        Image.fromarray(packed.images[i]).resize((192, 192), Image.Resampling.BICUBIC).save(path)
        paths.append(str(path))
    return paths


def build_app(cfg: AppConfig, bank: ModelBank | None = None) -> gr.Blocks:
    bank = bank or ModelBank.load(cfg.checkpoints, cfg.device)
    if not bank.models:
        log.warning("no trained checkpoints found in %s: Compare, Explain and Dataset have no models", cfg.checkpoints)
    # uploads and generated images live in gradio's cache: delete them within 2 minutes
    with gr.Blocks(title="ferx", delete_cache=(60, 60)) as app:
        gr.Markdown(INTRO)
        with gr.Tabs() as tabs:
            with gr.Tab("Compare", id="compare"):
                build_compare_tab(bank, example_photos(cfg.data_root))
            with gr.Tab("Explain", id="explain"):
                explain_image, explain_whole = build_explain_tab(bank)
            with gr.Tab("Dataset", id="dataset"):
                build_dataset_tab(bank, cfg, explain_image, explain_whole, tabs)
            with gr.Tab("Models", id="models"):
                build_models_tab(bank)
    app.queue(default_concurrency_limit=cfg.concurrency, max_size=64)
    return app


def launch_options(cfg: AppConfig) -> dict:
    # show_error: a gr.Error's message (what went wrong with the user's input) reaches API clients too
    return dict(server_name=cfg.host, server_port=cfg.port, max_file_size=f"{cfg.max_upload_mb}mb", show_error=True)


def launch(cfg: AppConfig) -> None:
    build_app(cfg).launch(**launch_options(cfg))
