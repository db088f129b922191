"""Decoding shared by the LM and the translator: sampling and batched beam search, as plain functions.

Sampling: ``filter_logits`` applies temperature, top-k and top-p (nucleus) to a (B, V) batch of logits;
``sample`` draws one id per row from a seeded ``torch.Generator``, so the same seed gives the same text.
Temperature 0 means greedy (argmax), which needs no generator at all.

Beam search: batched, with a plain greedy reference, over any decoder with start / step / reorder.
The decoder protocol (lstmtext.heads.seq2seq.Seq2SeqHead implements it):
  start(states, lengths, K)        → state with K hypothesis rows per sentence (rows of a sentence contiguous)
  step(tokens (N,), state)         → (log-probabilities (N, V), state advanced by one token)
  reorder(state, rows, sentences)  → state keeping hypothesis ``rows``; ``sentences`` drops finished sentences

All sentences of a batch are searched at once: the K beams of each sentence are flattened into the batch
dimension, so one decoder step serves B×K hypotheses. A sentence leaves the batch as soon as it has K
finished hypotheses (or reached its length limit), so a long sentence does not keep short ones computing.

Scores: the sum of log-probabilities divided by the GNMT length penalty ((5 + length) / 6) ** alpha, length
counting the end-of-sentence piece; alpha = 0 compares raw sums (which favour short outputs).

Attention: ``beam_search(..., attention=True)`` starts the decoder with ``attention=True`` (its states then
carry the step's weights over the source as ``weights``, (N, S)) and keeps one row of weights per emitted piece
beside each hypothesis' pieces, gathered by the same backpointers, so a finished hypothesis holds the weights of
its own path: (pieces + 1, S), the last row being the step that emitted EOS. Without it nothing is kept.
"""

from __future__ import annotations

import torch

from lstmtext.errors import UsageError
from lstmtext.tokenizer import BOS, EOS, PAD

# Temperatures sampling stays finite at: logits divided by less overflow float32, and by more (or by inf) turn
# the -inf of banned pieces into NaN; below the lowest, sampling is greedy in all but name.
TEMPERATURE_RANGE = (0.01, 100.0)
SEED_RANGE = (0, 2**64 - 1)  # what torch.Generator.manual_seed takes


def check_sampling(temperature: float, top_k: int, top_p: float) -> None:
    """The user-facing rules, one clear line each (the CLI turns them into exit code 2)."""
    low, high = TEMPERATURE_RANGE
    if not (temperature == 0 or low <= temperature <= high):  # NaN fails both tests
        raise UsageError(f"--temperature {temperature}: expected 0 (greedy) or a number from {low} to {high:g}")
    if top_k < 0:
        raise UsageError(f"--top-k {top_k}: expected 0 (off) or a positive number of candidates")
    if not (0 < top_p <= 1):
        raise UsageError(f"--top-p {top_p}: expected a probability mass in (0, 1]; 1 turns it off")


def check_seed(seed: int | None) -> None:
    if seed is not None and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise UsageError(f"--seed {seed}: expected an integer from 0 to 2**64 - 1")


