"""Devices and numeric precision, shared by training and inference (which must not import the training code).

Mixed precision is used only where it pays. ``auto`` trains in bf16 on CUDA and on a CPU with bf16 instructions
(AVX-512 BF16 or AMX), where it computes more per second; elsewhere on a CPU bf16 is emulated and slower than
fp32, so it stays fp32 there. Inference's ``auto`` is bf16 on CUDA and fp32 on any CPU: a model's outputs on a
CPU do not depend on which instructions that CPU has unless the user asks for bf16.
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


def autocast_for(device: torch.device, precision: str, option: str = "train.precision", training: bool = True):
    """(context factory, GradScaler or None) for ``precision`` on ``device``."""
    check_precision(precision, option, PRECISIONS)  # recipes are checked as read; this guards every other caller
    if precision == "auto":
        precision = resolve_auto(device, training)
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


def resolve_auto(device: torch.device, training: bool) -> str:
    """What ``auto`` means on ``device``: bf16 on CUDA where supported; in training, bf16 on a CPU that has bf16
    instructions as well; fp32 otherwise."""
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if training and native_bf16() else "fp32"


def native_bf16() -> bool:
    """Whether this CPU computes in bf16 itself (AVX-512 BF16 or AMX) rather than emulating it."""
    cpu = getattr(torch, "cpu", None)
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
