"""Inference throughput of every registered model on this machine, next to its multiply-adds.

    python bench/bench_inference.py [--device cpu|cuda|auto] [--repeats 5] [--batches 1 64]

Prints, per model: parameters, multiply-adds per image (counted by torch's FlopCounterMode,
multiply-adds = FLOPs / 2), and images/s at each batch size (median of the repeats, after
one warm-up), through the same channels-last inference path as ``ferx evaluate`` (bf16 autocast
on CUDA, as there).
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--models", nargs="+", default=list_models())
    p.add_argument("--batches", nargs="+", type=int, default=[1, 64])
    args = p.parse_args()
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