def make_generator(seed: int | None, device="cpu") -> torch.Generator:
    """A generator of its own, so sampling neither reads nor disturbs the global RNG (None = a fresh seed)."""
    check_seed(seed)
    g = torch.Generator(device=device)
    if seed is None:
        g.seed()
    else:
        g.manual_seed(int(seed))
    return g


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of each row (ties at the k-th value kept too); the rest become -inf."""
    if k <= 0 or k >= logits.size(-1):
        return logits
    kth = logits.topk(k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely ids whose probability reaches p (always at least the best one)."""
    if p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)  # (B, V)
    cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    # Drop an id when the mass before it already reaches p; the best id always has zero mass before it.
    drop_sorted = (cum - sorted_logits.softmax(dim=-1)) >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Temperature, then top-k, then top-p, on (B, V) logits. Temperature 0 is handled by ``sample`` (argmax)."""
    logits = logits.float()
    if temperature > 0 and temperature != 1.0:
        logits = logits / temperature
    return top_p_filter(top_k_filter(logits, top_k), top_p)


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One id per row of (B, V) logits → (B,). Temperature 0 = greedy."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = filter_logits(logits, temperature, top_k, top_p).softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# -- beam search ----------------------------------------------------------------------------------------
Hypothesis = tuple[list[int], float]  # (piece ids without BOS/EOS, normalised score)


def length_penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha if alpha else 1.0


def max_lengths(src_lengths: list[int], ratio: float, extra: int, cap: int) -> list[int]:
    """Most pieces an output may have: a ratio of the source length plus a constant, capped."""
    return [max(1, min(cap, int(ratio * n + extra))) for n in src_lengths]


def _mask_step(logp: torch.Tensor, at_limit_rows: torch.Tensor | None) -> None:
    """Never emit padding or a second BOS; at the length limit only EOS remains (in place)."""
    logp[:, PAD] = float("-inf")
    logp[:, BOS] = float("-inf")
    if at_limit_rows is not None and bool(at_limit_rows.any()):
        eos = logp[at_limit_rows, EOS].clone()
        logp[at_limit_rows] = float("-inf")
        logp[at_limit_rows, EOS] = eos


CHUNK = 64  # vocabulary pieces per chunk in top_candidates: a multiple of the SIMD width, and V is often one


def top_candidates(
    scores: torch.Tensor, logp: torch.Tensor, n: int, chunk: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The ``n`` best extensions of each sentence's beams: scores (Ba, K) plus logp (Ba·K, V) →
    (their scores (Ba, n), the beam each extends (Ba, n), its next piece (Ba, n)), best first.

    The same as ``topk`` over the (Ba, K·V) sums, without forming them: every one of the n best lies in one of
    the n vocabulary chunks whose maxima rank best (a chunk holding one of them has a maximum at least as high,
    and no n+1 chunks can all beat the n-th best), so one cheap pass of chunk maxima and a ``topk`` over
    n·chunk values replace a ``topk`` over all K·V."""
    Ba, K = scores.shape
    V, chunk = logp.size(-1), chunk or CHUNK
    C = -(-V // chunk)  # chunks per beam
    if n >= K * C:  # too few chunks to leave any out
        top, idx = (scores.unsqueeze(-1) + logp.view(Ba, K, V)).view(Ba, K * V).topk(n, dim=1)
        return top, idx // V, idx % V
    lp = logp.view(Ba, K, V)
    if C * chunk != V:  # the last chunk's tail never wins a place
        lp = torch.nn.functional.pad(lp, (0, C * chunk - V), value=float("-inf"))
    blocks = lp.reshape(Ba, K * C, chunk)  # (Ba, K·C, chunk)
    bound = (blocks.amax(-1).view(Ba, K, C) + scores.unsqueeze(-1)).view(Ba, K * C)  # (Ba, K·C)
    best_chunks = bound.topk(n, dim=1).indices  # (Ba, n)
    beam = best_chunks // C
    values = blocks.gather(1, best_chunks.unsqueeze(-1).expand(Ba, n, chunk)) + scores.gather(1, beam).unsqueeze(-1)
    top, pos = values.view(Ba, n * chunk).topk(n, dim=1)  # (Ba, n) over the n chunks' values
    which = best_chunks.gather(1, pos // chunk)
    # a -inf place past V (only when fewer than n extensions are finite) points at V - 1; it never finishes
    return top, which // C, ((which % C) * chunk + pos % chunk).clamp_max(V - 1)


@torch.inference_mode()
def greedy_search(
    decoder, states: torch.Tensor, lengths: torch.Tensor, max_len: list[int], alpha: float = 0.0
) -> list[list[Hypothesis]]:
    """The most likely piece at every step: the reference that beam search with K = 1 must reproduce."""
    B = states.size(0)
    limit = torch.tensor(max_len, device=states.device)
    st = decoder.start(states, lengths, 1)
    tokens = torch.full((B,), BOS, dtype=torch.long, device=states.device)
    total = torch.zeros(B, device=states.device)
    done = torch.zeros(B, dtype=torch.bool, device=states.device)
    out: list[list[int]] = [[] for _ in range(B)]
    for t in range(int(limit.max()) + 1):
        logp, st = decoder.step(tokens, st)
        _mask_step(logp, limit <= t)
        s, best = logp.max(-1)
        total += torch.where(done, torch.zeros_like(s), s)
        for i, (tok, fin) in enumerate(zip(best.tolist(), done.tolist())):
            if not fin and tok != EOS:
                out[i].append(tok)
        done |= best == EOS
        if bool(done.all()):
            break
        tokens = best
    return [[(ids, total[i].item() / length_penalty(len(ids) + 1, alpha))] for i, ids in enumerate(out)]


@torch.inference_mode()
def beam_search(
    decoder,
    states: torch.Tensor,
    lengths: torch.Tensor,
    max_len: list[int],
    beam: int = 5,
    n_best: int = 1,
    alpha: float = 1.0,
    attention: bool = False,
) -> list[list]:
    """For each sentence of the batch, its ``n_best`` hypotheses, best first (beam 1 is greedy decoding):
    (ids, score), or with ``attention`` (ids, score, weights (len(ids) + 1, S)) where S is the padded source."""
    K = max(1, beam, n_best)
    B = states.size(0)
    dev = states.device
    limit = torch.tensor(max_len, device=dev)
    st = decoder.start(states, lengths, K, attention=True) if attention else decoder.start(states, lengths, K)
    kept = states.new_zeros((B * K, 0, states.size(1)), dtype=torch.float) if attention else None  # (N, t, S)
    active = torch.arange(B, device=dev)  # original index of each sentence still searching
    scores = torch.full((B, K), float("-inf"), device=dev)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first, or the beam fills with copies
    tokens = torch.full((B * K,), BOS, dtype=torch.long, device=dev)
    seqs = torch.empty((B * K, 0), dtype=torch.long, device=dev)  # pieces so far, one row per hypothesis
    finished: list[list] = [[] for _ in range(B)]
    offsets = torch.arange(B, device=dev).unsqueeze(1) * K  # (B, 1)
    for t in range(int(limit.max()) + 1):
        logp, st = decoder.step(tokens, st)  # (Ba*K, V)
        Ba = active.numel()
        at_limit = limit[active] <= t  # (Ba,)
        _mask_step(logp, at_limit.repeat_interleave(K))
        # 2K candidates: each beam adds at most one EOS, so at least K of them continue.
        top_scores, beam_idx, tok = top_candidates(scores, logp, 2 * K)  # (Ba, 2K) each
        is_eos = (tok == EOS) & torch.isfinite(top_scores)
        for a, r in is_eos[:, :K].nonzero().tolist():  # an EOS among the best K ends a hypothesis
            b = int(active[a])
            row = a * K + int(beam_idx[a, r])
            ids = seqs[row].tolist()
            hyp = (ids, top_scores[a, r].item() / length_penalty(len(ids) + 1, alpha))
            if kept is not None:  # the path's weights, then the step that chose EOS
                hyp = (*hyp, torch.cat([kept[row], st.weights[row : row + 1]]))
            finished[b].append(hyp)
        rank = torch.arange(2 * K, device=dev).expand(Ba, 2 * K) + is_eos.long() * 2 * K
        sel = rank.topk(K, dim=1, largest=False).indices  # (Ba, K) the best K that do not end
        new_scores = top_scores.gather(1, sel)
        rows = offsets[:Ba] + beam_idx.gather(1, sel)  # (Ba, K) rows they extend
        new_tok = tok.gather(1, sel)
        n_done = torch.tensor([len(finished[int(b)]) for b in active.tolist()], device=dev)
        done = (n_done >= K) | at_limit | ~torch.isfinite(new_scores[:, 0])
        if bool(done.all()):
            break
        sentences = None
        if bool(done.any()):  # finished sentences leave the batch; rows keep their old numbering for the gather
            sentences = (~done).nonzero().squeeze(1)
            rows, new_scores, new_tok = rows[sentences], new_scores[sentences], new_tok[sentences]
            active = active[sentences]
        flat = rows.reshape(-1)  # (Ba'·K,)
        seqs = torch.cat([seqs.index_select(0, flat), new_tok.reshape(-1, 1)], dim=1)
        if kept is not None:  # the weights follow the same backpointers as the pieces
            kept = torch.cat([kept.index_select(0, flat), st.weights.index_select(0, flat).unsqueeze(1)], dim=1)
        st = decoder.reorder(st, flat, sentences)
        scores, tokens = new_scores, new_tok.reshape(-1)
    out = []
    for b in range(B):
        hyps = sorted(finished[b], key=lambda h: -h[1])
        empty = ([], float("-inf")) if kept is None else ([], float("-inf"), states.new_zeros((0, states.size(1))))
        out.append(hyps[: max(1, n_best)] if hyps else [empty])
    return out
