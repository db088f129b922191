"""Truncated BPTT for the language model (``lm.carry_state = true``): the forward stack starts each row of a training
batch from the state the previous batch's same row ended in, as PyTorch's word_language_model and AWD-LSTM train.

Two parts. ``carry_batches`` lays an epoch's windows out in text order: the windows are dealt into contiguous runs,
one per row, and step j takes the j-th window of every run, so row b of step j + 1 is the window after row b of
step j. ``CarryLM`` keeps the forward stack's final state (detached) with the stream position each row's next
window must start at, and takes a row's state only when its window starts there; any other row starts from
zeros. A batch that does not continue the last one (the first of an epoch, one after a resume, the last short
run) therefore starts blank rather than wrong, and evaluation between steps, which reads through
``forward_stack`` on its own, leaves the carried state alone. The resume file keeps the carried state
(``step_state``), so a resumed run continues exactly; under torchrun it holds rank 0's, and the other ranks'
rows, which do not continue rank 0's windows, start their first batch after a resume blank.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from lstmtext.model import Model


def carry_batches(n_windows: int, rows: int, world: int = 1) -> list[np.ndarray]:
    """An epoch's batches of window indices in text order: with ``world`` processes (torchrun), the windows are
    first cut into ``world`` contiguous parts of one size (the last ``n_windows % world`` windows, fewer than
    ``world``, are left out) and the parts' steps interleaved, so that each process's share (every world-th
    batch from its rank on) is a stream of its own."""
    from lstmtext.tasks.lm import stream_rows

    size = n_windows // world
    plan = stream_rows(size, rows)
    return [np.asarray(step) + p * size for step in plan for p in range(world)]


class CarryLM(Model):
    """Model(encoder, head) whose training steps carry the forward stack's state between batches (see above)."""

    def __init__(self, encoder, head):
        super().__init__(encoder, head)
        self._carry = None  # (final state of the last training batch, detached; where each row's next window starts)

    def forward(self, batch: dict):
        if not (self.training and "starts" in batch):
            return super().forward(batch)
        enc, tokens, lengths, starts = self.encoder, batch["tokens"], batch["lengths"], batch["starts"]
        x = enc.embed_dropout(enc.embed(tokens))  # (B, T, E)
        # A window's last piece opens the next window, so the state carried on is the one before it.
        out, hx = enc.forward_stack(x[:, :-1], self._carried(starts))  # (B, T-1, H)
        hx = tuple(h.detach() for h in hx) if isinstance(hx, tuple) else hx.detach()
        self._carry = (hx, starts + lengths.to(starts.device) - 1)
        states = F.pad(out, (0, 0, 0, 1))  # (B, T, H): the last position predicts nothing forward
        if enc.run_backward:
            states = torch.cat([states, enc.backward_stack(x, lengths)], dim=-1)  # (B, T, 2H)
        return self.head(enc.out_dropout(states), batch)

    def step_state(self) -> dict[str, torch.Tensor]:
        """The carried state, for the resume file ({} before the first step)."""
        if self._carry is None:
            return {}
        hx, want = self._carry
        hx = hx if isinstance(hx, tuple) else (hx,)
        return {"starts": want, **{f"state{k}": h for k, h in enumerate(hx)}}

    def restore_step_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "starts" not in tensors:
            return
        hx = tuple(tensors[f"state{k}"] for k in range(2) if f"state{k}" in tensors)
        self._carry = (hx if len(hx) == 2 else hx[0], tensors["starts"])

    def _carried(self, starts: torch.Tensor):
        """The state each row starts from: the last batch's same row where this window continues it, else zeros
        (None when no row continues)."""
        if self._carry is None:
            return None
        hx, want = self._carry
        m = min(len(starts), len(want))
        keep = torch.zeros(len(starts), dtype=torch.bool, device=starts.device)
        keep[:m] = starts[:m] == want[:m]
        if not bool(keep.any()):
            return None

        def fit(h: torch.Tensor) -> torch.Tensor:  # (L, B', H) → (L, B, H), zeros on the rows that start afresh
            out = h.new_zeros(h.shape[0], len(starts), h.shape[2])
            out[:, :m] = h[:, :m]
            return out * keep.view(1, -1, 1).to(h.dtype)

        return tuple(fit(h) for h in hx) if isinstance(hx, tuple) else fit(hx)
