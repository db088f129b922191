"""Language model: the shared encoder trained as a bidirectional LM; its forward stack generates.

Data: plain text, one paragraph per line (blank lines allowed: each is an end of line, as in WikiText), a
JSONL file with a "text" field, or ``hf:NAME[:CONFIG]`` with a text column.

Training scheme. The text becomes one stream of pieces, each line followed by EOS and the whole stream
opened by one EOS (so the first piece of the text is predicted from "start of line" like every other line).
The stream is cut into chunks of ``chunk_length`` pieces; consecutive chunks share one piece, so the forward
LM scores every piece after the opening EOS exactly once, and the backward LM every piece before the final
one. By default chunks are independent sequences, shuffled into batches: no state is carried between batches,
and the cost is the short context at the start of each chunk, smaller the longer the chunk. ``carry_state``
trains with truncated BPTT instead (tasks/lm_carry.py): batches in text order, each row starting from the state
its previous chunk ended in.
Evaluation reads the text as a stream with the state carried from chunk to chunk (see ``evaluate``), as
word-level LM papers do, so no piece loses its context to a reset; chunks of ``eval_chunk_length`` only
bound the memory of one step.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass

from lstmtext.config import PRECISIONS as TRAIN_PRECISIONS
from lstmtext.data import file_kind, is_hf, load_hf, pick_column, read_lines, read_records
from lstmtext.errors import UsageError
from lstmtext.tasks.contract import one_or_many
from lstmtext.tasks.lm_generate import GEN_DEFAULTS, Generator, check_generate  # noqa: F401 (the CLI's, through here)
from lstmtext.tasks.lm_stream import stream_rows, stream_states  # noqa: F401 (lm_carry's and the tests', through here)
from lstmtext.tokenizer import EOS, PAD

NAME = "lm"
MAIN_METRIC = "ppl_word"
HIGHER_IS_BETTER = False
FORMATS = ("text", "jsonl")
PRECISIONS = TRAIN_PRECISIONS  # no int8: generation steps LSTM cells one piece at a time
SPEED_UNIT = "pieces"  # benchmark speed counts pieces generated
EVAL_OPTIONS = ("eval_chunk_length", "cache_size", "cache_theta", "cache_lambda")
TEXT_COLUMNS = ("text", "content", "document", "sentence")


@dataclass
class Options:
    text_column: str = ""  # hf:/JSONL column; empty = the first of: text, content, document, sentence
    chunk_length: int = 256  # pieces per training sequence (consecutive chunks share one piece)
    eval_chunk_length: int = 1024  # pieces per step when scoring validation/test text (the state carries over)
    dropout: float = 0.1  # on the projection to the tied embedding (used only when hidden_dim != embed_dim)
    # false: train the forward LM only, half the compute. Per-word perplexity and generation use only the
    # forward stack; the backward stack keeps its initial weights, so --init-from such a model transfers
    # half an encoder. True (the BiLM) is what NER and sentiment want to start from.
    bidirectional: bool = True
    # true: truncated BPTT, the forward stack's state carried from each chunk to the next (batches in text order,
    # not shuffled); false: independent chunks in shuffled batches
    carry_state: bool = False
    # The continuous cache at evaluation (tasks/lm_stream.py; `lstmtext evaluate --set lm.cache_size=N`):
    # states remembered (0 = off), the scale of their dot products, the cache's share of each probability.
    # θ and λ as wiki.valid chose them for recipes/wikitext2-forward.toml (BENCHMARKS.md, "The continuous
    # cache"); the paper's θ of 0.3 suits its states, not these: with it the cache made wiki.valid worse
    cache_size: int = 0
    cache_theta: float = 5.0
    cache_lambda: float = 0.25


# What LMs need beyond the shared defaults: stronger dropout on the embedding and the states; 8 chunks of
# 256 pieces per batch (all one length, so bucketing wastes nothing) and a higher learning rate: on the
# embedded sample, progress is limited by the number of steps, so smaller batches at a higher rate learn
# faster there. Epochs are few so `lstmtext train lm` on the sample stays short; recipes set their own. The
# encoder's shape stays the shared default so `train sentiment --init-from lm.ckpt` fits without settings.
DEFAULTS: dict = {
    "encoder": {"embed_dropout": 0.15, "dropout": 0.3},
    "tokenizer": {"vocab_size": 8000},
    "train": {"batch_tokens": 2048, "max_batch_size": 64, "lr": 4e-3, "epochs": 6, "patience": 3},
}


def validate(options: Options) -> None:
    for key in ("chunk_length", "eval_chunk_length"):
        if getattr(options, key) < 2:
            raise UsageError(f"lm.{key}: must be at least 2, got {getattr(options, key)}")
    if options.cache_size < 0:
        raise UsageError(f"lm.cache_size: expected 0 (off) or a number of states, got {options.cache_size}")
    if not (math.isfinite(options.cache_theta) and options.cache_theta >= 0):
        raise UsageError(f"lm.cache_theta: expected a finite number ≥ 0, got {options.cache_theta}")
    if not 0 <= options.cache_lambda < 1:
        raise UsageError(f"lm.cache_lambda: expected a share in [0, 1), got {options.cache_lambda}")


# -- data --------------------------------------------------------------------------------------------------
def stream_lines(source: str, opts: Options, split: str = "train") -> Iterator[str]:
    """Each line of the text: plain text as it is, a JSONL record's text (its newlines become spaces), an
    ``hf:`` row's text split at its newlines (WikiText rows end in one). Blank lines are kept: each is an end of
    line in the stream. ``hf:`` datasets stream, so a corpus of any size is read the same way as a file."""
    if is_hf(source):
        ds = load_hf(source, split, streaming=True)
        rows = iter(ds)
        first = next(rows, None)
        cols = ds.column_names or list(first or {})
        col = pick_column(cols, opts.text_column, TEXT_COLUMNS, "text", source)
        for row in itertools.chain([first] if first is not None else [], rows):
            text = str(row[col] or "")
            yield from (line.rstrip("\r") for line in text.rstrip("\n").split("\n")) if text.strip() else [""]
    elif file_kind(source) == "jsonl":
        for lineno, rec in read_records(source):
            col = opts.text_column or next((c for c in TEXT_COLUMNS if c in rec), None)
            if col is None or col not in rec:
                raise UsageError(f"{source} line {lineno}: expected a JSON object with a 'text' field")
            yield str(rec[col]).replace("\n", " ")
    elif file_kind(source) in ("tsv", "csv"):
        raise UsageError(f"{source}: a language model reads plain text (one paragraph per line) or JSONL, not a table")
    else:
        for _, line in read_lines(source):
            yield line


def read(source: str, opts: Options, split: str = "train") -> list[dict]:
    """One example {"text", "where", "split"} per line of ``stream_lines``: the dev and test text (training text
    streams through the token cache instead, training/streamed.py)."""
    examples = [
        {"text": text, "where": f"{source} line {i}", "split": split}
        for i, text in enumerate(stream_lines(source, opts, split), 1)
    ]
    if not any(e["text"].strip() for e in examples):
        raise UsageError(f"{source}: no text found; expected plain text, one paragraph per line")
    return examples


def stream_windows(stream, recipe):
    """Training chunks over the token stream on disk (a corpus.Windows): the spans of ``chunk_stream``."""
    from lstmtext.tokenstream import Windows

    length = recipe.options.chunk_length
    return Windows(stream, length, length - 1)


def stream_batches(windows, recipe, epoch: int, world: int = 1) -> list:
    """An epoch's training batches: in text order with ``carry_state`` (one row per ``chunk_length`` of
    ``batch_tokens``), else shuffled (the windows are all one length but the last, so bucketing only shuffles)."""
    from lstmtext.data import shuffled_epoch
    from lstmtext.tasks.lm_carry import carry_batches

    tc = recipe.train
    if recipe.options.carry_state:
        return carry_batches(
            len(windows), max(1, min(tc.max_batch_size, tc.batch_tokens // recipe.options.chunk_length)), world
        )
    return shuffled_epoch(windows.lengths, tc, epoch)


def tokenizer_texts(examples: list[dict]):
    return (e["text"] for e in examples if e["text"].strip())


def make_labels(examples: list[dict]) -> list[str]:
    return []


def count_words(text: str) -> int:
    """Words as word-level papers count them: whitespace-separated tokens, plus one for the end of the line."""
    return len(text.split()) + 1


def chunk_stream(stream: list[int], length: int) -> list[tuple[int, int]]:
    """(start, end) of chunks of ``length`` pieces sharing one piece with the next: every position ≥ 1 is a
    forward-LM target in exactly one chunk (position p in chunk (p - 1) // (length - 1))."""
    step = length - 1
    return [(s, min(s + length, len(stream))) for s in range(0, max(1, len(stream) - 1), step)]


def featurize(examples: list[dict], tok, labels: list[str], recipe) -> list[dict]:
    """Chunks of the piece stream (``eval_chunk_length`` long for text read as a validation or test split,
    ``chunk_length`` for training text). Each chunk carries the words, lines and characters whose end-of-line EOS it
    scores, so summing over chunks gives exact totals for per-word perplexity and bits per character."""
    scoring = bool(examples) and examples[0].get("split", "train") != "train"
    key = "eval_chunk_length" if scoring else "chunk_length"
    length = getattr(recipe.options, key)
    ids = tok.encode([e["text"] for e in examples])
    stream = [EOS]
    ends: list[tuple[int, int, int]] = []  # (position of the line's EOS, words, characters)
    for e, seq in zip(examples, ids):
        stream.extend(seq)
        stream.append(EOS)
        ends.append((len(stream) - 1, count_words(e["text"]), len(e["text"]) + 1))
    spans = chunk_stream(stream, length)
    feats = [{"ids": stream[s:t], "length": t - s, "words": 0, "lines": 0, "chars": 0} for s, t in spans]
    for pos, words, chars in ends:
        f = feats[(pos - 1) // (length - 1)]
        f["words"] += words
        f["lines"] += 1
        f["chars"] += chars
    return feats


def collate(features: list[dict]) -> dict:
    import torch

    from lstmtext.tasks.common import pad

    lengths = torch.tensor([max(1, f["length"]) for f in features])
    batch = {"tokens": pad([f["ids"] for f in features]), "lengths": lengths}  # ids: lists, or arrays of the cache
    if "start" in features[0]:  # training windows: where each starts in the stream, for carry_state
        batch["starts"] = torch.tensor([f["start"] for f in features])
    return batch


# -- model -------------------------------------------------------------------------------------------------
def build_model(recipe, vocab_size: int, labels: list[str]):
    from lstmtext.heads.lm import LMHead
    from lstmtext.model import Model, build_encoder
    from lstmtext.tasks.lm_carry import CarryLM
    from lstmtext.tasks.lm_stream import CacheSettings

    bi = recipe.options.bidirectional
    encoder = build_encoder(recipe.encoder, vocab_size, backward=bi)
    head = LMHead(encoder.embed, encoder.hidden_dim, recipe.options.dropout, bidirectional=bi)
    model = (CarryLM if recipe.options.carry_state else Model)(encoder, head)
    o = recipe.options
    model.cache = CacheSettings(o.cache_size, o.cache_theta, o.cache_lambda)  # what evaluate() mixes in
    return model


def trained_weights(state: dict, meta: dict) -> tuple[dict, str]:
    """A forward-only LM (lm.bidirectional=false) never trained its backward stack: another run keeps its own
    freshly initialised one, the same as from scratch on that half."""
    if meta.get("recipe", {}).get("lm", {}).get("bidirectional", True):
        return state, ""
    kept = {k: v for k, v in state.items() if not k.startswith("encoder.bwd.")}
    return kept, "a forward-only LM: the backward stack starts fresh"


def init_from(own: dict, state: dict, meta: dict) -> str:
    return ""  # an LM's head fits only another LM's checkpoint (the shared copy takes that)


def ensemble(models: list):
    raise UsageError("lm models do not ensemble here: the stream's carried state and the cache are one model's")


# -- evaluation --------------------------------------------------------------------------------------------
def evaluate(
    model, features: list[dict], labels: list[str], device, batch_tokens: int, tok=None, selection: bool = False
) -> dict:
    """Forward LM perplexity per piece and per word, bits per character; the backward LM's per-piece too
    (when the model has one).

    The forward LM reads the text as a stream (``stream_states``), as word-level LM papers evaluate (PyTorch's
    word_language_model, AWD-LSTM): every piece after the opening EOS is scored exactly once, with all the text
    before it in its run as context. With ``lm.cache_size`` > 0 (the model's ``cache``), each piece's
    probability mixes in the continuous cache (tasks/lm_stream.py); model selection (``selection``) never
    does. The backward LM's per-piece figure is per chunk (a diagnostic; generation never uses it)."""
    import torch.nn.functional as F

    from lstmtext.tasks.lm_stream import Cache, mixed_nll, piece_log_probs

    head, enc = model.head, model.encoder
    settings = None if selection else getattr(model, "cache", None)
    cache = Cache(settings.size) if settings and settings.size else None
    fwd_nll = bwd_nll = 0.0
    n_fwd = n_bwd = 0
    for batch, x, out in stream_states(model, features, device, batch_tokens):
        tokens = batch["tokens"]
        fwd_t = tokens[:, 1:]  # (m, T-1)
        real = fwd_t != PAD
        if cache is None:
            fl = head.forward_logits(out).float()  # (m, T-1, V)
            fwd_nll += F.cross_entropy(fl.flatten(0, 1), fwd_t.flatten(), ignore_index=PAD, reduction="sum").item()
            del fl
        else:
            p, seen = cache.probs(out, fwd_t, [(settings.size, settings.theta)])
            fwd_nll += mixed_nll(piece_log_probs(head, out, fwd_t), p[0], seen, settings.lam)[real].sum().item()
        n_fwd += int(real.sum())
        if not head.bidirectional:
            continue
        bwd_states = enc.backward_stack(x, batch["lengths"])  # (m, T, H)
        bwd_t = tokens[:, :-1].masked_fill(fwd_t == PAD, PAD)  # (m, T-1)
        bl = head.backward_logits(bwd_states[:, 1:]).float()  # (m, T-1, V)
        bwd_nll += F.cross_entropy(bl.flatten(0, 1), bwd_t.flatten(), ignore_index=PAD, reduction="sum").item()
        n_bwd += int((bwd_t != PAD).sum())
    words = sum(f["words"] for f in features)
    chars = sum(f["chars"] for f in features)
    m = lm_metrics(fwd_nll, n_fwd, bwd_nll, n_bwd, words, sum(f["lines"] for f in features), chars)
    if cache is not None:  # a figure with the cache says so wherever it goes
        m["cache"] = {"size": settings.size, "theta": settings.theta, "lambda": settings.lam}
    return m


def lm_metrics(
    fwd_nll: float, pieces: int, bwd_nll: float, bwd_pieces: int, words: int, lines: int, chars: int
) -> dict:
    """From summed NLL (nats): per-piece and per-word perplexity, bits per character.

    ``words`` already includes one end-of-line per line; ``chars`` one newline per line."""

    def exp(x):
        return math.exp(min(x, 700.0))

    fwd = fwd_nll / max(1, pieces)
    m = {
        "loss": fwd if bwd_pieces == 0 else 0.5 * (fwd + bwd_nll / bwd_pieces),
        "ppl_piece": exp(fwd),
        "ppl_word": exp(fwd_nll / max(1, words)),
        "bpc": fwd_nll / math.log(2) / max(1, chars),
        "nll": fwd_nll,
        "pieces": pieces,
        "words": words,
        "lines": lines,
        "chars": chars,
    }
    if bwd_pieces:  # a forward-only LM has no backward perplexity
        m["ppl_piece_bwd"] = exp(bwd_nll / bwd_pieces)
    return m


def summary(metrics: dict) -> dict:
    """Rounded: perplexities run into the thousands early in training and the log line stays readable."""
    digits = {"loss": 4, "ppl_word": 2, "ppl_piece": 3, "bpc": 4, "ppl_piece_bwd": 3}
    return {k: round(metrics[k], d) for k, d in digits.items() if k in metrics}


def plots(metrics: dict, out_dir) -> list:
    """``evaluate --plot DIR`` draws nothing for a language model: its scores (perplexity, bits per character)
    are single numbers over the whole text, which the table shows; ``lstmtext plot RUN.metrics.jsonl`` draws
    them over training."""
    from lstmtext.progress import note

    note(
        "--plot: a language model's evaluation has no picture (its scores are single numbers); "
        "'lstmtext plot RUN.metrics.jsonl' draws them over training"
    )
    return []


def report(metrics: dict, console) -> None:
    from rich.table import Table

    t = Table(
        title=f"{metrics['lines']:,} lines, {metrics['words']:,} words (end of line included), "
        f"{metrics['pieces']:,} pieces",
        show_header=False,
        box=None,
    )
    t.add_row("perplexity per word", f"{metrics['ppl_word']:.2f}")
    t.add_row("perplexity per piece", f"{metrics['ppl_piece']:.2f}")
    t.add_row("bits per character", f"{metrics['bpc']:.4f}")
    if "ppl_piece_bwd" in metrics:
        t.add_row("backward LM perplexity per piece", f"{metrics['ppl_piece_bwd']:.2f}")
    if "cache" in metrics:
        c = metrics["cache"]
        t.add_row("continuous cache", f"{c['size']} states, θ {c['theta']:g}, λ {c['lambda']:g}")
    console.print(t)


# -- prediction and generation -----------------------------------------------------------------------------
class Predictor(Generator):
    """What ``lstmtext.load`` returns for an LM checkpoint: ``generate`` streams text, ``predict`` continues lines."""

    task = NAME
    stream_batch = (
        64  # lines per predict call (cli.stream_predictions); prompts generated as one batch: rows cost every step
    )
    batch_tokens = 16384  # pieces per batch when lstmtext evaluate scores the checkpoint
    explain_formats = ()  # no --explain: generation and beam search have no single score to attribute

    def __init__(self, model, tok, labels: list[str], recipe, device):
        super().__init__(model, tok, device)
        self.labels, self.recipe = labels, recipe

    @one_or_many
    def predict(self, texts: list[str]) -> list[dict | None]:
        """One continuation per line (seeded, so the same input gives the same output); None for a blank line."""
        out: list[dict | None] = [None] * len(texts)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        if keep:
            lines = self.generate_text([texts[i] for i in keep], seed=self.recipe.train.seed)
            for i, (line,) in zip(keep, lines):
                prompt = texts[i].rstrip()
                out[i] = {"text": line, "continuation": line[len(prompt) :]}
        return out

    __call__ = predict

    def format(self, text: str, result: dict | None, fmt: str) -> str:
        if fmt == "jsonl":
            if result is None:
                return json.dumps({"prompt": text, "text": None}, ensure_ascii=False)
            return json.dumps({"prompt": text, **result}, ensure_ascii=False)
        if fmt == "text":
            return "" if result is None else result["text"]
        raise UsageError(f"--format {fmt}: language-model output is written as text or jsonl")

    def header(self, fmt: str) -> str:
        return ""  # every format is line by line

    def footer(self, fmt: str) -> str:
        return ""

    def show_attention(self, jsonl: bool, plot_dir=None) -> None:
        raise UsageError("--attention/--plot: a language model has no attention weights to show")
