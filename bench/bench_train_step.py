"""Training-step throughput of a model at one or more input sizes, to choose a size that fits a budget.

    python bench/bench_train_step.py --model convcut --sizes 224 112 --batch 128 [--device auto] [--steps 10]
        [--precision auto fp32 bf16] [--compile]

One step = forward, loss, backward and an AdamW update on random inputs, in the layout and precision
``ferx train --precision P`` uses on that device (channels-last where safe; ``auto``: bf16 autocast on CUDA,
fp32 on CPU). Prints images/s (median over the steps after two warm-ups), seconds per epoch of FERPlus
train (26,940 faces), on CUDA the peak GPU memory, and with several precisions each one's speed-up over
the first. ``--compile`` times each precision again with ``torch.compile(model)`` (inductor) and prints
that row's ratio to its eager row and its first step's seconds, which include the compilation.
"""

from __future__ import annotations

import argparse
import statistics
import time

import ferx  # noqa: F401  (torchvision compatibility before timm)
import torch
import torch.nn.functional as F

from ferx.device import autocast_bf16, describe_hardware, resolve_device
from ferx.memory_format import training_memory_format
from ferx.models import create_model, get_model_info

FERPLUS_TRAIN = 26_940


def step_rate(name: str, size: int, batch: int, steps: int, device: torch.device,
              precision: str = "auto", compiled: bool = False) -> tuple[float, float, float]:
    spec = get_model_info(name).input_spec
    model = create_model(name, num_classes=8).to(device).train()
    fmt = training_memory_format(model, device)
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, spec.channels, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 8, (batch,), device=device)
    bf16 = autocast_bf16(device, precision)  # as ferx train --precision decides it
    if compiled:
        torch.compiler.reset()  # a fresh compilation for each row, not a graph cached by an earlier size
    forward = torch.compile(model) if compiled else model
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for i in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return batch / statistics.median(times[2:]), peak, times[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="convcut")
    p.add_argument("--sizes", nargs="+", type=int, default=[224, 112])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"])
    p.add_argument("--compile", action="store_true", help="also time each precision under torch.compile")
    args = p.parse_args()
    device = resolve_device(args.device)
    print(f"hardware: {describe_hardware(device)}")
    print(f"{args.model}, batch {args.batch}, {args.steps} timed steps")
    for size in args.sizes:
        first = None
        for precision in args.precision:
            eager = None
            for compiled in (False, True) if args.compile else (False,):
                rate, peak, first_step = step_rate(args.model, size, args.batch, args.steps, device, precision, compiled)
                first, eager = first or rate, eager or rate
                shown = ("bf16" if autocast_bf16(device, precision) else "fp32") + (", compiled" if compiled else "")
                print(f"  {size}x{size} {precision} ({shown}): {rate:9.1f} img/s  {FERPLUS_TRAIN / rate:8.1f} s per "
                      f"FERPlus epoch  x{rate / first:.2f}"
                      + (f"  x{rate / eager:.2f} of eager, first step {first_step:.1f} s" if compiled else "")
                      + (f"  peak GPU memory {peak:.1f} GiB" if device.type == "cuda" else ""), flush=True)


if __name__ == "__main__":
    main()
