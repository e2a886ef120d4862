"""``ferx analyze``: run checkpoints over a dataset split and gather everything the views need."""

from __future__ import annotations

import functools
from contextlib import nullcontext
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np

from ferx.analysis.metrics import fit_temperature
from ferx.analysis.runs import ModelRun, run_model
from ferx.checkpoint import LoadedModel, load_checkpoint
from ferx.data.datasets import load_split, split_title
from ferx.data.packed import PackedSplit, pack_options, pack_split
from ferx.device import resolve_device
from ferx.inference import BATCH_SIZE


def analyze_packed(models: list[LoadedModel], packed: PackedSplit, val: PackedSplit | None = None, *,
                   batch_size: int = BATCH_SIZE, progress: bool = True, cache_dir: str | Path | None = None,
                   hold: Callable[[LoadedModel], ContextManager] | None = None,
                   precision: str = "auto", calibration: str = "temperature scaling") -> list[ModelRun]:
    """One :class:`ModelRun` per loaded model on ``packed`` (cached). With ``val``, a temperature
    fitted there (never on the split being analysed: :func:`refuse_calibrating_on_itself`) is applied;
    ``run.with_temperature(1)`` gives the uncalibrated view back. ``hold(model)`` is entered around each
    batch of that model (the app's model lock, taken batch by batch so interactive requests are served in
    between). ``precision``: :func:`ferx.device.autocast_bf16`, recorded on each run (``compute_dtype``)
    and in its cache key. ``calibration``: what the user asked for temperature scaling with, in a refusal."""
    if val is not None:
        refuse_calibrating_on_itself(packed, val, calibration)
    runs = []
    for loaded in models:
        options = dict(batch_size=batch_size, progress=progress, cache_dir=cache_dir,
                       hold=functools.partial(hold, loaded) if hold else nullcontext, precision=precision)
        run = run_model(loaded, packed, **options)
        if val is not None:
            val_run = run_model(loaded, val, **options)
            keep = val_run.scored
            run = run.with_temperature(fit_temperature(val_run.logits[keep], val_run.model_targets[keep]))
        runs.append(run)
    return runs


def refuse_calibrating_on_itself(packed: PackedSplit, val: PackedSplit, calibration: str) -> None:
    """Refuse, before any model runs, a temperature fitted on faces of the split analysed (its val split,
    or "all", which holds it): the calibration would be judged on the faces it was fitted on."""
    shared = np.isin(packed.paths, val.paths).sum() if packed.dataset == val.dataset else 0
    if shared:
        raise ValueError(f"{calibration[:1].upper()}{calibration[1:]} fits its temperature on "
                         f"{split_title(val.dataset, val.split)}, and the split analysed "
                         f"({split_title(packed.dataset, packed.split)}) holds {shared:,} of its faces: the calibration "
                         f"would be judged on the faces it was fitted on. Analyse a split without them (test), or this "
                         f"one without {calibration}.")


def analyze(checkpoints: list[str | Path], dataset: str, split: str = "test", *, data_root: str | Path | None = None,
            device: str = "auto", batch_size: int = BATCH_SIZE, calibrate: bool = False, val_split: str = "val",
            progress: bool = True, cache_dir: str | Path | None = None, faces: str = "given", face: str = "best",
            detector: str | None = None, precision: str = "auto") -> list[ModelRun]:
    """Load ``checkpoints`` and analyse them on ``dataset``/``split``; ``calibrate`` fits a
    temperature per model on ``val_split``. ``faces="detect"``: the images are photos, their faces
    found and cropped as the app does (:func:`ferx.data.packed.pack_options`)."""
    dev = resolve_device(device)
    models = [load_checkpoint(ckpt, dev) for ckpt in checkpoints]
    options = pack_options([m.input_spec for m in models], faces, face, detector)
    val_source = load_split(dataset, val_split, data_root) if calibrate else None
    if val_source is not None and val_source.split != val_split:  # no split folders: val would be the faces scored
        raise ValueError(f"{dataset} has no {val_split} folder to fit a temperature on (--calibrate needs "
                         f"<{val_split}>/<class>/ images beside the split it analyses)")
    packed = pack_split(load_split(dataset, split, data_root), progress=progress, **options)
    val = pack_split(val_source, progress=progress, **options) if calibrate else None
    return analyze_packed(models, packed, val, batch_size=batch_size, progress=progress, cache_dir=cache_dir,
                          precision=precision, calibration="--calibrate")
