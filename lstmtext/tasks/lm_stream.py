"""A language model reading evaluation text as a stream, and the continuous cache (Grave, Joulin & Usunier
2017, "Improving Neural Language Models with a Continuous Cache") that ``lstmtext evaluate`` mixes in with
``lm.cache_size`` > 0.

With the cache, each piece's probability mixes the model's softmax with a distribution over the pieces that
followed the most similar recent forward states of the same text:

    p(w | h_t) = (1 - λ) p_model(w | h_t) + λ Σ_{i: x_{i+1} = w} softmax_i(θ h_t · h_i),  t - size ≤ i < t

It has no parameters to train: a memory of the last ``size`` forward states (the LSTM outputs the head
reads), each stored with the piece that followed it. It helps where words recur within a document (names,
topics) and it reads only text that came before the piece it scores. θ, λ and the size are chosen on
development text (benchmarks/bench_lm_cache.py); model selection while training never uses the cache.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def stream_rows(n_chunks: int, rows: int) -> list[list[int]]:
    """Chunk indices for each step of a stream evaluation: the chunks are dealt into ``rows`` contiguous runs,
    and step j takes the j-th chunk of every run still going. Only the last run can be shorter, so the rows
    still going at a step are always a prefix: their carried states stay aligned."""
    if n_chunks == 0:
        return []
    per_row = -(-n_chunks // max(1, rows))
    runs = [range(s, min(s + per_row, n_chunks)) for s in range(0, n_chunks, per_row)]
    return [[run[j] for run in runs if j < len(run)] for j in range(per_row)]


def stream_states(model, features: list[dict], device, batch_tokens: int):
    """The forward LM reading ``features`` (evaluation chunks in text order) as a stream: per step, the batch,
    its embedded pieces x (m, T, E) and the forward states (m, T-1, H), whose position t predicts
    tokens[:, t + 1]. The chunks are dealt into a few contiguous runs (``stream_rows``), each read chunk after
    chunk with the (h, c) state carried over, so only the first piece of a run starts from a blank state.
    The caller's work between steps runs in inference mode too."""
    import torch

    from lstmtext.tasks.common import to_device
    from lstmtext.tasks.lm import collate

    enc = model.encoder
    model.eval()
    longest = max((f["length"] for f in features), default=1)
    # The (tokens × vocabulary) logits dominate memory: keep a step to a few thousand tokens.
    rows = max(1, min(batch_tokens, 4096) // longest)
    with torch.inference_mode():
        hx = None
        for idx in stream_rows(len(features), rows):
            batch = to_device(collate([features[i] for i in idx]), device)
            if hx is not None:  # the rows still going are a prefix of the last step's
                hx = tuple(h[:, : len(idx)] for h in hx) if isinstance(hx, tuple) else hx[:, : len(idx)]
            # A chunk's last piece opens the next chunk, so only the pieces before it are read here: the
            # carried state is then exactly the state before that piece.
            x = enc.embed(batch["tokens"])  # (m, T, E)
            out, hx = enc.forward_stack(x[:, :-1], hx)  # (m, T-1, H)
            yield batch, x, out


@dataclass(frozen=True)
class CacheSettings:
    size: int  # states remembered per stream row; 0 turns the cache off
    theta: float  # the scale of the dot products (a flatter or sharper cache distribution)
    lam: float  # the cache's share of the mixture


class Cache:
    """The cache of each stream row: the last ``size`` states and the pieces that followed them. Rows follow
    ``stream_rows``: the rows still going at a step are a prefix of the last step's."""

    def __init__(self, size: int):
        self.size = size
        self.keys = None  # (m, P, H) float32, P ≤ size
        self.labels = None  # (m, P)

    def probs(self, states, targets, settings: list[tuple[int, float]]):
        """The cache's probability of each target for each (size, θ) in ``settings`` (sizes up to the cache's
        own: one pass scores several settings), and whether the position had any state to look at.
        states (m, T, H) are a step's forward states (position t predicts targets[:, t]); they join the cache
        after. Returns (p (len(settings), m, T), seen (T,) bool)."""
        import torch

        with torch.autocast(states.device.type, enabled=False):  # bf16 dot products would shift θ·h·h_i
            return self._probs(states.float(), targets, settings)

    def _probs(self, states, targets, settings):
        import torch

        m, T, _ = states.shape
        if self.keys is None:
            past_k, past_l = states.new_zeros(m, 0, states.size(-1)), targets.new_zeros(m, 0)
        else:
            past_k, past_l = self.keys[:m], self.labels[:m]
        P = past_k.size(1)
        keys = torch.cat([past_k, states], 1)  # (m, P+T, H)
        labels = torch.cat([past_l, targets], 1)  # (m, P+T)
        scores = torch.bmm(states, keys.transpose(1, 2))  # (m, T, P+T)
        # Position t sees the states before it (P + t in the concatenation), the last ``size`` of them.
        j = torch.arange(P + T, device=states.device)
        now = torch.arange(T, device=states.device)[:, None] + P  # (T, 1)
        hit = labels[:, None, :] == targets[:, :, None]  # (m, T, P+T)
        out = []
        for size, theta in settings:
            visible = (j < now) & (j >= now - size)  # (T, P+T)
            # two (m, T, P+T) tensors per setting: the hidden states' weights are already 0 after the softmax,
            # and a position with nothing visible (all NaN) gets 0
            w = torch.softmax((theta * scores).masked_fill_(~visible, -math.inf), -1)
            out.append(w.mul_(hit).sum(-1).nan_to_num_(0.0))  # (m, T)
        self.keys, self.labels = keys[:, -self.size :], labels[:, -self.size :]
        return torch.stack(out), now[:, 0] > 0


def mixed_nll(log_p_model, p_cache, seen, lam: float):
    """Per-position NLL of the mixture (1 - λ) p_model + λ p_cache, in log space; positions that saw no state
    (the first piece of a stream row) keep the model's own probability. log_p_model (m, T), p_cache (m, T)."""
    import torch

    if lam <= 0:
        return -log_p_model
    mixed = torch.logaddexp(log_p_model + math.log1p(-lam), torch.log(p_cache) + math.log(lam))
    return -torch.where(seen, mixed, log_p_model)


def piece_log_probs(head, states, targets):
    """The model's log-probability of each target piece (m, T), 0 at padding: forward states (m, T, H)."""
    import torch.nn.functional as F

    from lstmtext.tokenizer import PAD

    logits = head.forward_logits(states).float()  # (m, T, V)
    return -F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=PAD, reduction="none")


