"""Precomputed analysis bundles, so the Dataset tab works instantly where no dataset is (a Space).

A bundle folder holds the packed faces of one split (``packed/<dataset>-<split>.npz``) and, as a
ferx cache (``analysis/``, ``embeddings/``), every model's run and 2-D projections on it. An app
started with ``FERX_CACHE_DIR`` pointing at the bundle finds them exactly as if it had computed
them: the keys are the same checkpoint hashes and dataset fingerprint.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from ferx.analysis.analyze import analyze_packed
from ferx.analysis.embeddings import METHODS, project
from ferx.checkpoint import load_checkpoint
from ferx.data.datasets import load_split
from ferx.data.packed import PackedSplit, pack_split


@contextmanager
def _cache_at(folder: Path):
    old = os.environ.get("FERX_CACHE_DIR")
    os.environ["FERX_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("FERX_CACHE_DIR")
        else:
            os.environ["FERX_CACHE_DIR"] = old


def bundled_splits(bundle: str | Path) -> dict[str, Path]:
    """``{"ferplus/test": path}`` for every packed split in a bundle folder."""
    folder = Path(bundle) / "packed"
    return {p.stem.replace("-", "/", 1): p for p in sorted(folder.glob("*.npz"))} if folder.is_dir() else {}


def build_bundle(checkpoints: list[str | Path], dataset: str, split: str, out: str | Path, *,
                 data_root: str | Path | None = None, methods=METHODS, device: str = "cpu") -> Path:
    out = Path(out)
    packed = pack_split(load_split(dataset, split, data_root))
    with _cache_at(out):
        models = [load_checkpoint(c, device) for c in checkpoints]
        for run in analyze_packed(models, packed):
            for method in methods:
                project(run, method)
    PackedSplit.save(packed, out / "packed" / f"{packed.dataset}-{packed.split}.npz")
    return out
