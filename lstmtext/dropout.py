"""Dropout whose mask is drawn from 16 random bits per element.

On CPU, torch's dropout draws its mask with ``bernoulli_``, one generator call per element, which costs more
than the rest of a dropout layer several times over and a fifth of a 1-layer BiLSTM encoder's training step.
Here one 64-bit draw serves four elements: each element keeps when its 16 bits clear a threshold, so the
probability of dropping is p rounded to a multiple of 2⁻¹⁶, and the kept values are scaled by the inverse of
the exact keep probability, so the expected output is the input. The draws come from torch's default
generator, so ``torch.manual_seed`` makes them repeat. On other devices torch's own fused dropout is as fast
and is used as is.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LEVELS = 1 << 16  # the 16-bit draw's values


def drop_count(p: float) -> int:
    """How many of the 2¹⁶ values of a 16-bit draw drop an element: p rounded to the draw's resolution."""
    return min(LEVELS, max(0, round(p * LEVELS)))


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """F.dropout(x, p, training): zero each element with probability p, scale the rest by 1 / (1 - p)."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu":
        return F.dropout(x, p, training=True)
    k = drop_count(p)
    if k == LEVELS:
        return x * 0.0
    n = x.numel()
    with torch.no_grad():
        # four int16 per int64, each uniform over [-2¹⁵, 2¹⁵): the full 64-bit range, so no piece is biased
        bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)
        keep = bits.view(torch.int16)[:n].view(x.shape) >= k - LEVELS // 2  # P(keep) = (2¹⁶ - k) / 2¹⁶
        scale = keep.to(x.dtype).mul_(LEVELS / (LEVELS - k))
    return x * scale


class Dropout(nn.Dropout):
    """nn.Dropout through ``dropout`` above; the same module otherwise (no state, the same repr)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