def search(model, features: list[dict], device, batch_tokens: int, sizes, thetas, lams) -> list[dict]:
    """Per-word perplexity of every (size, θ, λ) over ``features`` (development text, featurized as for
    evaluation), from one pass of the LM: the states and the model's probabilities are computed once and
    each setting only rescores them. Sorted best first; the (0, 0, 0) row is the model without a cache."""
    import torch

    from lstmtext.errors import UsageError
    from lstmtext.tokenizer import PAD

    if not sizes or min(sizes) < 1:
        raise UsageError(f"cache sizes to search must be at least 1 state, got {list(sizes)}")
    pairs = [(s, t) for s in sizes for t in thetas]
    nll = torch.zeros(len(pairs), len(lams), dtype=torch.float64)
    base = 0.0
    cache = Cache(max(sizes))
    for batch, _, out in stream_states(model, features, device, batch_tokens):
        targets = batch["tokens"][:, 1:]  # (m, T-1)
        log_p = piece_log_probs(model.head, out, targets)  # (m, T-1)
        real = targets != PAD
        base -= log_p[real].sum().item()
        p, seen = cache.probs(out, targets, pairs)
        for a in range(len(pairs)):
            for b, lam in enumerate(lams):
                nll[a, b] += mixed_nll(log_p, p[a], seen, lam)[real].sum().item()
    words = max(1, sum(f["words"] for f in features))

    def ppl(total: float) -> float:
        return math.exp(min(total / words, 700.0))

    rows = [{"size": 0, "theta": 0.0, "lam": 0.0, "ppl_word": ppl(base)}]
    for a, (size, theta) in enumerate(pairs):
        for b, lam in enumerate(lams):
            rows.append({"size": size, "theta": theta, "lam": lam, "ppl_word": ppl(nll[a, b].item())})
    return sorted(rows, key=lambda r: r["ppl_word"])
