"""Devices and numeric precision, shared by training and inference (which must not import the training code).

Mixed precision is used only where it pays: bf16 autocast on CUDA by default; on a CPU bf16 is opt-in, because
it is fast only where the CPU has bf16 instructions (AVX-512 BF16 or AMX) and emulated, and slower than fp32,
elsewhere.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from lstmtext.config import PRECISIONS, check_precision
from lstmtext.errors import UsageError
from lstmtext.progress import note


def pick_device(name: str) -> torch.device:
    """``auto`` | ``cpu`` | ``cuda``; under torchrun a CUDA run takes the local rank's device."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    torch.cuda.set_device(local)
    return torch.device("cuda", local)


def autocast_for(device: torch.device, precision: str, option: str = "train.precision"):
    """(context factory, GradScaler or None) for ``precision`` on ``device``."""
    check_precision(precision, option, PRECISIONS)  # recipes are checked as read; this guards every other caller
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return nullcontext, None
    if device.type == "cpu" and precision == "fp16":
        raise UsageError(f"{option}=fp16 needs a CUDA device; on CPU use bf16 or fp32 (or auto)")
    if device.type == "cpu" and precision == "bf16" and not native_bf16():
        note(
            f"{option} bf16: this CPU has no bf16 instructions (AVX-512 BF16 or AMX), so bf16 is emulated and "
            "slower than fp32 here"
        )
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" and device.type == "cuda" else None
    return (lambda: torch.autocast(device.type, dtype=dtype)), scaler


def resolve_precision(device: torch.device, precision: str) -> str:
    """``auto`` made concrete: bf16 on a CUDA device that supports it, fp32 elsewhere (on a CPU bf16 is asked for,
    not assumed: AVX-512 BF16 alone can train an LSTM slower than fp32; BENCHMARKS.md)."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 itself (AVX-512 BF16 or AMX) rather than emulating it."""
    cpu = getattr(torch, "cpu", None)
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
