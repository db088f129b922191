"""Why a model said what it said: Integrated Gradients (Sundararajan et al. 2017, via Captum) over the
encoder's piece embeddings.

IG integrates the gradient of a score along the straight line from a baseline input to the real one; the
attributions it gives each piece sum to score(input) − score(baseline) (completeness), up to the error of
the integral's ``steps``-point quadrature, which Captum reports as the convergence delta.

- Baseline: the same sentence with every piece replaced by PAD, whose embedding is the zero vector (the
  embedding's padding_idx keeps it zero and untrained). The encoder still reads a sentence of the same
  length, so only what the pieces are, not how many there are, is attributed; zero is "no piece" to the
  embedding, where any real piece would bring meaning of its own.
- Sentiment: the score is the predicted label's logit (not its log-probability, which also moves with every
  other label's logit), so a positive attribution pushes the prediction's own output up.
- NER: each predicted entity gets its own score, the part of the CRF path score of the predicted tag
  sequence that lies in its span: the emission scores of the span's words for their predicted tags plus the
  transitions between those tags. The transitions do not depend on the input, so they cancel in
  score(input) − score(baseline) and the attributions are those of the emissions.
- Pieces → words: a sentiment word starts at a piece that begins with SentencePiece's "▁" (punctuation after
  a word without a space stays with it, as the text has it); NER words are the words the tagger read. A
  word's attribution is the sum of its pieces', so words keep the completeness of the pieces. A text longer than
  data.max_length is explained as the model read it: its head and tail.

The model runs in eval mode (no dropout) and in fp32 whatever the inference precision, so the gradients are
those of the function that predicted. Steps are evaluated in chunks of at most ``BATCH_PIECES`` pieces.

Torch, Captum, rich and matplotlib are imported inside the functions: ``lstmtext --help`` stays light.
"""

from __future__ import annotations

from lstmtext.errors import UsageError

DEFAULT_STEPS = 50
BATCH_PIECES = 16384  # pieces per forward pass along the integration path (bounds the memory of long texts)
WORD_START = "\u2581"  # SentencePiece's word-start mark


def configure(predictor, steps: int, color: bool, precision: str, fmt: str) -> None:
    """Turn on explanations for a loaded predictor (the CLI's ``--explain``), or refuse in one line. A predictor
    that explains has ``explain`` (the steps, 0 = off) and ``explain_formats`` (the formats that show them)."""
    if getattr(predictor, "exported", None):
        raise UsageError("--explain takes gradients through the model: pass the checkpoint, not its ONNX export")
    if not predictor.explain_formats:
        from lstmtext.tasks import TASKS, get_task

        takers = [name for name in TASKS if get_task(name).Predictor.explain_formats]
        raise UsageError(f"--explain: for {' and '.join(takers)} models; this is a {predictor.task} model")
    if fmt not in predictor.explain_formats:
        shown = " or ".join(predictor.explain_formats)
        raise UsageError(f"--explain: {predictor.task} attributions are written with --format {shown}, not {fmt}")
    if not 1 <= steps <= 1000:
        raise UsageError(f"--explain-steps: expected 1 to 1000 integration steps, got {steps}")
    if precision == "int8":
        raise UsageError("--explain needs the float weights (int8 LSTMs have no gradients); use --precision fp32")
    predictor.explain = steps
    predictor.explain_color = color


# -- the integral --------------------------------------------------------------------------------------------
def encode(encoder, x, lengths):
    """Encoder states from embedded pieces x (B, T, E): Encoder.forward after its embedding, without dropout."""
    import torch

    fwd, _ = encoder.forward_stack(x)
    if not encoder.run_backward:
        return fwd
    return torch.cat([fwd, encoder.backward_stack(x, lengths)], dim=-1)


