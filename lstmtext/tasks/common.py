"""Pieces that several tasks share: padding, batched inference over features, classification metrics."""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from lstmtext.data import bucket_batches
from lstmtext.tokenizer import PAD


def pad(seqs: list[list[int]], value: int = PAD) -> torch.Tensor:
    """Right-pad lists of ids to one (B, T) tensor."""
    T = max(1, max((len(s) for s in seqs), default=1))
    out = torch.full((len(seqs), T), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            out[i, : len(s)] = torch.as_tensor(s, dtype=torch.long)
    return out


def to_device(batch: dict, device) -> dict:
    return {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}


def inference_batches(
    features: list[dict], collate: Callable, batch_tokens: int, device, max_batch_size: int = 256
) -> Iterator[tuple[list[int], dict]]:
    """(indices, batch) over features sorted by length: the order that wastes least on padding."""
    lengths = [f["length"] for f in features]
    for idx in bucket_batches(lengths, batch_tokens, max_batch_size, shuffle=False):
        yield idx, to_device(collate([features[i] for i in idx]), device)


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
