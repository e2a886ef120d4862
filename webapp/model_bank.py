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


class InteractiveFirst:
    """Exclusive use of each model, with interactive users first: a background user (one batch of a
    dataset analysis) starts only while no interactive request (a user waiting on /predict or
    /explain) holds or waits for *any* model, so batch work neither delays the request's model nor
    competes with it for the cores (measured in ``bench/load_check.py --during-analysis``)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._busy: set[str] = set()
        self._interactive = 0  # interactive requests holding or waiting for a model

    @contextmanager
    def hold(self, name: str, *, background: bool = False):
        with self._cond:
            if background:
                self._cond.wait_for(lambda: name not in self._busy and not self._interactive)
            else:
                self._interactive += 1
                try:
                    self._cond.wait_for(lambda: name not in self._busy)
                except BaseException:
                    self._interactive -= 1
                    raise
            self._busy.add(name)
        try:
            yield
        finally:
            with self._cond:
                self._busy.discard(name)
                self._interactive -= not background
                self._cond.notify_all()


@dataclass
class ModelBank:
    models: dict[str, LoadedModel] = field(default_factory=dict)  # checkpoint folder name -> model
    unusable: dict[str, str] = field(default_factory=dict)  # checkpoint folder name -> why
    _gate: InteractiveFirst = field(default_factory=InteractiveFirst)

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
    def using(self, name: str, *, background: bool = False):
        """Exclusive use of one model. Explanations change a model in place while they run (memory
        format for fast inference, hooks, gradient flags), so two requests must not share a model
        at the same moment; different models still run in parallel. ``background`` users (a dataset
        analysis, batch by batch) wait while any interactive request holds or waits for a model."""
        with self._gate.hold(name, background=background):
            yield self.models[name]

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def untrained_architectures(self) -> list[str]:
        trained = {m.name for m in self.models.values()}
        return [a for a in list_models() if a not in trained]
