"""Live mode's cost per webcam frame on this machine: how many frames per second the CPU can hold.

    python bench/bench_live.py [--checkpoints checkpoints] [--threads 1 2] [--frames 20]

A 640x480 JPEG frame (what a webcam stream sends) holding a real portrait (the public-domain
astronaut photo that ships with scikit-image) is decoded, its faces found, the largest scored by
every shipped checkpoint (ferx.live.score_frame); then a Grad-CAM of every model on demand
(ferx.live.map_face). Prints the median seconds per frame, detection alone, and the frames per
second that leaves, per torch thread count. ferx.live.FRAME_INTERVAL_S is chosen from these numbers.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import ferx  # noqa: F401
from ferx.checkpoint import load_checkpoint
from ferx.faces import load_photo
from ferx.live import LIVE_SIDE, largest_face, map_face, score_frame


def webcam_frame() -> bytes:
    import skimage.data

    canvas = Image.new("RGB", (640, 480), (96, 104, 112))
    canvas.paste(Image.fromarray(skimage.data.astronaut()).resize((400, 400)), (120, 40))
    out = io.BytesIO()
    canvas.save(out, "JPEG", quality=85)
    return out.getvalue()


def median_s(fn, n: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", default="checkpoints")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--frames", type=int, default=20)
    args = parser.parse_args()
    models = [load_checkpoint(p.parent) for p in sorted(Path(args.checkpoints).glob("*/card.json"))]
    frame = webcam_frame()
    first = score_frame(models, frame)
    assert first.face is not None, "no face found in the bench frame"
    print(f"frame 640x480 JPEG, {first.n_faces} face(s); models: {', '.join(m.display for m in models)}")
    print("  " + "; ".join(f"{k}: {c} {p:.2f}" for k, (c, p) in ((k, first.top(k)) for k in first.probs)))
    for threads in args.threads:
        torch.set_num_threads(threads)
        detect = median_s(lambda: largest_face(load_photo(frame, work_side=LIVE_SIDE)), args.frames)
        total = median_s(lambda: score_frame(models, frame), args.frames)
        maps = median_s(lambda: [map_face(m, first.face) for m in models], max(3, args.frames // 4))
        print(f"{threads} thread(s): {total:.3f} s per frame ({1 / total:.1f} frames/s), of which decoding and "
              f"detection {detect:.3f} s; Grad-CAM of every model on demand {maps:.3f} s")


if __name__ == "__main__":
    main()
