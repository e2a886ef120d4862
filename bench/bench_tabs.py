"""Each tab's handler on a real photo, called as gradio calls it: wall time, CPU time (the process's, every
thread) and peak resident memory, per call.

    python bench/bench_tabs.py [--ops compare explain-gradcam ...] [--repeats 3] [--zip FACES.zip]

The models are loaded and built as ``ferx app`` does (``ModelBank.load(defer=True)``, then ``build``: the
twins of one face made at start); the photo is the astronaut portrait that ships with scikit-image (one
face), and the occlusion brush paints its mouth. ``--zip`` adds the Dataset tab: the analysis of a zip of
faces (``test/<class>/<i>.png``, as bench/load_check.py's ``zip:N`` writes it) with every model, then the
confusion and cross-model matrices, PCA / t-SNE / UMAP and the disagreement gallery of its first models.
Peak memory is the process's high-water mark (``VmHWM``), reset before each call (``/proc/self/clear_refs``);
"+" is its rise over the resident memory before the call. CPU time beside wall time says how much of a
wall time was waiting for cores other processes held. For a before/after, run it from two checkouts
(``git archive COMMIT | tar -x -C /tmp/before``) in turns, so both see the same load.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import ferx  # noqa: F401  (before timm)

REPO = Path(__file__).resolve().parents[1]
EXPLAIN = {"explain-native": (True, [], []), "explain-gradcam": (False, ["gradcam"], []),
           "explain-scorecam": (False, ["scorecam"], []), "explain-ig": (False, [], ["integrated_gradients"]),
           "explain-saliency": (False, [], ["saliency"])}
OPS = ["compare", *EXPLAIN, "explain-gradcam-faithfulness", "sanity", "stability", "occlusion"]


def memory() -> tuple[float, float]:
    """Resident memory now and its high-water mark, MB."""
    status = Path("/proc/self/status").read_text()
    return tuple(int(re.search(rf"{k}:\s+(\d+)", status).group(1)) / 1024 for k in ("VmRSS", "VmHWM"))


def measure(name: str, fn, repeats: int) -> None:
    rows = []
    for _ in range(repeats):
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")  # the high-water mark starts again from here
        before = memory()[0]
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = memory()[1]
        rows.append((wall, cpu, peak, peak - before))
    wall, cpu, peak, rise = (statistics.median(c) for c in zip(*rows))
    print(f"{name:34s} wall {wall:7.2f} s  cpu {cpu:7.2f} s  peak {peak:6.0f} MB (+{rise:4.0f})  "
          f"walls {' '.join(f'{r[0]:.2f}' for r in rows)}  cpus {' '.join(f'{r[1]:.2f}' for r in rows)}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", default=OPS, choices=OPS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoints", type=Path, default=REPO / "checkpoints")
    parser.add_argument("--data-root", type=Path, default=REPO / "datasets")
    parser.add_argument("--zip", type=Path, help="also the Dataset tab on this zip of faces")
    args = parser.parse_args()

    import numpy as np
    import skimage.data
    from PIL import Image

    from webapp.model_bank import ModelBank

    wall, cpu = time.perf_counter(), time.process_time()
    bank = ModelBank.load(args.checkpoints, "cpu", defer=True)
    bank.build()
    print(f"models loaded and built: wall {time.perf_counter() - wall:.2f} s, cpu {time.process_time() - cpu:.2f} s, "
          f"resident {memory()[0]:.0f} MB; load average {os.getloadavg()[0]:.1f}", flush=True)
    photo = str(Path(skimage.data.__file__).parent / "astronaut.png")
    names, quiet = bank.names, (lambda *a, **k: None)
    for op in args.ops:
        if op == "compare":
            from webapp.compare_tab import compare

            measure(op, lambda: compare(bank, photo, False, 0), args.repeats)
        elif op.startswith("explain"):
            from webapp.explain_tab import explain

            native, cams, captum = EXPLAIN.get(op, (True, ["gradcam"], []))
            faithfulness = op.endswith("faithfulness")
            measure(op, lambda: explain(bank, photo, False, 0, names, native, cams, captum, "predicted", "none", 0.5,
                                        "auto", 99, True, faithfulness, "blur", progress=quiet), args.repeats)
        elif op == "sanity":
            from webapp.sanity_tab import run_sanity

            measure(op, lambda: run_sanity(bank, photo, False, 0, "mini_xception_fer2013", ["gradcam", "saliency"], 4,
                                           progress=quiet), args.repeats)
        elif op == "stability":
            from webapp.stability_tab import run_stability

            measure(op, lambda: run_stability(bank, photo, False, 0, names), args.repeats)
        elif op == "occlusion":
            from webapp.occlusion_tab import occlude_view

            rgb = np.asarray(Image.open(photo).convert("RGB"))
            layer = np.zeros((*rgb.shape[:2], 4), np.uint8)
            layer[130:170, 180:260] = 255  # the mouth
            paint = Path(tempfile.mkdtemp()) / "paint.png"
            Image.fromarray(layer).save(paint)
            edited = {"background": photo, "layers": [str(paint)], "name": "astronaut.png", "composite": None}
            measure(op, lambda: occlude_view(bank, edited, False, 0, "blur", names, True), args.repeats)
    if args.zip:
        dataset_tab(bank, args, quiet)


def dataset_tab(bank, args, quiet) -> None:
    os.environ["FERX_CACHE"] = tempfile.mkdtemp()  # the analysis computes: nothing cached from before
    from ferx.analysis.selection import SORTS
    from webapp import dataset_tab as tab
    from webapp.config import AppConfig

    cfg = AppConfig(data_root=args.data_root, checkpoints=args.checkpoints)
    names, kept = bank.names, {}
    measure("dataset analysis (zip)", lambda: kept.update(out=tab.run_analysis(bank, cfg, None, "test", str(args.zip),
                                                                                 names, False, None, quiet)), 1)
    analysis = kept["out"][0]
    measure("confusion matrix", lambda: tab.show_matrix(analysis, names[0], True), args.repeats)
    measure("cross-model matrix", lambda: tab.show_cross(analysis, names[0], names[1]), args.repeats)
    for how in ("pca", "tsne", "umap"):  # computed once per analysis, then cached: the first call is the one
        measure(f"embedding {how}", lambda: tab.show_embedding(analysis, names[0], how, "true label", None, None,
                                                               progress=quiet), args.repeats)
    measure("disagreement gallery", lambda: tab.first_page(analysis, tab.show_failures(
        analysis, "Model A vs B disagreement", names[0], names[0], names[1]), list(SORTS)[0]), args.repeats)


if __name__ == "__main__":
    main()
