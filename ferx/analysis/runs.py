"""Batch inference over a dataset split, one row per sample, cached on disk.

A :class:`ModelRun` holds, for one checkpoint on one packed split: logits, the embedding
(``forward_head(forward_features(x), pre_logits=True)``), targets in the dataset's and in the
model's label space, and the paths to find each face again. Probabilities, predictions, loss,
margin and entropy derive from the logits (so temperature scaling needs no re-run).

Cache: ``<cache>/analysis/<key>.npz`` + ``<key>.json``, the key hashing the checkpoint's sha256,
the dataset fingerprint (which records how faces were taken from photos), the preprocessing (input
spec, pack size and colour), the compute precision when it is bf16 (fp32 runs keep the key they
had before precision was a choice) and the format version. A cache entry is used only when its
JSON names the same key and version and its arrays have the expected shapes; anything else is
rebuilt, never trusted.
"""

from __future__ import annotations

import dataclasses
import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, ContextManager

import numpy as np
import pandas as pd
import torch

from ferx.cache import atomic_path, cache_key, cached
from ferx.checkpoint import LoadedModel
from ferx.data.labels import get_label_set, label_mapping
from ferx.data.packed import PackedSplit
from ferx.inference import BATCH_SIZE, predict_logits_and_embeddings
from ferx.paths import cache_dir as default_cache_dir

ANALYSIS_VERSION = 1


@dataclass
class ModelRun:
    name: str  # display name (the checkpoint folder's name)
    checkpoint: str
    checkpoint_sha256: str
    model_classes: tuple[str, ...]
    dataset: str
    split: str
    dataset_fingerprint: str
    dataset_classes: tuple[str, ...]
    paths: np.ndarray  # str, relative to the dataset root
    targets: np.ndarray  # int64, dataset label space
    logits: np.ndarray  # float32 N x K (model label space)
    embeddings: np.ndarray  # float32 N x D
    key: str = ""
    compute_dtype: str = "fp32"  # or "bf16": the forward pass ran under bf16 autocast
    faces: str = "given"  # the packed split's (PackedSplit.faces): given, or detect:<face>:<detector>
    no_face: int = 0  # photos of the split without a face found (faces="detect"), left out
    skipped: int = 0  # unreadable images of the split, left out (the pack's)
    temperature: float = 1.0
    from_cache: bool = False
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.targets)

    # ---- derived per-sample quantities (model label space)
    @cached_property
    def model_targets(self) -> np.ndarray:
        """The true label in the model's label space; -1 where the model lacks the class."""
        mapping = label_mapping(get_label_set(list(self.dataset_classes)), get_label_set(list(self.model_classes)))
        return mapping[self.targets]

    @property
    def scored(self) -> np.ndarray:
        """Samples whose class the model knows (all others are left out of every metric)."""
        return self.model_targets >= 0

    def scored_text(self) -> str:
        """'138 faces scored (6 contempt left out: not a class of the model)', for titles."""
        text = f"{int(self.scored.sum())} faces scored"
        left = self.targets[~self.scored]
        if len(left):
            counts = ", ".join(f"{int((left == c).sum())} {self.dataset_classes[c]}" for c in np.unique(left))
            text += f" ({counts} left out: not a class of the model)"
        return text

    @cached_property
    def probs(self) -> np.ndarray:
        return torch.softmax(torch.from_numpy(self.logits) / self.temperature, 1).numpy()

    @cached_property
    def preds(self) -> np.ndarray:
        return self.logits.argmax(1)

    @cached_property
    def confidence(self) -> np.ndarray:
        return self.probs.max(1)

    @cached_property
    def margin(self) -> np.ndarray:
        """Top-1 minus top-2 probability: small means the model hesitated between two classes."""
        top2 = np.sort(self.probs, 1)[:, -2:]
        return top2[:, 1] - top2[:, 0]

    @cached_property
    def entropy(self) -> np.ndarray:
        p = self.probs
        return -(p * np.log(np.clip(p, 1e-12, 1))).sum(1)

    @cached_property
    def loss(self) -> np.ndarray:
        """Cross-entropy of the true class; NaN where the model lacks the class."""
        t = np.clip(self.model_targets, 0, None)
        nll = -np.log(np.clip(self.probs[np.arange(len(t)), t], 1e-12, 1))
        return np.where(self.scored, nll, np.nan)

    @cached_property
    def correct(self) -> np.ndarray:
        return self.scored & (self.preds == self.model_targets)

    def with_temperature(self, temperature: float) -> "ModelRun":
        fields = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return ModelRun(**{**fields, "temperature": float(temperature)})

    def frame(self) -> pd.DataFrame:
        """One row per sample, indexed by sample id (its position in the split), with the full
        probability vector as ``p_<class>`` columns."""
        names = np.asarray(self.model_classes)
        return pd.DataFrame({
            "path": self.paths,
            "true": np.asarray(self.dataset_classes)[self.targets],
            "pred": names[self.preds],
            "confidence": self.confidence,
            "margin": self.margin,
            "entropy": self.entropy,
            "loss": self.loss,
            "correct": self.correct,
            "scored": self.scored,
            **{f"p_{c}": self.probs[:, i] for i, c in enumerate(self.model_classes)},
        }).rename_axis("sample")

    # ---- cache
    def save(self, path: Path) -> None:
        """The arrays, then their description (``.json``, written last: an entry without it is incomplete)."""
        with atomic_path(path) as tmp:
            np.savez_compressed(tmp, paths=self.paths.astype(str), targets=self.targets, logits=self.logits,
                                embeddings=self.embeddings)
        meta = {k: getattr(self, k) for k in ("name", "checkpoint", "checkpoint_sha256", "model_classes", "dataset",
                                              "split", "dataset_fingerprint", "dataset_classes", "key",
                                              "compute_dtype")}
        meta.update(version=ANALYSIS_VERSION, n=len(self))
        with atomic_path(path.with_suffix(".json")) as tmp:
            tmp.write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, path: Path, key: str) -> "ModelRun":
        meta = json.loads(path.with_suffix(".json").read_text())
        if meta.get("version") != ANALYSIS_VERSION or meta.get("key") != key:
            raise ValueError("cache entry is from another version or another run")
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("paths", "targets", "logits", "embeddings")}
        n = meta["n"]
        if any(len(v) != n for v in arrays.values()) or arrays["logits"].shape[1] != len(meta["model_classes"]):
            raise ValueError("cache arrays do not match their description")
        meta = {k: tuple(v) if isinstance(v, list) else v for k, v in meta.items() if k not in ("version", "n")}
        return cls(**meta, **arrays, from_cache=True)


