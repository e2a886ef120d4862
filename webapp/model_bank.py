"""The checkpoints the app can offer, loaded once at start-up.

Only checkpoints with measured metrics on their card are offered as predictors; registered
architectures without such a checkpoint are listed in the Models tab as "no trained weights".
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ferx.checkpoint import CheckpointError, LoadedModel, load_checkpoint, read_card
from ferx.device import resolve_device
from ferx.models import list_models

log = logging.getLogger(__name__)


@dataclass
class ModelBank:
    models: dict[str, LoadedModel] = field(default_factory=dict)  # checkpoint folder name -> model
    unusable: dict[str, str] = field(default_factory=dict)  # checkpoint folder name -> why
    _locks: dict[str, threading.Lock] = field(default_factory=dict)

    @classmethod
    def load(cls, checkpoints: Path, device: str = "auto") -> "ModelBank":
        bank, dev = cls(), resolve_device(device)
        if not Path(checkpoints).is_dir():  # a wrong path must not read as "no trained weights"
            raise FileNotFoundError(f"checkpoint folder {Path(checkpoints).resolve()} not found: pass --checkpoints "
                                    "DIR or set FERX_CHECKPOINTS")
        for card_path in sorted(Path(checkpoints).glob("*/card.json")):
            name = card_path.parent.name
            try:
                card = read_card(card_path.parent)
                if not card.get("metrics"):
                    bank.unusable[name] = "no measured metrics on its card (never evaluated), so not offered"
                    continue
                bank.models[name] = load_checkpoint(card_path.parent, dev)
            except CheckpointError as err:
                bank.unusable[name] = str(err)
                log.warning("checkpoint %s not offered: %s", name, err)
        return bank

    @contextmanager
    def using(self, name: str):
        """Exclusive use of one model. Explanations change a model in place while they run (memory
        format for fast inference, hooks, gradient flags), so two requests must not share a model
        at the same moment; different models still run in parallel."""
        lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            yield self.models[name]

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def untrained_architectures(self) -> list[str]:
        trained = {m.name for m in self.models.values()}
        return [a for a in list_models() if a not in trained]
