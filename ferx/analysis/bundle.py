"""Precomputed analysis bundles, so the Dataset tab works instantly where no dataset is (a Space).

A bundle folder holds a manifest (``bundle.json``), the packed faces of each split
(``faces/<dataset>-<split>.npz``) and, as a ferx cache (``analysis/``, ``embeddings/``), every
model's run and 2-D projections on them. An app
started with ``FERX_CACHE_DIR`` pointing at the bundle finds them exactly as if it had computed
them: the keys are the same checkpoint hashes and dataset fingerprint. Its runs are computed in
:data:`BUNDLE_PRECISION`, the precision every CPU computes, recorded in the manifest, and the app asks
for the manifest's precision when it analyses a bundle (a run's key includes its precision: with ``auto`` a
bundle built where the CPU has native bf16 would be missed on a Space's CPU without it, and recomputed there
for minutes).
"""

from __future__ import annotations

import json
from pathlib import Path

from ferx.analysis.analyze import analyze_packed
from ferx.analysis.embeddings import METHODS, project
from ferx.checkpoint import load_checkpoint
from ferx.data.datasets import load_split
from ferx.data.packed import PackedSplit, pack_split


MANIFEST = "bundle.json"
PREFIX = "bundle:"  # how the app's source list names a bundled split: "bundle:ferplus/test"
BUNDLE_PRECISION = "fp32"


def bundled_splits(bundle: str | Path) -> dict[str, Path]:
    """``{"ferplus/test": path}`` for every split listed in a bundle's manifest (none if no manifest)."""
    manifest = Path(bundle) / MANIFEST
    if not manifest.is_file():
        return {}
    return {name: Path(bundle) / rel for name, rel in json.loads(manifest.read_text())["splits"].items()}


def bundle_precision(bundle: str | Path) -> str:
    """The precision a bundle's runs were computed in (its manifest's; "auto" for a bundle made before manifests
    said it: the machine's choice then, which this one may or may not share)."""
    manifest = Path(bundle) / MANIFEST
    return json.loads(manifest.read_text()).get("precision", "auto") if manifest.is_file() else "auto"


def build_bundle(checkpoints: list[str | Path], dataset: str, split: str, out: str | Path, *,
                 data_root: str | Path | None = None, methods=METHODS, device: str = "cpu") -> Path:
    out = Path(out)
    packed = pack_split(load_split(dataset, split, data_root))
    models = [load_checkpoint(c, device) for c in checkpoints]
    for run in analyze_packed(models, packed, cache_dir=out / "analysis",  # the app's cache_dir("analysis")
                              precision=BUNDLE_PRECISION):
        for method in methods:
            project(run, method, cache_dir=out / "embeddings")
    rel = f"faces/{packed.dataset.replace(':', '_')}-{packed.split}.npz"
    PackedSplit.save(packed, out / rel)
    manifest = out / MANIFEST
    splits = json.loads(manifest.read_text())["splits"] if manifest.is_file() else {}
    splits[f"{packed.dataset}/{packed.split}"] = rel
    manifest.write_text(json.dumps({"splits": splits, "checkpoints": [str(c) for c in checkpoints],
                                     "precision": BUNDLE_PRECISION}, indent=1))
    return out
