"""Explanation latency per model on this machine: batch 1, median of repeated runs.

    python bench/bench_explain.py [--repeats 20] [--heavy-repeats 3] [--models lanmsff convcut mini_xception]
                                  [--device cpu|cuda|auto]

Per model: predict; the native attention pass (every native map and the prediction come from
this one pass); Grad-CAM; Integrated Gradients (32 steps, one internal batch); deletion + insertion
of the Grad-CAM map (32 steps with 3 random maps, and 16 steps with 1 random map — the
``ferx explain`` default for Conv-cut); and "predict + native + Grad-CAM" as ``ferx explain``
runs it (the native pass gives the prediction, then Grad-CAM). The face is a real FER-2013 test
face when ``datasets/`` is prepared, else noise — latency does not depend on it. mini-Xception
uses its trained checkpoint; LANMSFF and Conv-cut random weights (latency does not depend on them).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import ferx  # noqa: F401  (before timm / torchvision / pytorch_grad_cam)
import numpy as np
import torch

from ferx.data.preprocess import to_model_input
from ferx.device import describe_hardware, resolve_device
from ferx.explain import attribution_maps, cam_maps, deletion_insertion, has_native_attention, native_attention
from ferx.explain._common import fast_logits
from ferx.models import create_model, get_model_info

REPO = Path(__file__).resolve().parents[1]


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        fn()
        _sync()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def a_face() -> np.ndarray:
    try:
        from ferx.data import load_fer2013, pack_split

        split = pack_split(load_fer2013(REPO / "datasets", "test"), progress=False)
        return split.images[:1]
    except Exception:  # datasets not prepared: latency does not depend on the pixels
        return np.random.default_rng(0).integers(0, 256, (1, 48, 48), dtype=np.uint8)


def open_bench_model(name: str):
    if name == "mini_xception" and (REPO / "checkpoints" / "mini_xception_fer2013").is_dir():
        from ferx.checkpoint import load_checkpoint

        return load_checkpoint(REPO / "checkpoints" / "mini_xception_fer2013").model, "checkpoint"
    torch.manual_seed(0)
    return create_model(name).eval(), "random weights"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=["lanmsff", "convcut", "mini_xception"])
    p.add_argument("--repeats", type=int, default=20, help="runs per figure (the cheap ones)")
    p.add_argument("--heavy-repeats", type=int, default=3, help="runs for IG and deletion/insertion on Conv-cut")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    print(f"hardware: {describe_hardware(device)}; load average {os.getloadavg()[0]:.2f}")
    print("batch 1, median of repeated runs, milliseconds")
    face = a_face()
    for name in args.models:
        model, weights = open_bench_model(name)
        model = model.to(device)
        spec = get_model_info(name).input_spec
        x = to_model_input(torch.as_tensor(face).to(device), spec)
        big = name == "convcut"
        reps = max(3, args.repeats // 4) if big else args.repeats
        heavy = args.heavy_repeats if big else args.repeats
        rows = [("predict", median_ms(lambda: fast_logits(model, x), reps))]
        if has_native_attention(model):
            maps = native_attention(model, x)[0].maps
            rows.append((f"native pass ({', '.join(m.method for m in maps)} + prediction)",
                         median_ms(lambda: native_attention(model, x), reps)))
        rows.append(("grad-cam", median_ms(lambda: cam_maps(model, x, "gradcam"), reps)))
        if has_native_attention(model):
            rows.append(("predict + native maps + grad-cam (one native pass, then grad-cam)",
                         median_ms(lambda: (native_attention(model, x), cam_maps(model, x, "gradcam")), reps)))
        else:
            rows.append(("predict + grad-cam", median_ms(lambda: (fast_logits(model, x), cam_maps(model, x, "gradcam")),
                                                         reps)))
        rows.append(("integrated gradients (n_steps 32, internal batch 32)",
                     median_ms(lambda: attribution_maps(model, x, "ig", n_steps=32, internal_batch_size=32), heavy,
                               warmup=1)))
        gradcam = cam_maps(model, x, "gradcam")[0]
        rows.append(("deletion + insertion (32 steps, 3 random maps: 250 images)",
                     median_ms(lambda: deletion_insertion(model, x, gradcam, n_steps=32, n_random=3), heavy, warmup=1)))
        rows.append(("deletion + insertion (16 steps, 1 random map: 62 images)",
                     median_ms(lambda: deletion_insertion(model, x, gradcam, n_steps=16, n_random=1), heavy, warmup=1)))
        print(f"\n{name} ({weights}, input {spec.size}x{spec.size}x{spec.channels})")
        for label, ms in rows:
            print(f"  {label:72s} {ms:10.1f}", flush=True)


if __name__ == "__main__":
    main()
