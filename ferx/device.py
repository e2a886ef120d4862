"""Device selection: ``auto`` picks CUDA when present, else CPU."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:  # torch's message lists some twenty device types ferx does not run on
        raise ValueError(f"--device {name}: choose auto (CUDA when present), cpu, cuda or cuda:N") from None
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


# Top-1 agreement with fp32 that bf16 must reach on every test split a checkpoint was measured on
# (bench/bench_bf16.py --write-cards records it on the card) before ``auto`` runs it in bf16 on CPU.
BF16_MIN_AGREEMENT = 0.995


def autocast_bf16(device: torch.device, precision: str = "auto", bf16_agrees: bool = False) -> bool:
    """Whether inference runs under bf16 autocast. ``auto``: bf16 on CUDA; on CPU only where the CPU has
    native bf16 and ``bf16_agrees`` (the checkpoint's card records top-1 agreement with fp32 of at least
    :data:`BF16_MIN_AGREEMENT` on each measured test split: :attr:`ferx.checkpoint.LoadedModel.bf16_agrees`);
    fp32 otherwise. ``fp32`` and ``bf16`` force it."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        raise ValueError("--precision bf16 asked for, but this CPU has no native bf16 (AVX512-BF16 or AMX); "
                         "use fp32")
    if precision != "auto":
        return precision == "bf16"
    return device.type == "cuda" or (device.type == "cpu" and bf16_agrees and cpu_has_bf16())


def describe_hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda}), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    threads = torch.get_num_threads()
    return f"CPU {cpu}, {threads} thread{'s' if threads > 1 else ''}, torch {torch.__version__}"