def integrate(score, ids, extra: tuple, model, steps: int):
    """IG of ``score(x, *extra)`` ((n,) scores of embedded inputs x (n, T, E)) for one sentence ``ids``:
    (per-piece attributions [T], score(input), score(baseline), Captum's convergence delta)."""
    import torch
    from captum.attr import IntegratedGradients

    from lstmtext.tokenizer import PAD

    embed = model.encoder.embed
    dev = embed.weight.device
    tokens = torch.tensor([ids], device=dev)
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(dev.type, enabled=False):
        x = embed(tokens).detach()  # (1, T, E)
        base = embed(torch.full_like(tokens, PAD)).detach()  # the PAD row: zeros
        chunk = max(1, min(steps, BATCH_PIECES // max(1, len(ids))))
        attr, delta = IntegratedGradients(score).attribute(
            x,
            baselines=base,
            additional_forward_args=extra,
            n_steps=steps,
            internal_batch_size=chunk,
            return_convergence_delta=True,
        )
        with torch.no_grad():
            ends = score(torch.cat([x, base]), *(_repeat(a, 2) for a in extra))
    return attr.sum(-1)[0].tolist(), float(ends[0]), float(ends[1]), float(delta[0])


def _repeat(arg, n: int):
    import torch

    return arg.expand(n, *arg.shape[1:]) if isinstance(arg, torch.Tensor) and arg.shape[0] == 1 else arg


def _summary(f_in: float, f_base: float, delta: float, steps: int, target: str) -> dict:
    return {
        "target": target,
        "baseline": "pad",
        "steps": steps,
        "score": round(f_in, 6),
        "baseline_score": round(f_base, 6),
        "delta": round(delta, 7),
    }


# -- sentiment -----------------------------------------------------------------------------------------------
def piece_words(pieces: list[str]) -> list[list[int]]:
    """Piece indices grouped into words: a word starts at a piece beginning with ▁, and at the first piece.
    A lone ▁ (a space before punctuation) starts the word of what follows it."""
    words: list[list[int]] = []
    for k, p in enumerate(pieces):
        if not words or p.startswith(WORD_START):
            words.append([k])
        else:
            words[-1].append(k)
    return words


def explain_sentiment(predictor, feats: list[dict], results: list[dict]) -> None:
    """Add "attributions" (words), "pieces" and "ig" (score, baseline score, delta) to each result, toward its
    predicted label's logit; feats are the featurized texts of the results, in order."""
    model, tok, steps = predictor.model, predictor.tok, predictor.explain
    model.eval()

    def score(x, lengths, target):
        return model.head(encode(model.encoder, x, lengths), {"lengths": lengths})[0][:, target]

    import torch

    for f, res in zip(feats, results):
        ids = f["ids"] or [tok.sp.PieceToId(WORD_START)]
        target = predictor.labels.index(res["label"])
        lengths = torch.tensor([len(ids)])
        attr, f_in, f_base, delta = integrate(score, ids, (lengths, target), model, steps)
        pieces = [tok.sp.IdToPiece(i) for i in ids]
        words = [
            [tok.sp.DecodeIds([ids[k] for k in group]).strip() or pieces[group[0]], sum(attr[k] for k in group)]
            for group in piece_words(pieces)
        ]
        res["attributions"] = [[w, round(s, 6)] for w, s in words]
        res["pieces"] = [[p, round(s, 6)] for p, s in zip(pieces, attr)]
        res["ig"] = _summary(f_in, f_base, delta, steps, f"logit of {res['label']}")


# -- NER -----------------------------------------------------------------------------------------------------
def entity_spans(tags: list[str]) -> list[tuple[int, int]]:
    """Word ranges [i, j) of the entities in BIO tags, in the order (and by the rule) of ner_data.entities."""
    spans: list[list[int]] = []
    kind = None
    for k, tag in enumerate(tags):
        if tag.startswith("I-") and kind == tag[2:]:
            spans[-1][1] = k + 1
            continue
        kind = None
        if tag != "O":
            spans.append([k, k + 1])
            kind = tag[2:]
    return [(i, j) for i, j in spans]


def explain_entities(predictor, feats: list[dict], keep: list[int], results: list[dict]) -> None:
    """Add "attributions" (every word of the sentence, in order) and "ig" to each entity of each result, toward
    the entity's share of the CRF path score; feats are the windows the results were tagged from (feature
    "sent" k is results[keep[k]])."""
    import torch

    from lstmtext.encoder import lengths_to_mask
    from lstmtext.heads.tag import FORBIDDEN
    from lstmtext.tasks.ner import collate

    model, steps = predictor.model, predictor.explain
    head = model.head
    model.eval()

    def emissions(x, lengths, first, last, word_lengths, shape, chars):
        return head.emissions(encode(model.encoder, x, lengths), first, last, word_lengths, shape, chars)

    def score(x, lengths, first, last, word_lengths, shape, chars, path, i, j):
        em = emissions(x, lengths, first, last, word_lengths, shape, chars)[:, i:j]  # (n, j-i, L)
        picked = em.gather(2, path[:, i:j].unsqueeze(2)).squeeze(2).sum(1)  # (n,)
        trans = head.crf._scores(FORBIDDEN)[0]
        return picked + trans[path[0, i : j - 1], path[0, i + 1 : j]].sum()

    dev = model.encoder.embed.weight.device
    for f in feats:
        res = results[keep[f["sent"]]]
        start, n = f["start"], f["n"]
        spans = [(e, s) for e, s in zip(res["entities"], entity_spans(res["tags"])) if start <= s[0] < start + n]
        if not spans:
            continue
        b = {k: v.to(dev) for k, v in collate([f]).items()}
        extra = (b["lengths"], b["first"], b["last"], b["word_lengths"], b.get("shape"), b.get("chars"))
        with torch.no_grad(), torch.autocast(dev.type, enabled=False):
            em = emissions(model.encoder.embed(b["tokens"]), *extra)
            path = head.crf.decode(em, lengths_to_mask(b["word_lengths"], em.size(1)))  # the CRF's own tags
        for ent, (i, j) in spans:
            i, j = i - start, min(j, start + n) - start
            attr, f_in, f_base, delta = integrate(score, f["ids"], (*extra, path, i, j), model, steps)
            words = [0.0] * len(res["tokens"])
            for k, (a, z) in enumerate(zip(f["first"], f["last"])):
                words[start + k] = sum(attr[a : z + 1])
            ent["attributions"] = [[w, round(s, 6)] for w, s in zip(res["tokens"], words)]
            ent["ig"] = _summary(f_in, f_base, delta, steps, "path score of the entity's tags")


# -- output --------------------------------------------------------------------------------------------------
def shade(pairs: list, color: bool) -> str:
    """Words with their attributions: on a terminal (color) each word on a background from white to green
    (positive) or red (negative) by its |score| against the line's largest; else ``word(+0.123)``."""
    if not color:
        return " ".join(f"{w}({s:+.3f})" for w, s in pairs)
    from rich.color import Color
    from rich.console import Console
    from rich.style import Style
    from rich.text import Text

    top = max((abs(s) for _, s in pairs), default=0.0) or 1.0
    text = Text()
    for k, (w, s) in enumerate(pairs):
        a = min(1.0, abs(s) / top)
        full = (0, 170, 0) if s >= 0 else (210, 0, 0)
        rgb = tuple(round(255 + (c - 255) * a) for c in full)
        if k:
            text.append(" ")
        text.append(w, Style(color="white" if a > 0.6 else "black", bgcolor=Color.from_rgb(*rgb)))
    console = Console(force_terminal=True, width=1 << 20)
    with console.capture() as out:
        console.print(text, end="", soft_wrap=True, highlight=False)
    return out.get()


def entity_lines(result: dict, color: bool) -> str:
    """One line per explained entity, after the tagged line: ``  [LABEL text] words with attributions``."""
    return "".join(
        f"\n  [{e['label']} {e['text']}] {shade(e['attributions'], color)}"
        for e in result["entities"]
        if "attributions" in e
    )


def plot_attributions(pairs: list, path, title: str = "") -> None:
    """A bar per word (top to bottom in reading order), green for positive and red for negative attributions,
    written as a PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    words = [w for w, _ in pairs]
    scores = [s for _, s in pairs]
    fig, ax = plt.subplots(figsize=(6.4, 1.2 + 0.3 * max(1, len(words))))
    ax.barh(range(len(words)), scores, color=["#2a9d2a" if s >= 0 else "#d03030" for s in scores])
    ax.set_yticks(range(len(words)), words)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("attribution (+ toward the prediction, − against)")
    method = "Integrated Gradients from an all-PAD baseline"
    ax.set_title(f"{title}\n{method}" if title else method, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
