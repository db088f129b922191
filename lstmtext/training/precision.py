"""``train.precision = "fastest"``: bf16 where it trains this model faster than fp32 on this machine, else fp32.

Whether bf16 pays on a CPU is not written in its flags: two CPUs with AVX-512 BF16 and no AMX train the same BiLM
at 0.61x and at 1.76x of fp32's pieces/s (BENCHMARKS.md). So the run asks the CPU: before the first step it
times the model, forward and backward, on the run's first batch in each precision, alternated, and trains in the
faster by the fastest pass of each (other work on the machine only ever adds time to a pass). A recipe whose
budget is wall-clock time ("fastest" is for those) then takes as many steps as this machine allows. On CUDA it
is "auto" (bf16 where supported); on a CPU without bf16 instructions fp32, without timing anything. The choice is
the checkpoint's ``provenance.precision`` and the resume file's, so a resumed run keeps it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable

import torch

from lstmtext.device import autocast_for, native_bf16, resolve_precision
from lstmtext.progress import note
from lstmtext.training.distributed import Dist, broadcast_bytes

REPEATS = 3  # timed passes per precision, after one warm-up each


def fastest(model: torch.nn.Module, batch: dict | None, device: torch.device, d: Dist) -> str:
    """fp32 or bf16 (the module docstring), timed on ``batch``, the run's first; rank 0 decides under torchrun,
    so every rank trains alike."""
    if device.type == "cuda":
        return resolve_precision(device, "auto")
    if not native_bf16():
        note("train.precision fastest: fp32 (this CPU has no bf16 instructions)")
        return "fp32"
    choice = None
    if d.main and batch is None:  # too few examples for a batch: the loop says so before any step
        choice = "fp32"
    elif d.main:
        times = time_model(model, batch, device)
        choice = faster(times)
        ms = ", ".join(f"{p} {min(s) * 1e3:.0f} ms" for p, s in times.items())
        note(f"train.precision fastest: {choice} (the first batch, forward and backward: {ms})")
    return broadcast_bytes(choice.encode() if choice else None, d).decode()


def faster(times: dict[str, list[float]]) -> str:
    """The precision with the fastest pass; fp32 on a tie (it is exact)."""
    return min(times, key=lambda p: (min(times[p]), p != "fp32"))


def time_model(model: torch.nn.Module, batch: dict, device: torch.device, clock: Callable = time.perf_counter):
    """{precision: seconds per forward and backward pass of a copy of ``model`` on ``batch``}. The copy and a
    forked RNG leave the run's model (and its carried state) and random stream as they were."""
    net = copy.deepcopy(model).to(device).train()
    times: dict[str, list[float]] = {"fp32": [], "bf16": []}
    with torch.random.fork_rng(devices=[]):
        for i in range(REPEATS + 1):
            for precision in times:
                autocast, _ = autocast_for(device, precision)
                start = clock()
                with autocast():
                    _, loss = net(batch)
                loss.backward()
                elapsed = clock() - start
                if i:  # the first pass of each warms up its kernels
                    times[precision].append(elapsed)
                net.zero_grad(set_to_none=True)
    return times
