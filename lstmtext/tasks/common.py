"""Pieces that several tasks share: padding, batched inference over features (in parallel threads on a CPU),
classification metrics. Torch is imported inside the functions that use it, so an exported model (which runs
without torch) can still use the metrics."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, TypeVar

from lstmtext.data import bucket_batches
from lstmtext.tokenizer import PAD

if TYPE_CHECKING:
    import numpy as np
    import torch

T = TypeVar("T")


def pad_ids(seqs, value: int = PAD) -> np.ndarray:
    """Right-pad id sequences (lists or arrays) to one (B, T) int64 array."""
    import numpy as np

    out = np.full((len(seqs), max(1, max(map(len, seqs), default=1))), value, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def pad(seqs, value: int = PAD) -> torch.Tensor:
    """Right-pad id sequences (lists or arrays) to one (B, T) tensor."""
    import torch

    return torch.from_numpy(pad_ids(seqs, value))


def to_device(batch: dict, device) -> dict:
    import torch

    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def inference_workers(device, n_batches: int) -> int:
    """How many threads map_batches runs: one per intra-op thread on a CPU, never more than the batches."""
    import torch

    if torch.device(device).type != "cpu":
        return 1
    return max(1, min(torch.get_num_threads(), n_batches))


def length_groups(features: list[dict], batch_tokens: int, max_batch_size: int = 256) -> list[list[int]]:
    """Index lists of length-bucketed batches of the features (sorted by length: the order that wastes least
    on padding)."""
    lengths = [f["length"] for f in features]
    return [g.tolist() for g in bucket_batches(lengths, batch_tokens, max_batch_size, shuffle=False)]


def in_threads(fn: Callable[[list[dict]], T], features: list[dict], groups: list[list[int]], n: int):
    """[(indices, fn(those features))] for each group, in order; n groups side by side in threads (each thread
    takes the next group as it finishes one), or one at a time for n = 1. Torch-free: an exported model's
    batches (onnxruntime releases the GIL) go through it as the torch model's do."""

    def one(idx: list[int]) -> tuple[list[int], T]:
        return idx, fn([features[i] for i in idx])

    n = max(1, min(n, len(groups)))
    if n == 1:
        return [one(idx) for idx in groups]
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, groups))


def map_batches(
    fn: Callable[[dict], T],
    features: list[dict],
    collate: Callable,
    batch_tokens: int,
    device,
    max_batch_size: int = 256,
    workers: int | None = None,
) -> list[tuple[list[int], T]]:
    """[(indices, fn(batch))] over length-bucketed batches of the features (``length_groups``), in that order,
    under inference_mode.

    On a CPU with n intra-op threads, n threads each take whole batches and run them on one intra-op
    thread: an LSTM steps through time with GEMMs too small to split well between cores, so whole batches
    side by side keep the cores busier (benchmarks/bench_ner.py --only batching measures it against one
    batch at a time). workers=1 runs one batch at a time; None picks inference_workers. The intra-op thread
    count is set to 1 for the call and restored after, so a program that calls this from several threads at
    once should pass workers=1. The caller's autocast (bf16) is carried into the threads, which do not inherit
    it."""
    import torch

    groups = length_groups(features, batch_tokens, max_batch_size)
    dev = torch.device(device)
    autocast = dev.type in ("cpu", "cuda") and torch.is_autocast_enabled(dev.type)
    dtype = torch.get_autocast_dtype(dev.type) if autocast else None

    def run(batch: list[dict]) -> T:
        with torch.inference_mode(), torch.autocast(dev.type, dtype=dtype, enabled=autocast):
            return fn(to_device(collate(batch), device))

    n = inference_workers(device, len(groups)) if workers is None else max(1, min(workers, len(groups)))
    if n == 1:
        return in_threads(run, features, groups, 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return in_threads(run, features, groups, n)
    finally:
        torch.set_num_threads(threads)


def classification_metrics(gold: list[int], pred: list[int], labels: list[str]) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1/support and the confusion matrix (rows gold, columns predicted)."""
    n = len(labels)
    cm = [[0] * n for _ in range(n)]
    for g, p in zip(gold, pred):
        cm[g][p] += 1
    per_class = {}
    f1s = []
    for i, name in enumerate(labels):
        tp = cm[i][i]
        predicted = sum(cm[r][i] for r in range(n))
        support = sum(cm[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[name] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
        if support:
            f1s.append(f1)
    total = len(gold)
    return {
        "accuracy": sum(cm[i][i] for i in range(n)) / total if total else 0.0,
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
        "examples": total,
        "per_class": per_class,
        "labels": list(labels),
        "confusion": cm,
    }


LENGTH_EDGES = (5, 10, 15, 20, 30, 40, 60)  # upper ends (inclusive) of the length buckets; longer ones share the last


def length_buckets(lengths: list[int], edges: tuple[int, ...] = LENGTH_EDGES) -> list[tuple[str, list[int]]]:
    """The indices of ``lengths`` grouped into buckets ("1-5", "6-10", ..., "61+"), shortest first; empty
    buckets are left out."""
    names = [f"{lo + 1}-{hi}" for lo, hi in zip((0, *edges), edges)] + [f"{edges[-1] + 1}+"]
    groups: list[list[int]] = [[] for _ in names]
    for i, n in enumerate(lengths):
        groups[next((k for k, hi in enumerate(edges) if n <= hi), len(edges))].append(i)
    return [(name, idx) for name, idx in zip(names, groups) if idx]
