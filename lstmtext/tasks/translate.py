"""Translation: the shared BiLSTM encoder reads the source, an LSTM decoder with attention writes the target.

Data: ``PREFIX.SRC`` + ``PREFIX.TGT`` line-aligned files (give the PREFIX, either file, or a folder holding
``SPLIT.SRC``), TSV/CSV/JSONL with source and target columns (``source``/``target``, ``src``/``tgt``, the
language codes, or a JSON ``translation`` object keyed by language), or ``hf:NAME`` with a ``translation``
column or two text columns. One joint SentencePiece model covers both languages, so the decoder shares the
encoder's embedding.

Scores: sacreBLEU (cased, detokenized, with its signature), chrF and lowercased BLEU, on hypotheses from the
same beam decoder that ``lstmtext translate`` runs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lstmtext.config import PRECISIONS as TRAIN_PRECISIONS
from lstmtext.config import choice
from lstmtext.data import file_kind, header_where, is_hf, load_hf, read_records
from lstmtext.errors import UsageError
from lstmtext.heads import ATTENTIONS
from lstmtext.tasks import translate_data as TD
from lstmtext.tasks.contract import one_or_many
from lstmtext.tasks.translate_data import columns, from_record, lang_suffix, parallel_paths, read_parallel
from lstmtext.tasks.translate_decode import MAX_BEAM, check_decoding, decode  # noqa: F401 (the CLI's)

NAME = "translate"
MAIN_METRIC = "bleu"
HIGHER_IS_BETTER = True
FORMATS = ("text", "jsonl")
PRECISIONS = TRAIN_PRECISIONS  # no int8: beam search steps LSTM cells one piece at a time
SPEED_UNIT = "sentences"  # benchmark speed counts input lines translated
EVAL_OPTIONS = ("beam", "length_penalty", "max_length_ratio", "max_length_extra", "max_output_length")


@dataclass
class Options:
    source_lang: str = "de"  # suffix of the source file (PREFIX.de) and column/key name in TSV, JSONL, hf:
    target_lang: str = "en"
    source_column: str = ""  # empty = the first of: source, src, SOURCE_LANG
    target_column: str = ""  # empty = the first of: target, tgt, TARGET_LANG
    hidden_dim: int = 256  # decoder LSTM size
    num_layers: int = 1  # decoder layers
    attention: str = choice(*ATTENTIONS)  # all masked over source padding
    input_feeding: bool = False  # Luong input feeding: a per-step loop, slower to train (heads/seq2seq.py)
    dropout: float = 0.3
    label_smoothing: float = 0.1
    beam: int = 5  # beam size used by translate and evaluate (1 = greedy)
    length_penalty: float = 1.0  # GNMT alpha: score / ((5 + length) / 6) ** alpha; 0 = raw log-probability
    max_length_ratio: float = 1.5  # longest output = ratio × source pieces + max_length_extra, capped
    max_length_extra: int = 10
    max_output_length: int = 256
    select_beam: int = 1  # beam for validation during training: greedy is faster and ranks checkpoints alike


# Sized so that `lstmtext train translate` learns the embedded sample in a short run; recipes/multi30k.toml
# holds the settings for a real corpus. BPE: on a small corpus SentencePiece's unigram model stops at a few
# hundred pieces and splits common words ("im" → "▁i" "m"), doubling sequence lengths; BPE keeps whole words.
# Small batches (~50 sentences) give the sample enough updates an epoch to learn it in few epochs.
DEFAULTS: dict = {
    "data": {"max_length": 128},
    "tokenizer": {"model_type": "bpe"},
    "train": {"batch_tokens": 800, "lr": 0.003, "epochs": 8},
}


def validate(options: Options) -> None:
    for key in ("beam", "select_beam", "hidden_dim", "num_layers", "max_output_length"):
        if getattr(options, key) < 1:
            raise UsageError(f"translate.{key}: must be at least 1")
    for key in ("beam", "select_beam"):
        if getattr(options, key) > MAX_BEAM:
            raise UsageError(f"translate.{key}: expected a beam of 1 to {MAX_BEAM}, got {getattr(options, key)}")
    if options.label_smoothing < 0 or options.label_smoothing >= 1:
        raise UsageError(f"translate.label_smoothing: expected a number in [0, 1), got {options.label_smoothing}")
    if not (math.isfinite(options.length_penalty) and options.length_penalty >= 0):
        raise UsageError(f"translate.length_penalty: expected a finite number ≥ 0, got {options.length_penalty}")
    if not (math.isfinite(options.max_length_ratio) and options.max_length_ratio > 0):
        raise UsageError(f"translate.max_length_ratio: expected a finite number > 0, got {options.max_length_ratio}")
    if options.max_length_extra < 0:
        raise UsageError(f"translate.max_length_extra: expected a number ≥ 0, got {options.max_length_extra}")


def trained_weights(state: dict, meta: dict) -> tuple[dict, str]:
    return state, ""


def init_from(own: dict, state: dict, meta: dict) -> str:
    return ""  # a decoder fits only another translation checkpoint (the shared copy takes that)


def ensemble(models: list):
    raise UsageError("translate models do not ensemble here: beam search steps one decoder")


@dataclass
class Decoding:
    """The decoding settings build_model hangs on the model, so evaluate() needs no recipe."""

    beam: int
    alpha: float
    ratio: float
    extra: int
    cap: int
    select_beam: int

    def max_len(self, src_lengths: list[int]) -> list[int]:
        from lstmtext.decoding import max_lengths

        return max_lengths(src_lengths, self.ratio, self.extra, self.cap)


# -- data --------------------------------------------------------------------------------------------------
def read(source: str, opts: Options, split: str = "train") -> list[dict]:
    """Examples {"source", "target", "where"}; pairs with an empty side are skipped (and counted, not kept:
    each line is checked as it is read, and memory grows only with the pairs kept)."""
    kept, skipped = [], 0
    for e in _pairs(source, opts, split):
        if e["source"] and e["target"]:
            kept.append(e)
        else:
            skipped += 1
    if not kept:
        raise UsageError(f"{source}: no sentence pairs found; expected a source and a target sentence per line")
    if skipped:
        from lstmtext.progress import note

        note(f"{source}: skipped {skipped} pair(s) with an empty source or target")
    return kept


def _pairs(source: str, opts: Options, split: str):
    if is_hf(source):
        ds = load_hf(source, split)
        names = ds.column_names
        nested = "translation" in names and not (opts.source_column or opts.target_column)
        cols = None if nested else columns(names, opts, source)
        for i, row in enumerate(ds):
            yield from_record(row, opts, cols, f"{source} row {i}")
    elif (
        Path(source).is_file() and file_kind(source) in ("tsv", "csv", "jsonl") and not lang_suffix(Path(source), opts)
    ):
        cols = None
        for lineno, rec in read_records(source):
            if cols is None:
                has_pair = isinstance(rec.get("translation"), dict)
                cols = (
                    ("", "")
                    if has_pair and not (opts.source_column or opts.target_column)
                    else columns(rec, opts, header_where(source, lineno))
                )
            yield from_record(rec, opts, cols, f"{source} line {lineno}")
    else:
        yield from read_parallel(*parallel_paths(source, opts, split))


def tokenizer_texts(examples: list[dict]):
    """Both sides: one joint SentencePiece model, so the embedding can be shared."""
    for e in examples:
        yield e["source"]
        yield e["target"]


def make_labels(examples: list[dict]) -> list[str]:
    return []


def featurize(examples: list[dict], tok, labels: list[str], recipe) -> list[dict]:
    """Source pieces (cut to data.max_length) and, when there is a target, its pieces (BOS/EOS added in collate)."""
    L = recipe.data.max_length
    src = tok.encode([e["source"] for e in examples])
    has_tgt = bool(examples) and "target" in examples[0]
    tgt = tok.encode([e["target"] for e in examples]) if has_tgt else [None] * len(examples)
    feats = []
    for e, s, t in zip(examples, src, tgt):
        f = {"src": s[:L], "cut": len(s) > L, "src_words": len(e["source"].split())}
        if t is not None:
            f["tgt"] = t[: L - 1]
            f["ref"] = e["target"]
        f["length"] = max(len(f["src"]), len(f.get("tgt", ())) + 1)  # the longer side sets the padded size
        feats.append(f)
    return feats


def collate(features: list[dict]) -> dict:
    import torch

    from lstmtext.tasks.common import pad
    from lstmtext.tokenizer import BOS, EOS

    batch = {
        "tokens": pad([f["src"] for f in features]),
        "lengths": torch.tensor([max(1, len(f["src"])) for f in features]),
    }
    if features and "tgt" in features[0]:
        batch["tgt_in"] = pad([[BOS] + f["tgt"] for f in features])  # (B, U)
        batch["tgt_out"] = pad([f["tgt"] + [EOS] for f in features])  # (B, U)
    return batch


# -- model -------------------------------------------------------------------------------------------------
def build_model(recipe, vocab_size: int, labels: list[str]):
    from lstmtext.heads.seq2seq import Seq2SeqHead
    from lstmtext.model import Model, build_encoder

    o = recipe.options
    if o.attention == "dot" and o.hidden_dim != 2 * recipe.encoder.hidden_dim:
        raise UsageError(
            f"translate.attention=dot needs translate.hidden_dim = 2 × encoder.hidden_dim ({2 * recipe.encoder.hidden_dim}); "
            "use attention=general otherwise"
        )
    encoder = build_encoder(recipe.encoder, vocab_size)
    head = Seq2SeqHead(
        encoder.embed,
        encoder.output_dim,
        o.hidden_dim,
        o.num_layers,
        o.attention,
        o.input_feeding,
        o.dropout,
        o.label_smoothing,
    )
    model = Model(encoder, head)
    model.decoding = Decoding(
        o.beam, o.length_penalty, o.max_length_ratio, o.max_length_extra, o.max_output_length, o.select_beam
    )
    return model


# -- evaluation --------------------------------------------------------------------------------------------
def evaluate(
    model, features: list[dict], labels: list[str], device, batch_tokens: int, tok=None, selection: bool = False
) -> dict:
    import torch.nn.functional as F
    from sacrebleu.metrics import BLEU, CHRF

    from lstmtext.tasks.common import map_batches
    from lstmtext.tokenizer import PAD

    def nll_sum(batch: dict) -> tuple[float, int]:
        logits, _ = model(batch)
        target = batch["tgt_out"]
        nll = F.cross_entropy(
            logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=PAD, reduction="sum"
        )
        return nll.item(), int((target != PAD).sum())

    # Model selection during training decodes with select_beam (greedy by default: several times faster,
    # and it ranks checkpoints the same way); reported scores use the full beam.
    dec = model.decoding
    beam = dec.select_beam if selection else dec.beam
    model.eval()
    sums = [r for _, r in map_batches(nll_sum, features, collate, batch_tokens, device)]
    nll, count = sum(s for s, _ in sums), sum(c for _, c in sums)
    hyps = [tok.decode(h[0][0]) for h in decode(model, features, device, beam)]
    refs = [f["ref"] for f in features]
    # force: hypotheses come from our own detokenizer, so sacreBLEU's "tokenized period" warning is spurious
    bleu, chrf, bleu_lc = BLEU(force=True), CHRF(), BLEU(lowercase=True, force=True)
    b = bleu.corpus_score(hyps, [refs])
    loss = nll / max(1, count)
    return {
        "bleu": b.score,
        "chrf": chrf.corpus_score(hyps, [refs]).score,
        "bleu_lc": bleu_lc.corpus_score(hyps, [refs]).score,
        "signature": str(bleu.get_signature()),
        "bleu_detail": str(b),
        "loss": loss,
        "ppl": math.exp(min(loss, 50)),
        "beam": beam,
        "examples": len(features),
        "samples": [{"reference": r, "translation": h} for r, h in list(zip(refs, hyps))[:3]],
        # the pictures' data: only for `lstmtext evaluate`, not for every model selection during training
        "by_length": [] if selection else by_length(bleu, hyps, refs, [f["src_words"] for f in features]),
    }


def by_length(bleu, hyps: list[str], refs: list[str], src_words: list[int]) -> list[dict]:
    """sacreBLEU of the sentences in each source-length bucket."""
    from lstmtext.tasks.common import length_buckets

    return [
        {
            "bucket": name,
            "sentences": len(idx),
            "bleu": bleu.corpus_score([hyps[i] for i in idx], [[refs[i] for i in idx]]).score,
        }
        for name, idx in length_buckets(src_words)
    ]


def summary(metrics: dict) -> dict:
    """The scalar metrics shown after each evaluation during training (loss: teacher-forced NLL per piece)."""
    return {k: metrics[k] for k in ("loss", "bleu", "chrf", "bleu_lc") if k in metrics}


def plots(metrics: dict, out_dir) -> list:
    """``evaluate --plot DIR``: sacreBLEU of the sentences in each source-length bucket."""
    from lstmtext.viz import charts

    title = (
        f"BLEU by source length: {metrics['examples']} sentences, BLEU {metrics['bleu']:.1f}, beam {metrics['beam']}"
    )
    return [charts.by_length(metrics["by_length"], Path(out_dir) / "bleu_by_length.png", title)]


def report(metrics: dict, console) -> None:
    from rich.table import Table

    t = Table(title=f"{metrics['examples']} sentence pairs, beam {metrics['beam']}", show_header=False, box=None)
    t.add_row("BLEU", f"{metrics['bleu']:.2f}")
    t.add_row("chrF", f"{metrics['chrf']:.2f}")
    t.add_row("BLEU (lowercased)", f"{metrics['bleu_lc']:.2f}")
    t.add_row("loss (NLL / piece)", f"{metrics['loss']:.4f} (perplexity {metrics['ppl']:.2f})")
    console.print(t)
    # Printed whole, never cut to the terminal width: the signature is what makes a BLEU score comparable.
    console.print(f"sacreBLEU signature: {metrics['signature']}", markup=False, highlight=False, soft_wrap=True)
    console.print(metrics["bleu_detail"], markup=False, highlight=False, soft_wrap=True)
    for s in metrics.get("samples", []):
        console.print(
            f"  ref: {s['reference']}\n  hyp: {s['translation']}", markup=False, highlight=False, soft_wrap=True
        )


# -- prediction --------------------------------------------------------------------------------------------
class Predictor:
    """What ``lstmtext.load`` returns for a translation checkpoint."""

    task = NAME
    stream_batch = (
        64  # lines per predict call (cli.stream_predictions); beam search: its cost grows with the batch's rows
    )
    batch_tokens = 16384  # pieces per batch when lstmtext evaluate scores the checkpoint
    explain_formats = ()  # no --explain: generation and beam search have no single score to attribute

    def __init__(self, model, tok, labels: list[str], recipe, device):
        self.model, self.tok, self.labels, self.recipe, self.device = model, tok, labels, recipe, device
        self.attention, self.plot_dir, self.lines_seen = False, None, 0  # show_attention; lines so far (PNG names)

    def translate(
        self, lines: list[str], beam: int | None = None, n_best: int = 1, attention: bool = False
    ) -> list[dict | None]:
        """Per line {"translation", "n_best": [{"text", "score"}, …]} best first; None for an empty line.
        ``attention`` adds {"source", "target", "weights"} for the best hypothesis (translate_data.attention_record).
        With ``plot_dir`` set, each line's heatmap goes there as NNNN.png (its number among all lines so far)."""
        beam = max(beam or self.recipe.options.beam, n_best)  # a beam keeps at most K hypotheses
        out: list[dict | None] = [None] * len(lines)
        keep = [i for i, t in enumerate(lines) if t.strip()]
        plot, first = self.plot_dir, self.lines_seen + 1
        self.lines_seen += len(lines)
        if not keep:
            return out
        feats = featurize([{"source": lines[i].strip()} for i in keep], self.tok, [], self.recipe)
        cut = sum(f["cut"] for f in feats)
        if cut:
            from lstmtext.progress import note

            note(
                f"{cut} input line(s) longer than {self.recipe.data.max_length} pieces were cut to that length (data.max_length)"
            )
        weigh = attention or plot is not None
        for i, f, hyps in zip(keep, feats, decode(self.model, feats, self.device, beam, n_best, attention=weigh)):
            nbest = [{"text": self.tok.decode(h[0]), "score": round(h[1], 4)} for h in hyps[:n_best]]
            out[i] = {"translation": nbest[0]["text"], "n_best": nbest}
            if weigh:
                record = TD.attention_record(self.tok, f["src"], hyps[0][0], hyps[0][2])
                if plot is not None:
                    TD.plot_attention(plot, first + i, lines[i].strip(), record)
                if attention:
                    out[i]["attention"] = record
        return out

    def show_attention(self, jsonl: bool = True, plot_dir=None) -> None:
        """``predict --attention`` / ``--plot DIR``: add the weights to each result, draw one heatmap per line."""
        from lstmtext.viz.attention import plot_dir as folder

        self.attention, self.plot_dir = jsonl, folder(plot_dir) if plot_dir is not None else None

    @one_or_many
    def predict(self, lines: list[str]) -> list[dict | None]:
        return self.translate(lines, attention=self.attention)

    __call__ = predict

    def format(self, text: str, result: dict | None, fmt: str) -> str:
        if fmt == "jsonl":
            if result is None:
                return json.dumps({"source": text, "translation": "", "n_best": []}, ensure_ascii=False)
            return json.dumps({"source": text, **result}, ensure_ascii=False)
        if fmt == "text":
            return "" if result is None else result["translation"]
        raise UsageError(f"--format {fmt}: translations are written as text or jsonl")

    def header(self, fmt: str) -> str:
        return ""  # every format is line by line

    def footer(self, fmt: str) -> str:
        return ""
