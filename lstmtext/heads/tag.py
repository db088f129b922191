"""Sequence tagging: each word's state (from its first piece, or its span: see TagHead) → optionally a
word-level BiLSTM → linear → a linear-chain CRF over BIO tags (or BIOES ones, turned back into BIO).

The CRF's transitions that would make an invalid sequence (in BIO: I-X at the start, I-X after O or after a
tag of another type; in BIOES also an entity left open) are replaced by a constant before every use, so no
gradient reaches them and they can never be learned back: Viterbi decoding therefore never emits such a
sequence. Both the forward algorithm (for the loss) and Viterbi are vectorised over the batch and loop over
time only.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmtext.dropout import Dropout
from lstmtext.encoder import lengths_to_mask, take_rows
from lstmtext.heads import WORD_STATES, bio_ids, bioes_labels
from lstmtext.heads import allowed_moves as moves

NUM_SHAPES = 9  # word shape classes of tasks/ner.py word_shape, 0 being padding
NUM_BYTES = 257  # a word's UTF-8 bytes as ids 1 … 256 (tasks/ner_data.py word_bytes), 0 being padding

# Finite in the loss (so an all-masked row never turns into NaN), -inf in Viterbi (so it is never chosen).
FORBIDDEN = -1e4


def allowed_moves(labels: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(allowed transitions (L, L) from → to, allowed first tags (L,), allowed last tags (L,)) as bool tensors
    (heads/__init__.py allowed_moves says which)."""
    return tuple(torch.tensor(m, dtype=torch.bool) for m in moves(labels))


