"""Sequence classification: pool the encoder states over real tokens, then a small MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lstmtext.encoder import lengths_to_mask
from lstmtext.heads import POOLINGS


class ClassifyHead(nn.Module):
    def __init__(
        self, input_dim: int, num_labels: int, hidden_dim: int = 256, dropout: float = 0.3, pooling: str = "maxmean"
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, not {pooling!r}")
        self.pooling = pooling
        pooled_dim = 2 * input_dim if pooling == "maxmean" else input_dim
        if pooling == "attention":
            self.score = nn.Linear(input_dim, 1)
        self.mlp = nn.Sequential(
            nn.Linear(pooled_dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, num_labels)
        )

    def attention_weights(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Attention pooling's weights (B, T): a softmax over the real tokens, zero on padding."""
        mask = lengths_to_mask(lengths.to(states.device), states.size(1))  # (B, T)
        return self.score(states).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(dim=1)

    def pool(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.pooling == "attention":
            return (self.attention_weights(states, lengths).unsqueeze(-1) * states).sum(dim=1)  # (B, D)
        mask = lengths_to_mask(lengths.to(states.device), states.size(1)).unsqueeze(-1)  # (B, T, 1)
        parts = []
        if self.pooling in ("max", "maxmean"):
            parts.append(states.masked_fill(~mask, float("-inf")).amax(dim=1))  # (B, D)
        if self.pooling in ("mean", "maxmean"):
            denom = mask.sum(dim=1).clamp(min=1).to(states.dtype)  # (B, 1)
            parts.append((states * mask).sum(dim=1) / denom)  # (B, D)
        return torch.cat(parts, dim=-1)

    def forward(self, states: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.mlp(self.pool(states, batch["lengths"]))  # (B, L)
        labels = batch.get("labels")
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return logits, loss
