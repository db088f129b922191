"""Attention decoder for translation: an LSTM over the target, attention over the encoder states.

Two ways to run it:
- fused (default): the whole target goes through ONE ``nn.LSTM`` call, then attention for every target
  position is computed in one batched matmul: far fewer, larger kernels than a loop over target steps.
- input feeding (Luong et al. 2015): the attentional state of step t-1 is part of the LSTM input at step t,
  which forces a Python loop over target positions. Optional (``input_feeding = true``).

The decoder starts from the encoder's final states (forward at the last token, backward at the first) through
a bridge. The target embedding is the encoder's embedding (one joint SentencePiece vocabulary), and the
output layer is tied to it too: the attentional state is projected to the embedding size and scored against
the embedding matrix. On small corpora such as Multi30k this three-way tying saves 2×V×E parameters and
regularises.

Decoding never recomputes a prefix: ``start`` builds a DecoderState, ``step`` advances it by one token,
carrying (h, c) (and the fed attentional state). Encoder memory stays at one row per sentence; the decoder
rows (beams) of a sentence are contiguous, so attention views them as (sentences, beams, ·) and the memory
is never copied per beam.

Attention weights: a state started with ``attention=True`` carries each step's weights over the source
(``weights``, (N, S), zero on padding) so a search can keep them along its chosen hypotheses; otherwise they are
dropped as soon as the step has used them. ``attention_weights`` gives the teacher-forced weights of whole
targets, to show or to check a decoded hypothesis against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lstmtext.dropout import Dropout
from lstmtext.encoder import final_states, lengths_to_mask
from lstmtext.heads import ATTENTIONS
from lstmtext.tokenizer import PAD


@dataclass
class DecoderState:
    h: torch.Tensor  # (L, N, Hd) one row per hypothesis
    c: torch.Tensor  # (L, N, Hd)
    feed: torch.Tensor | None  # (N, Hd) the previous attentional state (input feeding only)
    memory: torch.Tensor  # (B, S, 2H) encoder states, one row per sentence
    keys: torch.Tensor  # (B, S, Hd or A) memory projected once for scoring
    mask: torch.Tensor  # (B, S) True on real source tokens
    attention: bool = False  # keep each step's attention weights (only when asked: they cost a copy per step)
    weights: torch.Tensor | None = None  # (N, S) the last step's weights over the source, when kept


class Seq2SeqHead(nn.Module):
    def __init__(
        self,
        embedding: nn.Embedding,
        enc_dim: int,
        hidden_dim: int = 512,
        num_layers: int = 1,
        attention: str = "general",
        input_feeding: bool = False,
        dropout: float = 0.3,
        label_smoothing: float = 0.1,
    ):
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTIONS)}, not {attention!r}")
        if attention == "dot" and enc_dim != hidden_dim:
            raise ValueError(
                f"dot attention needs the decoder size ({hidden_dim}) to equal the encoder output ({enc_dim})"
            )
        self.tied_embeddings = (embedding,)  # the encoder's, not registered twice (heads/__init__.py)
        E = embedding.embedding_dim
        self.hidden_dim, self.num_layers = hidden_dim, num_layers
        self.attention, self.input_feeding = attention, input_feeding
        self.label_smoothing = label_smoothing
        self.dropout = Dropout(dropout)
        self.bridge = nn.Linear(enc_dim, 2 * num_layers * hidden_dim)
        if input_feeding:
            self.cells = nn.ModuleList(
                nn.LSTMCell((E + hidden_dim) if i == 0 else hidden_dim, hidden_dim) for i in range(num_layers)
            )
        else:
            self.rnn = nn.LSTM(E, hidden_dim, num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0)
        if attention == "general":
            self.key_proj = nn.Linear(enc_dim, hidden_dim, bias=False)
        elif attention == "bahdanau":
            self.key_proj = nn.Linear(enc_dim, hidden_dim, bias=False)
            self.query_proj = nn.Linear(hidden_dim, hidden_dim, bias=True)
            self.score_v = nn.Linear(hidden_dim, 1, bias=False)
        self.combine = nn.Linear(hidden_dim + enc_dim, hidden_dim, bias=False)
        self.out_proj = nn.Linear(hidden_dim, E)  # to the embedding space: the output layer is the embedding
        self.out_bias = nn.Parameter(torch.zeros(embedding.num_embeddings))

    @property
    def embed(self) -> nn.Embedding:
        return self.tied_embeddings[0]

    # -- pieces shared by training and decoding ---------------------------------------------------------
    def _init_hidden(self, memory: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        B, L, Hd = memory.size(0), self.num_layers, self.hidden_dim
        z = self.bridge(final_states(memory, lengths)).view(B, 2, L, Hd)  # (B, 2, L, Hd)
        h = torch.tanh(z[:, 0]).transpose(0, 1).contiguous()  # (L, B, Hd)
        c = z[:, 1].transpose(0, 1).contiguous()  # (L, B, Hd)
        return h, c

    def _keys(self, memory: torch.Tensor) -> torch.Tensor:
        return memory if self.attention == "dot" else self.key_proj(memory)  # (B, S, Hd)

    def _attend(
        self, query: torch.Tensor, keys: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query (B, U, Hd) over keys (B, S, ·) → attentional state (B, U, Hd) and the weights (B, U, S).
        Padding gets zero weight."""
        if self.attention == "bahdanau":
            q = self.query_proj(query)  # (B, U, Hd)
            scores = self.score_v(torch.tanh(q.unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)  # (B, U, S)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))  # (B, U, S)
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = scores.softmax(-1)  # (B, U, S)
        ctx = torch.bmm(weights, memory)  # (B, U, 2H)
        return torch.tanh(self.combine(torch.cat([query, ctx], dim=-1))), weights  # (B, U, Hd), (B, U, S)

    def _logits(self, att: torch.Tensor) -> torch.Tensor:
        return F.linear(self.out_proj(self.dropout(att)), self.embed.weight, self.out_bias)  # (…, V)

    def _cells(self, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, list, list]:
        """One step through the stacked cells: x (N, in) → output (N, Hd) and the new per-layer h, c."""
        hs, cs = [], []
        for i in range(self.num_layers):
            if self.input_feeding:
                cell = self.cells[i]
                hi, ci = cell(x, (h[i], c[i]))
            else:  # the fused nn.LSTM's own weights, one step at a time: an LSTM cell beats a 1-step nn.LSTM call
                r = self.rnn
                hi, ci = torch.lstm_cell(
                    x,
                    (h[i], c[i]),
                    getattr(r, f"weight_ih_l{i}"),
                    getattr(r, f"weight_hh_l{i}"),
                    getattr(r, f"bias_ih_l{i}"),
                    getattr(r, f"bias_hh_l{i}"),
                )
            hs.append(hi)
            cs.append(ci)
            x = self.dropout(hi) if i + 1 < self.num_layers else hi
        return x, hs, cs

    # -- training: teacher forcing ----------------------------------------------------------------------
    def _teacher(self, states: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The attentional states (B, U, Hd) and attention weights (B, U, S) of batch["tgt_in"], teacher-forced."""
        lengths = batch["lengths"]
        mask = lengths_to_mask(lengths.to(states.device), states.size(1))  # (B, S)
        keys = self._keys(states)
        h, c = self._init_hidden(states, lengths)
        emb = self.dropout(self.embed(batch["tgt_in"]))  # (B, U, E)
        if not self.input_feeding:
            out, _ = self.rnn(emb, (h, c))  # (B, U, Hd)
            return self._attend(out, keys, states, mask)
        B, U = emb.shape[:2]
        feed = emb.new_zeros(B, self.hidden_dim)
        h, c = list(h), list(c)
        outs, weights = [], []
        for t in range(U):
            out, h, c = self._cells(torch.cat([emb[:, t], feed], dim=-1), h, c)
            feed, w = self._attend(out.unsqueeze(1), keys, states, mask)
            feed = feed.squeeze(1)  # (B, Hd)
            outs.append(feed)
            weights.append(w.squeeze(1))
        return torch.stack(outs, dim=1), torch.stack(weights, dim=1)  # (B, U, Hd), (B, U, S)

    def forward(self, states: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """states (B, S, 2H); batch["tgt_in"] (B, U) = BOS + target → logits (B, U, V), loss vs batch["tgt_out"]."""
        att, _ = self._teacher(states, batch)
        logits = self._logits(att)  # (B, U, V)
        target = batch.get("tgt_out")
        loss = None
        if target is not None:
            loss = F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(),
                target.reshape(-1),
                ignore_index=PAD,
                label_smoothing=self.label_smoothing,
            )
        return logits, loss

    def attention_weights(self, states: torch.Tensor, batch: dict) -> torch.Tensor:
        """The teacher-forced attention weights (B, U, S) of batch["tgt_in"]: row u is the weights while
        predicting tgt_out[u] (the last real row predicts EOS)."""
        return self._teacher(states, batch)[1]

    # -- decoding: one token at a time, state carried ---------------------------------------------------
    def start(
        self, states: torch.Tensor, lengths: torch.Tensor, rows_per_sentence: int = 1, attention: bool = False
    ) -> DecoderState:
        """The state before the first target token, with ``rows_per_sentence`` hypotheses per sentence;
        ``attention`` keeps each step's weights in the state (``weights``)."""
        mask = lengths_to_mask(lengths.to(states.device), states.size(1))
        h, c = self._init_hidden(states, lengths)
        if rows_per_sentence > 1:
            h = h.repeat_interleave(rows_per_sentence, dim=1)  # (L, B*K, Hd)
            c = c.repeat_interleave(rows_per_sentence, dim=1)
        feed = h.new_zeros(h.size(1), self.hidden_dim) if self.input_feeding else None
        return DecoderState(h, c, feed, states, self._keys(states), mask, attention)

    def step(self, tokens: torch.Tensor, st: DecoderState) -> tuple[torch.Tensor, DecoderState]:
        """tokens (N,) → log-probabilities of the next token (N, V) and the advanced state."""
        x = self.embed(tokens)  # (N, E)
        if self.input_feeding:
            x = torch.cat([x, st.feed], dim=-1)
        out, hs, cs = self._cells(x, st.h, st.c)  # (N, Hd)
        B = st.memory.size(0)
        K = out.size(0) // B  # hypotheses per sentence; rows of one sentence are contiguous
        att, weights = self._attend(out.view(B, K, -1), st.keys, st.memory, st.mask)
        att = att.reshape(B * K, -1)  # (N, Hd)
        logp = self._logits(att).float().log_softmax(-1)  # (N, V)
        new = DecoderState(
            torch.stack(hs),
            torch.stack(cs),
            att if self.input_feeding else None,
            st.memory,
            st.keys,
            st.mask,
            st.attention,
            weights.reshape(B * K, -1).float() if st.attention else None,  # (N, S)
        )
        return logp, new

    @staticmethod
    def reorder(st: DecoderState, rows: torch.Tensor, sentences: torch.Tensor | None = None) -> DecoderState:
        """Keep hypothesis rows ``rows`` (N',) and, when some sentences are finished, only ``sentences``."""
        mem, keys, mask = st.memory, st.keys, st.mask
        if sentences is not None:
            mem, keys, mask = (
                mem.index_select(0, sentences),
                keys.index_select(0, sentences),
                mask.index_select(0, sentences),
            )
        feed = st.feed.index_select(0, rows) if st.feed is not None else None
        return DecoderState(st.h.index_select(1, rows), st.c.index_select(1, rows), feed, mem, keys, mask, st.attention)