def run_model(loaded: LoadedModel, packed: PackedSplit, *, batch_size: int = BATCH_SIZE, progress: bool = True,
              cache_dir: str | Path | None = None,
              hold: Callable[[], ContextManager] = nullcontext, precision: str = "auto") -> ModelRun:
    """Predictions and embeddings of one checkpoint on one packed split, from the cache when valid;
    ``hold()`` is entered around each batch (the app's lock on the model); ``precision``:
    :meth:`ferx.checkpoint.LoadedModel.compute_dtype` (the run records the one used in ``compute_dtype``)."""
    bf16 = loaded.compute_dtype(precision) == "bf16"
    key = cache_key(ANALYSIS_VERSION, loaded.sha256, packed.fingerprint, loaded.input_spec.to_dict(),
                    list(packed.images.shape[1:]), *(["bf16"] if bf16 else []))
    path = Path(cache_dir or default_cache_dir("analysis")) / f"{key[:32]}.npz"
    run = cached(path, lambda p: ModelRun.load(p, key),
                 lambda: _compute(loaded, packed, key, batch_size, progress, hold, bf16),
                 ModelRun.save, what="analysis")
    # the checkpoint as loaded now (the cache is keyed by its weights: a renamed copy finds it) and the pack's faces
    return dataclasses.replace(run, name=loaded.path.name, checkpoint=str(loaded.path), faces=packed.faces,
                               no_face=packed.no_face, skipped=packed.skipped)


def _compute(loaded: LoadedModel, packed: PackedSplit, key: str, batch_size: int, progress: bool,
             hold: Callable[[], ContextManager], bf16: bool) -> ModelRun:
    logits, embeddings = predict_logits_and_embeddings(loaded.model, loaded.input_spec, packed.images, batch_size,
                                                       progress, hold, "bf16" if bf16 else "fp32")
    return ModelRun(name=loaded.path.name, checkpoint=str(loaded.path), checkpoint_sha256=loaded.sha256,
                    model_classes=loaded.labels.classes, dataset=packed.dataset, split=packed.split,
                    dataset_fingerprint=packed.fingerprint, dataset_classes=packed.classes, paths=packed.paths,
                    targets=packed.targets, logits=logits.numpy(), embeddings=embeddings.numpy(), key=key,
                    compute_dtype="bf16" if bf16 else "fp32")
