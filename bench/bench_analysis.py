"""Dataset-analysis timings on the FERPlus test split (3,371 scored faces of 3,573), CPU.

    python bench/bench_analysis.py [--data-root datasets]

Per model: analysis cold (empty cache: batch inference + embeddings + writing the cache) and from
the cache, then PCA, t-SNE and UMAP of its embeddings (UMAP after its numba compile cache is warm;
the compile time is printed separately), for the committed mini_xception_fer2013 and lanmsff_ferplus.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import ferx  # noqa: F401
from ferx.analysis import analyze
from ferx.analysis.embeddings import compute_projection, warm_up_umap
from ferx.data import load_split, pack_split

REPO = Path(__file__).resolve().parents[1]


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=str(REPO / "datasets"))
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    pack_split(load_split("ferplus", "test", args.data_root), progress=False)  # packing is not analysis time
    with tempfile.TemporaryDirectory() as tmp:
        _, compile_s = timed(warm_up_umap)
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; UMAP compile/cache load: {compile_s:.1f} s")
        print(f"{'model':26s} {'faces':>6s} {'cold s':>8s} {'cached s':>9s} {'PCA s':>7s} {'t-SNE s':>8s} {'UMAP s':>7s}")
        for ckpt in (REPO / "checkpoints" / "mini_xception_fer2013", REPO / "checkpoints" / "lanmsff_ferplus"):
            cache = Path(tmp) / f"cache-{ckpt.name}"
            (run,), cold = timed(lambda: analyze([ckpt], "ferplus", "test", data_root=args.data_root,
                                                 device=args.device, progress=False, cache_dir=cache))
            _, cached = timed(lambda: analyze([ckpt], "ferplus", "test", data_root=args.data_root,
                                              device=args.device, progress=False, cache_dir=cache))
            seconds = [timed(lambda m=m: compute_projection(run.embeddings, m))[1] for m in ("pca", "tsne", "umap")]
            print(f"{ckpt.name:26s} {len(run):>6d} {cold:>8.1f} {cached:>9.2f} " +
                  " ".join(f"{s:>7.1f}" for s in seconds), flush=True)


if __name__ == "__main__":
    main()
