"""Translation's decoding: beam search over batches of sources, and the limits that keep its memory bounded."""

from __future__ import annotations

from lstmtext.errors import UsageError

# The widest beam: a beam of K decodes K rows per sentence, each holding the source's attention keys and a
# vocabulary-wide row of scores, so memory grows with K (and wider beams rarely translate better).
MAX_BEAM = 64
# Hypothesis rows decoded together: batches of sentences shrink as the beam widens, so memory stays bounded.
MAX_ROWS = 512


def check_decoding(beam: int | None, n_best: int, batch_size: int) -> None:
    """``lstmtext translate``'s --beam, --n-best and --batch-size, one line each where they are out of range."""
    if beam is not None and not 1 <= beam <= MAX_BEAM:
        raise UsageError(f"--beam {beam}: expected a beam size from 1 (greedy) to {MAX_BEAM}")
    if not 1 <= n_best <= (beam or MAX_BEAM):
        most = f"--beam ({beam})" if beam else MAX_BEAM
        raise UsageError(f"--n-best {n_best}: expected from 1 to {most} hypotheses per sentence")
    if batch_size < 1:
        raise UsageError(f"--batch-size {batch_size}: expected at least 1")


def decode(
    model, features: list[dict], device, beam: int, n_best: int = 1, max_batch: int = 64, attention: bool = False
):
    """Beam-search every feature's source; the one decoder behind both evaluate and translate.

    Sentences are sorted by length and decoded ~64 at a time (fewer with a wide beam, MAX_ROWS): one batched
    step costs little more than one sentence's, so batches are much faster than one sentence at a time.
    Returns, per feature, its hypotheses [(ids, score), …] best first; with ``attention`` each also holds its
    attention weights over the source, (ids, score, weights (len(ids) + 1, len(src)) as a tensor).
    """
    import torch

    from lstmtext.decoding import beam_search
    from lstmtext.tasks.common import pad

    dec = model.decoding
    model.eval()
    max_batch = max(1, min(max_batch, MAX_ROWS // max(beam, n_best)))
    order = sorted(range(len(features)), key=lambda i: len(features[i]["src"]))
    out: list = [None] * len(features)
    with torch.inference_mode():
        for k in range(0, len(order), max_batch):
            idx = order[k : k + max_batch]
            srcs = [features[i]["src"] for i in idx]
            tokens = pad(srcs).to(device)
            lengths = torch.tensor([max(1, len(s)) for s in srcs], device=device)
            states = model.encoder(tokens, lengths)  # (B, S, 2H)
            limits = dec.max_len([len(s) for s in srcs])
            hyps = beam_search(model.head, states, lengths, limits, beam, n_best, dec.alpha, attention=attention)
            for i, h in zip(idx, hyps):
                # padding columns (zero weight) go: each sentence's weights cover its own pieces
                out[i] = [(x[0], x[1], x[2][:, : len(features[i]["src"])]) for x in h] if attention else h
    return out
