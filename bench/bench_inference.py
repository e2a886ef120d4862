"""Inference throughput of every registered model on this machine, next to its multiply-adds.

    python bench/bench_inference.py [--device cpu] [--repeats 5]

Prints, per model: parameters, multiply-adds per image (counted by torch's FlopCounterMode,
multiply-adds = FLOPs / 2), and images/s at batch 1 and batch 64 (median of the repeats, after
one warm-up), through the same channels-last inference path as ``ferx evaluate``.
Weights are random: throughput does not depend on their values.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import ferx  # noqa: F401
from ferx.device import describe_hardware, resolve_device
from ferx.memory_format import channels_last
from ferx.models import create_model, get_model_info, list_models


def multiply_adds(model, spec) -> float:
    x = torch.randn(1, spec.channels, spec.size, spec.size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2


def images_per_second(model, spec, batch: int, repeats: int, device) -> float:
    x = torch.randn(batch, spec.channels, spec.size, spec.size, device=device).contiguous(memory_format=torch.channels_last)
    times = []
    with channels_last(model), torch.inference_mode():
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", nargs="+", default=list_models())
    args = p.parse_args()
    device = resolve_device(args.device)
    print(f"hardware: {describe_hardware(device)}")
    print(f"{'model':14s} {'input':>9s} {'params':>12s} {'GMACs/img':>10s} {'img/s b=1':>10s} {'img/s b=64':>11s}")
    for name in args.models:
        spec = get_model_info(name).input_spec
        model = create_model(name).eval()
        macs = multiply_adds(model, spec)
        model = model.to(device)
        b1 = images_per_second(model, spec, 1, max(args.repeats, 20), device)
        b64 = images_per_second(model, spec, 64, args.repeats if name != "convcut" else min(args.repeats, 2), device)
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:14s} {spec.size:>4d}x{spec.size}x{spec.channels} {params:>12,d} {macs / 1e9:>10.3f} {b1:>10.1f} {b64:>11.1f}",
              flush=True)


if __name__ == "__main__":
    main()
