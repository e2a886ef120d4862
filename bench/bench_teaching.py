"""Latency of the teaching views' server work on this machine, per torch thread count.

    python bench/bench_teaching.py [--checkpoints checkpoints] [--data-root datasets] [--threads 1 2]

On a real FER-2013 test face (happy, enlarged to 192 px as a user's photo) with every shipped checkpoint:
one occlusion-brush stroke (the mouth painted; every model scored on both faces, with and without the
before/after maps: ferx.explain.occlusion), one explanation card (the explanation of two models with
faithfulness, then ferx.explain.card.write_card: PNG, PDF, JSON) and a link's face found again
(webapp.links.restore_face: a CK+ test face, the split packed once then reused). Medians of --repeats.
Live mode has its own bench (bench/bench_live.py); the browser tests print what a user waits for.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ferx  # noqa: F401
from ferx.checkpoint import load_checkpoint
from ferx.data import load_fer2013, pack_split
from ferx.explain.card import write_card
from ferx.explain.occlusion import explain_occlusion, occlude_face
from ferx.explain.report import explain_photo
from ferx.faces import find_faces, load_photo

from bench_live import median_s  # bench/ is on the path of a script run from it


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--data-root", default="datasets")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from webapp.links import restore_face

    models = [load_checkpoint(p.parent) for p in sorted(Path(args.checkpoints).glob("*/card.json"))]
    packed = pack_split(load_fer2013(args.data_root, "test"), progress=False)
    face = Image.fromarray(packed.images[int(np.flatnonzero(packed.targets == 3)[0])]).resize((192, 192))
    photo = load_photo(face, name="happy.png")
    mask = np.zeros((192, 192), bool)
    mask[119:177, 42:150] = True  # the mouth
    out = Path(tempfile.mkdtemp(prefix="ferx-bench-"))
    print(f"models: {', '.join(m.display for m in models)}")
    for threads in args.threads:
        torch.set_num_threads(threads)

        def stroke(methods):
            occluded = occlude_face(photo, mask, whole_image=True, fill="blur")
            return [explain_occlusion(m, occluded, methods) for m in models]

        with_maps = median_s(lambda: stroke(("native", "gradcam")), args.repeats)
        without = median_s(lambda: stroke(()), args.repeats)
        search = find_faces(photo, whole_image=True)
        pair = models[-2:]
        explain = median_s(lambda: explain_photo(pair, search, 0, ["native", "gradcam"]), 1)
        result = explain_photo(pair, search, 0, ["native", "gradcam"])
        card = median_s(lambda: write_card(out / "card", result, pair, scale="shared"), args.repeats)
        print(f"{threads} thread(s): occlusion stroke, {len(models)} models: {with_maps:.2f} s with maps before/after "
              f"(native + Grad-CAM), {without:.2f} s probabilities only; explanation of 2 models with faithfulness "
              f"{explain:.2f} s, then the card (PNG, PDF, JSON) {card:.2f} s")
    start = time.perf_counter()
    restore_face({"dataset": "ckplus", "split": "test", "sample": "7"}, Path(args.data_root), [], set())
    cold = time.perf_counter() - start
    warm = median_s(lambda: restore_face({"dataset": "ckplus", "split": "test", "sample": "8"}, Path(args.data_root),
                                         [], set()), args.repeats)
    print(f"a link's face found again: {cold:.2f} s the first time (the split packed), {warm:.3f} s after")


if __name__ == "__main__":
    main()
