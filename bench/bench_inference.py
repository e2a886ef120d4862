"""Inference throughput of every registered model on this machine, next to its multiply-adds.

    python bench/bench_inference.py [--device cpu|cuda|auto] [--repeats 5] [--batches 1 64]
    python bench/bench_inference.py --one-face [--models lanmsff mini_xception]

Prints, per model: parameters, multiply-adds per image (counted by torch's FlopCounterMode,
multiply-adds = FLOPs / 2), and images/s at each batch size (median of the repeats, after
one warm-up), through the same channels-last inference path as ``ferx evaluate`` (bf16 autocast
on CUDA, as there).
Weights are random: throughput does not depend on their values.

``--one-face``: milliseconds per face for one face at a time on CPU, the app's per-photo path, through
each engine ferx has for it: the model itself (``fast_inference``: one thread), its frozen channels-last
twin (``fast_forward``'s default) and its twin on OpenCV's DNN engine (``prepare_fast_forward``,
:mod:`ferx.opencv_twin`), with the ratio of the first two to the last; small models only.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import ferx  # noqa: F401
from ferx.device import describe_hardware, resolve_device
from ferx.memory_format import SMALL_MODEL, channels_last
from ferx.models import create_model, get_model_info, list_models


def multiply_adds(model, spec) -> float:
    x = torch.randn(1, spec.channels, spec.size, spec.size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2


def images_per_second(model, spec, batch: int, repeats: int, device) -> float:
    x = torch.randn(batch, spec.channels, spec.size, spec.size, device=device).contiguous(memory_format=torch.channels_last)
    times = []
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    with channels_last(model), torch.inference_mode(), autocast:
        model(x)  # warm-up
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def one_face_ms(run, x, repeats: int) -> float:
    run(x)  # warm-up (and the twin's making)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(20):
            run(x)
        times.append((time.perf_counter() - start) / 20)
    return statistics.median(times) * 1e3


def one_face(models: list[str], repeats: int) -> None:
    from ferx.memory_format import _TWINS, fast_forward, fast_inference, prepare_fast_forward

    def eager(m, x):
        with fast_inference(m, x) as xi:
            return m(xi)

    print(f"hardware: {describe_hardware(torch.device('cpu'))}; one face at a time, ms a face (median of {repeats})")
    print(f"{'model':14s} {'model':>8s} {'frozen':>8s} {'OpenCV':>8s} {'model/OpenCV':>13s} {'frozen/OpenCV':>14s}")
    for name in models:
        spec = get_model_info(name).input_spec
        model = create_model(name).eval()
        if sum(p.numel() for p in model.parameters()) >= SMALL_MODEL:
            continue
        x = torch.randn(1, spec.channels, spec.size, spec.size)
        plain = one_face_ms(lambda x: eager(model, x), x, repeats)
        frozen = one_face_ms(lambda x: fast_forward(model, x), x, repeats)
        _TWINS.pop(model, None)
        prepare_fast_forward(model, x)
        engine = type(_TWINS[model][tuple(x.shape)].twin).__name__
        opencv = one_face_ms(lambda x: fast_forward(model, x), x, repeats)
        print(f"{name:14s} {plain:8.2f} {frozen:8.2f} {opencv:8.2f} {plain / opencv:12.2f}x {frozen / opencv:13.2f}x"
              + ("" if engine == "OpenCVTwin" else f"  (no OpenCV twin: {engine})"), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", nargs="+", default=list_models())
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    p.add_argument("--one-face", action="store_true", help="ms a face, one at a time, per CPU engine (small models)")
    args = p.parse_args()
    if args.one_face:
        one_face(args.models, max(args.repeats, 7))
        return
    device = resolve_device(args.device)
    print(f"hardware: {describe_hardware(device)}")
    print(f"{'model':14s} {'input':>9s} {'params':>12s} {'GMACs/img':>10s} "
          + " ".join(f"{f'img/s b={b}':>12s}" for b in args.batches))
    for name in args.models:
        spec = get_model_info(name).input_spec
        model = create_model(name).eval()
        macs = multiply_adds(model, spec)
        model = model.to(device)
        slow = name == "convcut" and device.type == "cpu"
        rates = [images_per_second(model, spec, b, max(args.repeats, 20) if b == 1 else
                                   (min(args.repeats, 2) if slow else args.repeats), device) for b in args.batches]
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:14s} {spec.size:>4d}x{spec.size}x{spec.channels} {params:>12,d} {macs / 1e9:>10.3f} "
              + " ".join(f"{r:>12.1f}" for r in rates), flush=True)


if __name__ == "__main__":
    main()
