"""The shared encoder: embedding → a forward RNN stack and a separate backward RNN stack.

Why two stacks rather than ``nn.LSTM(bidirectional=True)``: with more than one layer the built-in
bidirectional LSTM feeds both directions into layer 2, so forward states would see the future and the
encoder could not be trained as a language model. Kept apart (as in ELMo), one encoder serves all heads.

Batches are padded, not packed: a packed sequence leaves the fused oneDNN LSTM kernels, and length bucketing
already keeps padding small. The forward stack ignores padding because padding comes after the last real token.
The backward stack reads each sequence reversed within its own length, so it too starts on a real token and
padding only ever comes after; the result is exactly what each sentence would get alone. The one packed run is
``forward_stack`` with lengths, where only each prompt's final state is wanted.

``weight_drop`` is AWD-LSTM's DropConnect (Merity et al. 2017): in training each step draws one mask over the
recurrent (hidden-to-hidden) matrices, shared by every position of the batch, so the recurrence is regularised
without touching the fused kernel: the stack runs once with the masked matrices put in place of its own.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence

from lstmtext.dropout import Dropout, dropout


def take_rows(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, T, …), idx (B, K) positions into T → (B, K, …): row idx[b, k] of sequence b.

    One index_select over the flattened rows, because a gather with the index expanded over the feature axis
    reads an int64 index per element rather than one per row."""
    B, T = x.shape[0], x.shape[1]
    rows = idx.to(x.device) + torch.arange(B, device=x.device).unsqueeze(1) * T  # (B, K)
    return x.reshape(B * T, *x.shape[2:]).index_select(0, rows.reshape(-1)).view(B, idx.shape[1], *x.shape[2:])


def reversal_index(lengths: torch.Tensor, T: int, device) -> torch.Tensor:
    """(B, T) positions that reverse each sequence inside its own length (padding stays); its own inverse."""
    t = torch.arange(T, device=device).unsqueeze(0)  # (1, T)
    lengths = lengths.to(device).unsqueeze(1)  # (B, 1)
    return torch.where(t < lengths, lengths - 1 - t, t)  # (B, T)


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse x (B, T, …) along T inside each sequence's own length; padding positions stay where they are."""
    return take_rows(x, reversal_index(lengths, x.shape[1], x.device))


class Encoder(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 256,
        hidden_dim: int = 256,
        num_layers: int = 1,
        cell: str = "lstm",
        embed_dropout: float = 0.1,
        dropout: float = 0.3,
        pad_id: int = 0,
        backward: bool = True,
        weight_drop: float = 0.0,
    ):
        super().__init__()
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell]
        self.cell = cell
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=pad_id)
        self.embed_dropout = Dropout(embed_dropout)
        layer_dropout = dropout if num_layers > 1 else 0.0
        self.fwd = rnn(embed_dim, hidden_dim, num_layers, batch_first=True, dropout=layer_dropout)
        self.bwd = rnn(embed_dim, hidden_dim, num_layers, batch_first=True, dropout=layer_dropout)
        self.out_dropout = Dropout(dropout)
        self.weight_drop = weight_drop
        # False runs only the forward stack (a forward-only LM: half the compute). The backward stack's
        # weights stay, so the checkpoint still fits every task's encoder; they are frozen, since no loss
        # reaches them (and DDP refuses parameters that get no gradient).
        self.run_backward = backward
        self.bwd.requires_grad_(backward)
        nn.init.normal_(self.embed.weight, std=embed_dim**-0.5)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()

    @property
    def output_dim(self) -> int:
        return (2 if self.run_backward else 1) * self.hidden_dim

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, T), lengths (B,) → states (B, T, 2H): forward stack in [..., :H], backward in [..., H:]
        ((B, T, H), the forward stack alone, when built with backward=False)."""
        x = self.embed_dropout(self.embed(tokens))  # (B, T, E)
        fwd_out, _ = self.forward_stack(x)  # (B, T, H)
        if not self.run_backward:
            return self.out_dropout(fwd_out)
        bwd_out = self.backward_stack(x, lengths)  # (B, T, H)
        return self.out_dropout(torch.cat([fwd_out, bwd_out], dim=-1))  # (B, T, 2H)

    # The pieces of forward() that a language model also runs on their own: reading a stream with the state
    # carried between calls (evaluation), a prompt then one piece at a time (generation). No dropout here.
    def forward_stack(self, x: torch.Tensor, hx=None, lengths: torch.Tensor | None = None):
        """Embedded input x (B, T, E) from state hx (None = zeros) → (states (B, T, H), final state).

        With lengths, the final state is each sequence's own, after its last real token (the run is
        packed), and no states are returned (None): a prompt needs only where it ends."""
        if lengths is None:
            return self._run(self.fwd, x, hx)
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        return None, self.fwd(packed, hx)[1]

    def backward_stack(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Embedded input x (B, T, E) → backward states (B, T, H), position t having read t … length-1."""
        idx = reversal_index(lengths, x.shape[1], x.device)  # (B, T), undoes itself
        rev, _ = self._run(self.bwd, take_rows(x, idx))  # (B, T, H), each sequence reversed
        return take_rows(rev, idx)

    def _run(self, rnn: nn.Module, x: torch.Tensor, hx=None):
        """rnn(x, hx), with its recurrent matrices weight-dropped when training with weight_drop > 0."""
        if not (self.training and self.weight_drop > 0):
            return rnn(x, hx)
        dropped = {}
        for k in range(rnn.num_layers):
            name = f"weight_hh_l{k}"
            dropped[name] = dropout(getattr(rnn, name), self.weight_drop)
        return functional_call(rnn, dropped, (x, hx))

    def forward_cells(self) -> list[nn.Module]:
        """LSTMCell/GRUCell views of the forward stack's weights (shared, not copied), one per layer: for
        one-token steps a cell call has less per-call overhead than a one-step nn.LSTM call."""
        cls = nn.LSTMCell if self.cell == "lstm" else nn.GRUCell
        cells = []
        for k in range(self.num_layers):
            cell = cls(self.fwd.input_size if k == 0 else self.hidden_dim, self.hidden_dim)
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                setattr(cell, name, getattr(self.fwd, f"{name}_l{k}"))
            cells.append(cell)
        return cells


def final_states(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each direction's state after reading the whole sequence: forward at length-1, backward at 0 → (B, 2H)."""
    H = states.size(-1) // 2
    last = (lengths.to(states.device) - 1).clamp(min=0).view(-1, 1)  # (B, 1)
    fwd = take_rows(states, last)[:, 0, :H]  # (B, H)
    return torch.cat([fwd, states[:, 0, H:]], dim=-1)  # (B, 2H)


def lengths_to_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B,) → (B, T) bool, True on real tokens."""
    return torch.arange(T, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
