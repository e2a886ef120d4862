"""What every tab builder is given: the models, the configuration, the tab strip, and the
components earlier tabs offer to later ones (the Dataset tab opens faces in the Explain tab's
photo input)."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr

from webapp.config import AppConfig
from webapp.model_bank import ModelBank


@dataclass
class AppContext:
    bank: ModelBank
    cfg: AppConfig
    tabs: gr.Tabs
    shared: dict[str, object] = field(default_factory=dict)  # name -> component(s) a tab offers to later tabs
    photo_states: list[gr.State] = field(default_factory=list)  # states holding a face's pixels (webapp.uploads)
