"""Sequence classification: pool the encoder states over real tokens, then a small MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lstmtext.dropout import Dropout
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
            nn.Linear(pooled_dim, hidden_dim), nn.GELU(), Dropout(dropout), nn.Linear(hidden_dim, num_labels)
        )

    def attention_weights(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Attention pooling's weights (B, T): a softmax over the real tokens, zero on padding."""
        mask = lengths_to_mask(lengths.to(states.device), states.size(1))  # (B, T)
        return self.score(states).squeeze(-1).masked_fill(~mask, float("-inf")).softmax(dim=1)

    def pool(self, states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.pooling == "attention":
            return (self.attention_weights(states, lengths).unsqueeze(-1) * states).sum(dim=1)  # (B, D)
        # The masks stay (B, T) and reach (B, T, D) once each, through an add and a matmul: masked copies of the
        # states and amax's backward (compare, count, divide) cost more than the rest of the head. The max is a
        # max pool over T of the transposed view: max(dim=1) over a middle axis takes several times as long on
        # CPU, for the same values and the same gradient.
        mask = lengths_to_mask(lengths.to(states.device), states.size(1))  # (B, T)
        parts = []
        if self.pooling in ("max", "maxmean"):
            pad = torch.zeros(mask.shape, dtype=states.dtype, device=states.device).masked_fill_(~mask, float("-inf"))
            masked = (states + pad.unsqueeze(-1)).transpose(1, 2)  # (B, D, T), a view
            parts.append(F.adaptive_max_pool1d(masked, 1).squeeze(-1))  # (B, D)
        if self.pooling in ("mean", "maxmean"):
            weights = mask.to(states.dtype) / mask.sum(dim=1, keepdim=True).clamp(min=1)  # (B, T), rows sum to 1
            parts.append(torch.bmm(weights.unsqueeze(1), states).squeeze(1))  # (B, 1, T) @ (B, T, D) → (B, D)
        return torch.cat(parts, dim=-1)

    def forward(self, states: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.mlp(self.pool(states, batch["lengths"]))  # (B, L)
        labels = batch.get("labels")
        loss = F.cross_entropy(logits.float(), labels) if labels is not None else None
        return logits, loss
