"""Sampling shared by every decoder (the LM's ``generate``, translation's sampling): plain functions over logits.

``filter_logits`` applies temperature, top-k and top-p (nucleus) to a (B, V) batch of logits; ``sample``
draws one id per row from a seeded ``torch.Generator``, so the same seed gives the same text. Temperature 0
means greedy (argmax), which needs no generator at all. Batched beam search lives in lstmtext/beam.py.
"""

from __future__ import annotations

import torch

from lstmtext.errors import UsageError


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    """The user-facing rules, one clear line each (the CLI turns them into exit code 2)."""
    if temperature != temperature or temperature < 0:  # NaN fails the first test
        raise UsageError(f"--temperature {temperature}: expected 0 (greedy) or a positive number")
    if top_k < 0:
        raise UsageError(f"--top-k {top_k}: expected 0 (off) or a positive number of candidates")
    if not (0 < top_p <= 1):
        raise UsageError(f"--top-p {top_p}: expected a probability mass in (0, 1]; 1 turns it off")


def make_generator(seed: int | None, device="cpu") -> torch.Generator:
    """A generator of its own, so sampling neither reads nor disturbs the global RNG (None = a fresh seed)."""
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value kept too); the rest become -inf."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely ids whose probability reaches p (always at least the best one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    # Drop an id when the mass before it already reaches p; the best id always has zero mass before it.
    drop_sorted = (cum - sorted_logits.softmax(dim=-1)) >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature, then top-k, then top-p, on (B, V) logits. Temperature 0 is handled by ``sample`` (argmax)."""
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    return top_p_filter(top_k_filter(logits, top_k), top_p)


def sample(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One id per row of (B, V) logits → (B,). Temperature 0 = greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
