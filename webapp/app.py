"""``ferx app``: the Gradio Blocks app, composed from the ferx core.

The tabs are listed once, in :data:`TABS`; each builder takes an :class:`AppContext`. A new tab
is a module with a ``build_*_tab(ctx)`` function, its import here and one line in :data:`TABS`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

import gradio as gr

from webapp.app_context import AppContext
from webapp.compare_tab import build_compare_tab
from webapp.config import AppConfig
from webapp.dataset_tab import build_dataset_tab
from webapp.errors import SERVER_FOLDERS
from webapp.explain_tab import build_explain_tab
from webapp.links import wire_restore
from webapp.live_tab import build_live_tab
from webapp.model_bank import ModelBank
from webapp.models_tab import build_models_tab
from webapp.occlusion_tab import build_occlusion_tab
from webapp.sanity_tab import build_sanity_tab
from webapp.stability_tab import build_stability_tab
from webapp.stops import stop_when_closed
from webapp.uploads import KEPT_AT_MOST, forget_photos_on_close, sweeping

log = logging.getLogger(__name__)

def intro(cfg: AppConfig) -> str:
    return ("# ferx — facial-expression recognition, explained\n"
            "Compare models on a photo, see what each one looked at, and analyse whole datasets. "
            "Uploaded images are processed in memory: the server's copies of a photo (its files, and what a tab "
            f"keeps for your next click) are deleted within {KEPT_AT_MOST}; an uploaded "
            f"zip's analysis is kept while you explore it, {cfg.state_ttl_s / 60:g} minutes from when it was run.")


@dataclass(frozen=True)
class Tab:
    label: str
    id: str  # gr.Tabs(selected=id) switches to it
    build: Callable[[AppContext], None]


TABS = (
    Tab("Compare", "compare", build_compare_tab),
    Tab("Explain", "explain", build_explain_tab),
    Tab("Dataset", "dataset", build_dataset_tab),  # after Explain: it opens faces there
    Tab("Sanity check", "sanity", build_sanity_tab),
    Tab("Stability", "stability", build_stability_tab),
    Tab("Occlusion brush", "occlusion", build_occlusion_tab),
    Tab("Live", "live", build_live_tab),
    Tab("Models", "models", build_models_tab),
)


def build_app(cfg: AppConfig, bank: ModelBank | None = None) -> gr.Blocks:
    SERVER_FOLDERS.update({cfg.data_root, cfg.checkpoints})  # messages name what is in them by its own name
    bank = bank or ModelBank.load(cfg.checkpoints, cfg.device)
    if not bank.models:
        log.warning("no trained checkpoints found in %s: Compare, Explain and Dataset have no models", cfg.checkpoints)
    # uploads and generated images live in gradio's cache: webapp.uploads deletes them (not delete_cache)
    with gr.Blocks(title="ferx") as app:
        gr.Markdown(intro(cfg))
        with gr.Tabs() as tabs:
            ctx = AppContext(bank, cfg, tabs)
            for tab in TABS:
                with gr.Tab(tab.label, id=tab.id):
                    tab.build(ctx)
        wire_restore(app, ctx)  # a link (?view=explain&...) reopens an Explain view
        forget_photos_on_close(app, ctx.photo_states)
        stop_when_closed(app)  # the analysis, Explain or sanity check of a closed page
    clicks_are_not_endpoints(app)
    app.queue(default_concurrency_limit=cfg.concurrency, max_size=64)
    return app


def clicks_are_not_endpoints(app: gr.Blocks) -> None:
    """A handler of a click on the page (its gr.SelectData parameter: a matrix cell, a gallery face, a box) is no
    API endpoint: called through the API, without a click, it failed inside gradio ("'NoneType' object is not
    subscriptable", logged with a traceback). They are private: the page calls them, the API lists none."""
    from gradio.utils import get_type_hints

    for fn in app.fns.values():
        if fn.fn is not None and gr.SelectData in get_type_hints(fn.fn).values():
            fn.api_visibility = "private"


# A clicked cell of a read-only table keeps its number legible: gradio paints the selected cell's text on
# white, and the matrices' darkest cells have near-white numbers (the 781 of a confusion diagonal vanished).
# A photo input fills its box, small photos too: gradio draws an image no larger than its own pixels, and a
# 48-px face (the examples, a FER-2013 face) was a speck in a 300-px box.
# A face's caption in the Dataset gallery wraps rather than being cut: two models' labels ("#3367 surprise ·
# A surprise 0.85 · B neutral 0.85") lost B's to an ellipsis; so does a map's in Explain (its faithfulness). Both
# sit under their image, not over it (gradio's overlay hid a map's mouth and its colour bar's lowest number). So does
# a version's in Stability ("crop shifte…" at 1,024 px). A map's tile in Explain grows with its caption (two or three
# lines at 1,024 px: a square tile clipped the last line of every caption by 5 px, and "no better" of one).
CAPTIONED = ("#dataset-gallery", "#explain-gallery", "#live-maps", "#stability-gallery")
GROWING = ("#explain-gallery",)
CSS = (".body-cell.cell-selected span.text { background: transparent !important; }\n"
       ".ferx-photo .image-frame img { object-fit: contain; }\n"
       + "".join(f"{g} .thumbnail-item {{ display: flex; flex-direction: column; }}\n"
                 f"{g} .thumbnail-item img {{ min-height: 0; flex: 1 1 auto; }}\n"
                 f"{g} .caption-label {{ white-space: normal; position: static; max-width: 100%; }}\n"
                 for g in CAPTIONED)
       + "".join(f"{g} .thumbnail-item {{ aspect-ratio: auto; }}\n{g} .caption-label {{ overflow: visible; }}\n"
                 for g in GROWING))


# Gradio's orange primary buttons drew white text on orange-500 (2.8:1) or, in dark mode, orange-600 (3.6:1), below
# the 4.5:1 WCAG AA asks of text; orange-700 gives 5.2:1 and orange-800 (on hover) 7.3:1, in both modes
THEME = gr.themes.Default().set(
    **{f"button_primary_{part}{mode}": shade for mode in ("", "_dark")
       for part, shade in (("background_fill", "*primary_700"), ("background_fill_hover", "*primary_800"),
                           ("border_color", "*primary_700"), ("border_color_hover", "*primary_800"))})


def launch_options(cfg: AppConfig) -> dict:
    # show_error: a gr.Error's message (what went wrong with the user's input) reaches API clients too
    # lifespan: uploads and generated images are deleted within two minutes (webapp/uploads.py)
    return dict(server_name=cfg.host, server_port=cfg.port, max_file_size=f"{cfg.max_upload_mb}mb", show_error=True,
                app_kwargs={"lifespan": sweeping}, state_session_capacity=cfg.max_sessions, css=CSS, theme=THEME)


def first_run_data(cfg: AppConfig) -> None:
    """A fresh checkout has no unpacked data: unpack what ../shared/datasets holds, so the quick start
    opens with examples and datasets (once; later starts find the folders)."""
    from ferx.data.datasets import available_datasets
    from ferx.data.prepare import DEFAULT_SOURCE, prepare_available

    if not available_datasets(cfg.data_root) and DEFAULT_SOURCE.is_dir():
        log.warning("no datasets under %s yet: unpacking the archives of %s (once)", cfg.data_root, DEFAULT_SOURCE)
        prepare_available(cfg.data_root)


def launch(cfg: AppConfig) -> None:
    first_run_data(cfg)
    bank = ModelBank.load(cfg.checkpoints, cfg.device, defer=True)
    app = build_app(cfg, bank)
    app.launch(**launch_options(cfg), prevent_thread_lock=True)
    bank.build()  # once the page answers; on this (the main) thread, see ModelBank.build
    app.block_thread()
