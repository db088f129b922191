"""Bidirectional language model head: forward states predict the next piece, backward states the previous one.

The output layer is tied to the encoder's embedding (V, E): fewer parameters, and it regularises a small LM
well. When the encoder's H differs from E, a per-direction projection H → E comes first. The embedding is
held outside the module tree (``self.tied_embeddings``, heads/__init__.py), so the state dict stores it
once, under ``encoder.embed``.

``bidirectional=False`` makes it a forward LM only (the encoder then runs its forward stack alone): the half
of the compute that per-word perplexity and generation use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lstmtext.dropout import Dropout
from lstmtext.tokenizer import PAD


class LMHead(nn.Module):
    def __init__(self, embed: nn.Embedding, hidden_dim: int, dropout: float = 0.0, bidirectional: bool = True):
        super().__init__()
        self.tied_embeddings = (embed,)  # not a submodule: see the module docstring
        vocab_size, embed_dim = embed.weight.shape
        self.bidirectional = bidirectional
        if hidden_dim != embed_dim:
            self.proj_fwd = nn.Linear(hidden_dim, embed_dim)
            self.proj_bwd = nn.Linear(hidden_dim, embed_dim) if bidirectional else None
        else:
            self.proj_fwd = self.proj_bwd = None
        self.dropout = Dropout(dropout)
        self.bias = nn.Parameter(torch.zeros(vocab_size))
        self.hidden_dim = hidden_dim

    @property
    def weight(self) -> torch.Tensor:
        return self.tied_embeddings[0].weight

    def _logits(self, h: torch.Tensor, proj) -> torch.Tensor:
        if proj is not None:
            h = self.dropout(proj(h))
        return F.linear(h, self.weight, self.bias)  # (..., V)

    def forward_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Forward-stack states (..., H) → next-piece logits (..., V)."""
        return self._logits(h, self.proj_fwd)

    def backward_logits(self, h: torch.Tensor) -> torch.Tensor:
        """Backward-stack states (..., H) → previous-piece logits (..., V)."""
        return self._logits(h, self.proj_bwd)

    def forward(self, states: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """states (B, T, 2H) → (forward logits (B, T-1, V), loss = mean of both directions' per-piece NLL);
        states (B, T, H) and the forward NLL alone when not bidirectional.

        Position t's forward state predicts tokens[t+1]; its backward state predicts tokens[t-1]. Padding
        targets (id 0) are ignored.
        """
        H = self.hidden_dim
        tokens = batch["tokens"]
        fwd_logits = self.forward_logits(states[:, :-1, :H])  # (B, T-1, V)
        V = fwd_logits.size(-1)
        fwd_targets = tokens[:, 1:]  # (B, T-1)
        fwd_nll = F.cross_entropy(
            fwd_logits.float().reshape(-1, V), fwd_targets.reshape(-1), ignore_index=PAD, reduction="sum"
        )
        n_fwd = (fwd_targets != PAD).sum()
        if not self.bidirectional:
            return fwd_logits, fwd_nll / n_fwd.clamp(min=1)
        bwd_logits = self.backward_logits(states[:, 1:, H:])  # (B, T-1, V)
        bwd_targets = tokens[:, :-1]  # (B, T-1)
        # The backward state at t must not predict tokens[t-1] when t is padding (its reversed read began
        # past the real tokens); padding positions hold PAD, so masking targets at padded t is enough.
        bwd_targets = bwd_targets.masked_fill(tokens[:, 1:] == PAD, PAD)
        bwd_nll = F.cross_entropy(
            bwd_logits.float().reshape(-1, V), bwd_targets.reshape(-1), ignore_index=PAD, reduction="sum"
        )
        n_bwd = (bwd_targets != PAD).sum()
        loss = 0.5 * (fwd_nll / n_fwd.clamp(min=1) + bwd_nll / n_bwd.clamp(min=1))
        return fwd_logits, loss

    def sampled_loss(self, states: torch.Tensor, tokens: torch.Tensor, rate: float) -> torch.Tensor:
        """The loss of ``forward`` (the mean of both directions' per-piece NLL) on a random ``rate`` share of
        the positions only: an auxiliary objective beside another task's (heads/tag.py) at ``rate`` of the
        softmax's cost, which at a 4k vocabulary rivals the encoder's. states (B, T, 2H), tokens (B, T)."""
        H = self.hidden_dim
        fwd_targets = tokens[:, 1:]  # (B, T-1): what the forward state at t predicts
        sides = [(states[:, :-1, :H], fwd_targets, self.forward_logits)]
        if self.bidirectional:
            bwd_targets = tokens[:, :-1].masked_fill(tokens[:, 1:] == PAD, PAD)  # as in forward
            sides.append((states[:, 1:, H:], bwd_targets, self.backward_logits))
        losses = []
        for h, targets, logits_of in sides:
            pick = (targets != PAD) & (torch.rand(targets.shape, device=targets.device) < rate)  # (B, T-1)
            if pick.any():
                losses.append(F.cross_entropy(logits_of(h[pick]).float(), targets[pick]))  # h[pick]: (N, H)
        return torch.stack(losses).mean() if losses else states.new_zeros((), dtype=torch.float32)