class CRF(nn.Module):
    def __init__(self, labels: list[str]):
        super().__init__()
        L = len(labels)
        self.num_labels = L
        self.transitions = nn.Parameter(torch.zeros(L, L))  # [from, to]
        self.start = nn.Parameter(torch.zeros(L))
        self.end = nn.Parameter(torch.zeros(L))
        allowed, start_allowed, end_allowed = allowed_moves(labels)
        # Derived from the label names, so not stored in the checkpoint.
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("start_allowed", start_allowed, persistent=False)
        self.register_buffer("end_allowed", end_allowed, persistent=False)

    def _scores(self, forbidden: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        trans = self.transitions.masked_fill(~self.allowed, forbidden)  # (L, L)
        start = self.start.masked_fill(~self.start_allowed, forbidden)  # (L,)
        end = self.end.masked_fill(~self.end_allowed, forbidden)  # (L,)
        return trans, start, end

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per sequence. emissions (B, W, L), tags (B, W), mask (B, W) bool."""
        scores = self._scores(FORBIDDEN)
        return (self._log_partition(emissions, mask, *scores) - self._gold_score(emissions, tags, mask, *scores)).mean()

    def _log_partition(self, em, mask, trans, start, end) -> torch.Tensor:
        alpha = start + em[:, 0]  # (B, L)
        for t in range(1, em.size(1)):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + em[:, t]  # (B, L_from, L_to) → (B, L)
            alpha = torch.where(mask[:, t : t + 1], nxt, alpha)
        return torch.logsumexp(alpha + end, dim=1)  # (B,)

    def _gold_score(self, em, tags, mask, trans, start, end) -> torch.Tensor:
        m = mask.to(em.dtype)
        emit = em.gather(2, tags.unsqueeze(2)).squeeze(2)  # (B, W)
        score = start[tags[:, 0]] + (emit * m).sum(1)
        if tags.size(1) > 1:
            score = score + (trans[tags[:, :-1], tags[:, 1:]] * m[:, 1:]).sum(1)
        last = (mask.sum(1) - 1).clamp(min=0)
        last_tags = tags.gather(1, last.unsqueeze(1)).squeeze(1)  # (B,)
        return score + end[last_tags]

    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Batched Viterbi: the best valid tag sequence (B, W); positions past each length repeat its last tag."""
        trans, start, end = self._scores(float("-inf"))
        em = emissions.float()
        B, W, L = em.shape
        score = start + em[:, 0]  # (B, L)
        keep = torch.arange(L, device=em.device).expand(B, L)  # backpointer that leaves padding unchanged
        pointers = []
        for t in range(1, W):
            best, ptr = (score.unsqueeze(2) + trans).max(dim=1)  # (B, L_from, L_to) → (B, L)
            m = mask[:, t : t + 1]
            score = torch.where(m, best + em[:, t], score)
            pointers.append(torch.where(m, ptr, keep))
        last = (score + end).argmax(-1)  # (B,)
        path = [last]
        for ptr in reversed(pointers):
            last = ptr.gather(1, last.unsqueeze(1)).squeeze(1)
            path.append(last)
        path.reverse()
        return torch.stack(path, dim=1)  # (B, W)


class TagHead(nn.Module):
    """word_state picks the state that stands for a word of several pieces:
    - "first": both directions at the word's first piece. The forward stack there has read only that piece.
    - "span": the forward stack at the word's last piece and the backward stack at its first, so each
      direction has read the whole word plus its own side of the context (as Flair takes word states from
      character LMs). Same size, same cost; it matters most for an encoder pretrained as a language model.

    word_hidden > 0 runs a BiLSTM of that width per direction over the word states before the projection.
    An encoder pretrained as a language model keeps its two directions apart, so without it a tag is a linear
    function of what each direction read alone; the word BiLSTM mixes them and reads the neighbouring words'
    states, as the task BiLSTM does over ELMo's features (Peters et al. 2018).

    shape_dim > 0 puts an embedding of each word's shape class (tasks/ner.py word_shape) beside its state, as
    the spelling features of Huang et al. (2015): subword pieces learned on running text say little about
    ALL-CAPS headlines, and the shape is a strong cue for names the training data never showed.

    char_dim > 0 reads each word's bytes with a character BiLSTM (char_hidden per direction) and puts its two
    final states beside the word's state (Lample et al. 2016): the forward one has read the whole word ending in
    its suffix, the backward one the whole word ending in its prefix. Pieces cut a rare name into fragments
    the encoder may have seen in other words; the characters see the name's own spelling.

    word_dropout > 0 zeroes whole words' states in training (as Flair's word dropout; no rescaling), so the
    word BiLSTM learns to tag a word from its neighbours too: what it must do for names never seen in training.

    lm (an LMHead on the same encoder) with lm_weight > 0 adds, in training only, its loss on a random lm_rate
    share of the pieces to the CRF's: the encoder keeps predicting the next and previous piece while it learns
    the tags, as in Rei (2017). Fine-tuning an encoder pretrained as a language model on 200k words of tags
    otherwise drifts away from what it learned on running text. Tagging never runs it.

    scheme "bioes": the CRF tags an entity's last word E-X and a one-word entity S-X (Ratinov & Roth 2009), so
    where an entity ends is scored, not only where it begins. Tags in and out stay BIO (labels): gold BIO ids
    become BIOES for the loss, and decoded paths become BIO again.
    """

    def __init__(
        self,
        input_dim: int,
        labels: list[str],
        dropout: float = 0.3,
        word_state: str = "first",
        word_hidden: int = 0,
        shape_dim: int = 0,
        char_dim: int = 0,
        char_hidden: int = 25,
        word_dropout: float = 0.0,
        scheme: str = "bio",
        lm: nn.Module | None = None,
        lm_weight: float = 0.0,
        lm_rate: float = 1.0,
    ):
        super().__init__()
        self.lm = lm
        self.lm_weight = lm_weight
        self.lm_rate = lm_rate
        if word_state not in WORD_STATES:
            raise ValueError(f"word_state must be one of {', '.join(WORD_STATES)}, not {word_state!r}")
        if scheme not in ("bio", "bioes"):
            raise ValueError(f"scheme must be bio or bioes, not {scheme!r}")
        self.word_state = word_state
        self.dropout = Dropout(dropout)
        self.word_dropout = word_dropout
        self.shape_embed = nn.Embedding(NUM_SHAPES, shape_dim, padding_idx=0) if shape_dim else None
        input_dim += shape_dim
        self.char_embed = nn.Embedding(NUM_BYTES, char_dim, padding_idx=0) if char_dim else None
        self.char_lstm = nn.LSTM(char_dim, char_hidden, batch_first=True, bidirectional=True) if char_dim else None
        input_dim += 2 * char_hidden if char_dim else 0
        self.word_lstm = nn.LSTM(input_dim, word_hidden, batch_first=True, bidirectional=True) if word_hidden else None
        crf_labels = bioes_labels(labels) if scheme == "bioes" else list(labels)
        self.proj = nn.Linear(2 * word_hidden if word_hidden else input_dim, len(crf_labels))
        self.crf = CRF(crf_labels)
        self.bioes = scheme == "bioes"
        if self.bioes:
            bio = {t: i for i, t in enumerate(labels)}
            crf = {t: i for i, t in enumerate(crf_labels)}
            kind = [t[2:] for t in labels]
            # per BIO id: the id of the I- that would continue it (-1: none), its BIOES id when the next word
            # continues it (B-X, I-X) and when not (S-X, E-X); per BIOES id: its BIO id. Not stored: derived.
            ended = {"O": "O", "B": "S", "I": "E"}  # what B-X / I-X become when the entity stops there
            tables = {
                "_continued_by": [bio.get(f"I-{k}", -1) if t != "O" else -1 for t, k in zip(labels, kind)],
                "_when_continued": [crf[t] for t in labels],
                "_when_ended": [crf[t if t == "O" else f"{ended[t[0]]}-{k}"] for t, k in zip(labels, kind)],
                "_to_bio": bio_ids(crf_labels, labels),
            }
            for name, values in tables.items():
                self.register_buffer(name, torch.tensor(values), persistent=False)

    def emissions(
        self,
        states: torch.Tensor,
        first: torch.Tensor,
        last: torch.Tensor | None = None,
        word_lengths: torch.Tensor | None = None,
        shape: torch.Tensor | None = None,
        chars: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """states (B, T, D), each word's first- and last-piece index (B, W), words per sentence (B,), word shape
        classes (B, W), each word's byte ids (B, W, C) → per-word tag scores (B, W, L)."""
        if self.word_state == "span":
            # one select over half-rows: forward half (2t) at the last piece, backward half (2t+1) at the first
            B, T, D = states.shape
            halves = torch.stack([2 * last.to(states.device), 2 * first.to(states.device) + 1], dim=-1)  # (B, W, 2)
            words = take_rows(states.reshape(B, 2 * T, D // 2), halves.flatten(1)).reshape(B, -1, D)  # (B, W, D)
        else:
            words = take_rows(states, first)  # (B, W, D)
        if self.training and self.word_dropout > 0:
            keep = torch.rand(words.shape[:2], device=words.device) >= self.word_dropout  # (B, W)
            words = words * keep.unsqueeze(-1).to(words.dtype)
        if self.shape_embed is not None:
            shapes = self.shape_embed(shape.to(states.device)).to(words.dtype)  # (B, W, S)
            words = torch.cat([words, shapes], dim=-1)  # (B, W, D + S)
        if self.char_lstm is not None:
            words = torch.cat([words, self.spellings(chars.to(states.device)).to(words.dtype)], dim=-1)
        if self.word_lstm is not None:
            W = words.size(1)
            packed = pack_padded_sequence(words, word_lengths.cpu(), batch_first=True, enforce_sorted=False)
            words = pad_packed_sequence(self.word_lstm(packed)[0], batch_first=True, total_length=W)[0]  # (B, W, 2h)
        return self.proj(self.dropout(words)).float()

    def spellings(self, chars: torch.Tensor) -> torch.Tensor:
        """Byte ids (B, W, C) → the character BiLSTM's final states, forward then backward (B, W, 2c). A padding
        word reads one padding byte (its row is masked out downstream)."""
        B, W, C = chars.shape
        flat = chars.reshape(B * W, C)  # (N, C)
        lengths = (flat != 0).sum(1).clamp(min=1)  # (N,)
        packed = pack_padded_sequence(self.char_embed(flat), lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (h, _) = self.char_lstm(packed)  # (2, N, c): each word's own last step in each direction
        return h.transpose(0, 1).reshape(B, W, -1)  # (B, W, 2c)

    def forward(self, states: torch.Tensor, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        em = self.emissions(
            states, batch["first"], batch.get("last"), batch["word_lengths"], batch.get("shape"), batch.get("chars")
        )  # (B, W, L)
        tags = batch.get("tags")
        if tags is None:
            return em, None
        mask = lengths_to_mask(batch["word_lengths"].to(em.device), em.size(1))  # (B, W)
        if self.bioes:
            tags = self.to_bioes(tags.to(em.device), mask)
        loss = self.crf.nll(em, tags, mask)
        if self.training and self.lm is not None and self.lm_weight > 0:
            loss = loss + self.lm_weight * self.lm.sampled_loss(states, batch["tokens"].to(states.device), self.lm_rate)
        return em, loss

    def to_bioes(self, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """BIO ids (B, W) → the CRF's BIOES ids: B-X/I-X stay when the next real word is I-X, else S-X/E-X."""
        nxt = torch.cat([tags[:, 1:], torch.full_like(tags[:, :1], -2)], dim=1)  # (B, W), -2 past the end
        nxt_real = torch.cat([mask[:, 1:], torch.zeros_like(mask[:, :1])], dim=1)  # (B, W)
        continued = (nxt == self._continued_by[tags]) & nxt_real
        return torch.where(continued, self._when_continued[tags], self._when_ended[tags])

    def decode(self, emissions: torch.Tensor, word_lengths: torch.Tensor, crf: CRF | None = None) -> torch.Tensor:
        """Best BIO ids (B, W), by this head's CRF or by ``crf`` (an ensemble's mean of its members')."""
        mask = lengths_to_mask(word_lengths.to(emissions.device), emissions.size(1))  # (B, W)
        paths = (self.crf if crf is None else crf).decode(emissions, mask)
        return self._to_bio[paths] if self.bioes else paths
