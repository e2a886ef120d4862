"""Device selection: ``auto`` picks CUDA when present, else CPU."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"--device {name} was asked for but this machine has no usable CUDA GPU; use --device cpu or auto")
    return device


PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX): there bf16 autocast speeds up
    inference (LANMSFF x1.78, Conv-cut x3.0 measured by bench/bench_bf16.py); elsewhere it is emulated."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def autocast_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether inference runs under bf16 autocast: ``auto`` is bf16 on CUDA and fp32 on CPU (bf16 on
    CPU waits for its measured top-1 agreement, bench/bench_bf16.py); ``fp32`` and ``bf16`` force it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise ValueError("--precision bf16 asked for, but this CPU has no native bf16 (AVX512-BF16 or AMX); "
                         "use fp32")
    return precision == "bf16" or (precision == "auto" and device.type == "cuda")


def describe_hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"CPU {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
