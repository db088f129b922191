"""The one model shape every task shares: Model(Encoder(...), Head(...)); ``model(batch)`` → (logits, loss)."""

from __future__ import annotations

from torch import nn

from lstmtext.config import EncoderConfig
from lstmtext.encoder import Encoder


class Model(nn.Module):
    def __init__(self, encoder: Encoder, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, batch: dict):
        states = self.encoder(batch["tokens"], batch["lengths"])  # (B, T, 2H)
        return self.head(states, batch)

    def step_state(self) -> dict:
        """Tensors beyond the weights that one training step hands the next (the resume file keeps them so a
        resumed run continues exactly): none here; tasks/lm_carry.CarryLM's carried state."""
        return {}

    def restore_step_state(self, tensors: dict) -> None:
        """Put back what ``step_state`` gave."""


def build_encoder(cfg: EncoderConfig, vocab_size: int, backward: bool = True) -> Encoder:
    return Encoder(
        vocab_size,
        embed_dim=cfg.embed_dim,
        hidden_dim=cfg.hidden_dim,
        num_layers=cfg.num_layers,
        cell=cfg.cell,
        embed_dropout=cfg.embed_dropout,
        dropout=cfg.dropout,
        backward=backward,
        weight_drop=cfg.weight_drop,
    )
