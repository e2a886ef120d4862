"""The checkpoints the app can offer, loaded once at start-up.

Only checkpoints with measured metrics on their card are offered as predictors; registered
architectures without such a checkpoint are listed in the Models tab as "no trained weights".

``ferx app`` checks the cards and weight files before it serves, and builds the models once the
server answers (:meth:`ModelBank.build`): building the four shipped models took 2.2 s of the 8 s to
the first page on 2 CPU cores at load 3, most of it importing timm for Conv-cut (timm imports
``torch._dynamo``). A request that comes earlier waits for the build (``bench/bench_startup.py``
times the first page and a first prediction made at once).
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ferx.checkpoint import CheckpointError, LoadedModel, load_checkpoint, read_card
from ferx.device import resolve_device
from ferx.models import list_models
from ferx.paths import checkpoint_folders

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
    _built: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def load(cls, checkpoints: Path, device: str = "auto", *, defer: bool = False) -> "ModelBank":
        """The offered checkpoints, their models built; ``defer=True`` checks their cards and files only, and
        :meth:`using` then waits until :meth:`build` has built them (the caller must call it)."""
        bank, dev = cls(), resolve_device(device)
        if not Path(checkpoints).is_dir():  # a wrong path must not read as "no trained weights"
            raise FileNotFoundError(f"checkpoint folder {Path(checkpoints).resolve()} not found: pass --checkpoints "
                                    "DIR or set FERX_CHECKPOINTS")
        for folder in checkpoint_folders(checkpoints):
            name = folder.name
            try:
                card = read_card(folder)
                if not card.get("metrics"):
                    bank.unusable[name] = "no measured metrics on its card (never evaluated), so not offered"
                    continue
                bank.models[name] = load_checkpoint(folder, dev, defer=defer)
            except CheckpointError as err:
                bank.unusable[name] = str(err)
                log.warning("checkpoint %s not offered: %s", name, err)
        if not defer:
            bank._built.set()
        return bank

    def build(self) -> None:
        """Build the models :meth:`load` deferred and the twins one face goes through, on OpenCV's DNN engine
        (:func:`ferx.memory_format.prepare_fast_forward`: 0.13-0.20 s a small model after 0.6 s to import onnx for
        torch's exporter; every later face then takes half the time or less: LANMSFF 5.8 vs 10.1 ms), then import what a first prediction would (pytorch-grad-cam, scipy.stats,
        scikit-image's transforms: 1.4 s at load 3); requests wait until it is done. Call it on the main
        thread: with the models built on another thread, every later /predict took 2.2-2.9 s instead of 0.5 s
        (2 CPU cores at load 3; torch's OpenMP threads)."""
        import torch

        from ferx.memory_format import prepare_fast_forward

        start = time.perf_counter()
        try:
            for name, loaded in self.models.items():
                try:
                    spec, model = loaded.input_spec, loaded.model
                except CheckpointError as err:  # each use of it raises this again, as a user error
                    log.warning("checkpoint %s: %s", name, err)
                    continue
                try:  # only a speed-up: a model it fails on still serves, through its eager path
                    device = next(model.parameters()).device
                    prepare_fast_forward(model, torch.zeros(1, spec.channels, spec.size, spec.size, device=device))
                except Exception:  # noqa: BLE001
                    log.warning("checkpoint %s: no fast one-face twin made at start", name, exc_info=True)
            import scipy.stats  # noqa: F401  (the agreement of maps: each prediction with two maps)
            from skimage.transform import SimilarityTransform  # noqa: F401  (facial regions: each prediction)

            from ferx.explain._libraries import grad_cam

            grad_cam()  # each prediction draws a Grad-CAM
        finally:
            self._built.set()
        log.info("models built and the explanation libraries imported in %.1f s", time.perf_counter() - start)

    @contextmanager
    def using(self, name: str, *, background: bool = False):
        """Exclusive use of one model. Explanations change a model in place while they run (memory
        format for fast inference, hooks, gradient flags), so two requests must not share a model
        at the same moment; different models still run in parallel. ``background`` users (a dataset
        analysis, batch by batch) wait while any interactive request holds or waits for a model."""
        self._built.wait()
        with self._gate.hold(name, background=background):
            yield self.models[name]

    @contextmanager
    def own_copy(self, name: str):
        """A copy of one model for a long request alone (an Explain of slow methods, a sanity check), which may change
        it as it likes: the shared model is held only to copy it (Conv-cut's 106 MB: tens of ms), so other users'
        requests do not wait for the whole request. Holding it throughout, a Compare waited 117 s for an Explain of
        Conv-cut with Score-CAM, occlusion and faithfulness (1.6 s alone), and 17.3 s for a sanity check."""
        import torch

        from ferx.memory_format import share_twins

        with self.using(name) as loaded, torch.inference_mode(False):
            model = copy.deepcopy(loaded.model)
        share_twins(loaded.model, model)  # one twin for all its copies: not traced again for every request
        yield LoadedModel(model, loaded.name, loaded.labels, loaded.input_spec, loaded.card, loaded.path)

    def batch_hold(self, loaded):
        """A dataset-wide job's hold on one of the bank's models (the core's ``hold(loaded)`` callbacks):
        :meth:`using` in the background, for one batch at a time."""
        name = next(n for n, m in self.models.items() if m is loaded)
        return self.using(name, background=True)

    @property
    def names(self) -> list[str]:
        return list(self.models)

    def untrained_architectures(self) -> list[str]:
        trained = {m.name for m in self.models.values()}
        return [a for a in list_models() if a not in trained]
