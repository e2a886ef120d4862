"""Timings of the Dataset tab's research views on a real split, cold (an empty cache) and cached.

    python bench/bench_research.py [--dataset ferplus --split test] [--projection-model lanmsff_ferplus]
                                   [--attention 10] [--cache DIR]

Every trained checkpoint in ./checkpoints is analysed; t-SNE and UMAP (minutes each on 2 cores) are
timed for one model only. Each view is timed twice: the first pass in a fresh cache folder (``--cache``,
default a new temporary one), the second reading what the first wrote. Prints one line per view.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="ferplus")
    p.add_argument("--split", default="test")
    p.add_argument("--projection-model", default="lanmsff_ferplus")
    p.add_argument("--attention", type=int, default=10, help="faces for the attention test (0: skip it)")
    p.add_argument("--cache", default=None)
    args = p.parse_args()
    os.environ["FERX_CACHE_DIR"] = args.cache or tempfile.mkdtemp(prefix="ferx-bench-research-")

    from ferx.analysis import analyze_packed
    from ferx.analysis.attention import attention_study, attention_table
    from ferx.analysis.disagreement import class_agreement, disagreement_frame
    from ferx.analysis.embeddings import project
    from ferx.analysis.labelnoise import ranking, vote_metrics
    from ferx.analysis.placement import place
    from ferx.analysis.selection import selection_frame, summary_text
    from ferx.data import load_split, pack_split
    from webapp.model_bank import ModelBank

    bank = ModelBank.load(REPO / "checkpoints", "cpu")
    packed = pack_split(load_split(args.dataset, args.split, REPO / "datasets"), progress=False)
    print(f"{args.dataset}/{args.split}: {len(packed)} faces; models: {', '.join(bank.names)}; "
          f"cache {os.environ['FERX_CACHE_DIR']}")
    for attempt in ("cold", "cached"):
        def timed(what, fn, *a, **kw):
            start = time.perf_counter()
            value = fn(*a, **kw)
            print(f"{attempt:6s} {what:55s} {time.perf_counter() - start:8.2f} s", flush=True)
            return value

        runs = timed("analysis (every model)", analyze_packed, list(bank.models.values()), packed, progress=False)
        by_name = {r.name: r for r in runs}
        focus = by_name.get(args.projection_model, runs[0])
        for method in ("pca", "tsne", "umap"):
            timed(f"{method} of {focus.name}", project, focus, method)
        for run in runs:
            if run is not focus:
                timed(f"pca of {run.name}", project, run, "pca")
        ids = list(range(0, len(packed), 7))
        timed(f"selection of {len(ids)} faces: sort, summary", lambda: summary_text(
            selection_frame(focus, ids, "confidence, highest first"), focus.name))
        timed(f"where does a photo land ({len(runs)} models)", lambda: [
            place(bank.models[r.name], r, packed.images[17]) for r in runs])
        if packed.soft_targets is not None:
            timed("label noise: vote metrics + both rankings", lambda: (vote_metrics(runs, packed.soft_targets), [
                ranking(r, packed.soft_targets, k, 60) for r in runs for k in ("likely label errors", "ambiguous faces")]))
        for a, b in itertools.combinations(runs, 2):
            la, lb = bank.models[a.name], bank.models[b.name]
            timed(f"disagreement {a.name} vs {b.name} (200 faces)", disagreement_frame, la, lb, a, b, packed, limit=200)
            timed("  map agreement per class (20 per class)", class_agreement, la, lb, a, b, packed, per_class=20)
        if args.attention:
            rows = timed(f"attention vs Grad-CAM vs random ({args.attention} faces per model)", attention_study,
                         list(bank.models.values()), packed, args.attention)
            if attempt == "cached":
                print(attention_table(rows).round(3).to_string())


if __name__ == "__main__":
    main()
