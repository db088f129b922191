"""Named-entity recognition: each word's first piece → linear → a CRF over BIO tags.

Data: CoNLL files (token … tag, tag last, blank line between sentences, ``-DOCSTART-`` skipped), JSONL
``{"tokens", "tags"}``, or ``hf:NAME`` with class-label tags (``hf:eriktks/conll2003``). Whatever the file's
scheme (BIO, IOB1 as CoNLL-2003 ships, BIOES/BILOU), tags are converted to BIO when read, so the labels a
model knows are always O, B-TYPE and I-TYPE.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from lstmtext.config import INFERENCE_PRECISIONS, choice
from lstmtext.data import file_kind, is_hf
from lstmtext.errors import UsageError
from lstmtext.heads import WORD_STATES
from lstmtext.tasks import ner_format
from lstmtext.tasks.contract import one_or_many
from lstmtext.tasks.ner_data import (
    assemble,
    detect_scheme,
    document_streams,
    encode_sentences,
    entities,
    entity_metrics,
    pad_chars,
    read_conll,
    read_hf,
    read_jsonl,
    split_words,
    to_bio,
    windows,
    word_features,
)

NAME = "ner"
MAIN_METRIC = "f1"
HIGHER_IS_BETTER = True
FORMATS = ("conll", "jsonl", "inline", "html")
PRECISIONS = INFERENCE_PRECISIONS  # int8 too: one encoder pass, a linear layer and a CRF
SPEED_UNIT = "words"  # benchmark speed counts whitespace words of the input lines
EVAL_OPTIONS = ()  # Viterbi decoding has no settings
ONNX = "lstmtext.tasks.ner_onnx"  # lstmtext export: the module with its graph and the model that runs it


@dataclass
class Options:
    tokens_column: str = ""  # JSONL / hf: empty = the first of: tokens, words
    tags_column: str = ""  # JSONL / hf: empty = the first of: ner_tags, tags, labels, ner
    dropout: float = 0.0  # on the word states before the tag projection (the encoder already drops out its output)
    word_state: str = choice(*WORD_STATES)  # first: both directions at the word's first piece | span: see heads/tag.py
    word_hidden: int = 0  # >0: a word-level BiLSTM of this width per direction under the tag projection
    context: int = 0  # CoNLL input: pieces of the same document read on each side of a sentence (0: alone)
    shape_dim: int = 0  # >0: an embedding of this size of each word's shape (Aa, AA, aa, 0, ...) beside its state
    char_dim: int = 0  # >0: a character BiLSTM over each word's bytes, embedded at this size, beside its state
    char_hidden: int = 25  # the character BiLSTM's width per direction (Lample et al. 2016: 25)
    word_dropout: float = 0.0  # training: the chance that a word's whole state is zeroed (heads/tag.py)
    scheme: str = choice("bio", "bioes")  # the CRF's tags (input and output are BIO either way; heads/tag.py)
    lm_weight: float = 0.0  # >0: training also predicts each next and previous piece, this much of the loss
    lm_rate: float = 0.25  # the share of pieces that lm_weight's objective is computed on (its cost)


DEFAULTS: dict = {"data": {"max_length": 256}, "train": {"batch_tokens": 2000}}


def validate(options: Options) -> None:
    for name in ("word_hidden", "context", "shape_dim", "char_dim", "lm_weight"):  # where 0 turns the part off
        if getattr(options, name) < 0:
            raise UsageError(f"ner.{name}: must be 0 (off) or a positive number")
    if options.char_dim and options.char_hidden < 1:
        raise UsageError(f"ner.char_hidden: the character BiLSTM needs a width of 1 or more, got {options.char_hidden}")
    if not 0 < options.lm_rate <= 1:
        raise UsageError(f"ner.lm_rate: expected a share of the pieces in (0, 1], got {options.lm_rate}")


def read(source: str, opts: Options, split: str = "train") -> list[dict]:
    """Sentences {"tokens", "tags" (BIO), "where"}; ``where`` names the file and line for error messages."""
    if is_hf(source):
        examples = read_hf(source, opts, split)
    elif file_kind(source) == "jsonl":
        examples = read_jsonl(source, opts)
    else:
        examples = read_conll(source)
    if not examples:
        raise UsageError(
            f"{source}: no sentences found; expected 'TOKEN ... TAG' lines with a blank line between sentences"
        )
    scheme = detect_scheme([e["tags"] for e in examples])
    for e in examples:
        e["tags"] = to_bio(e["tags"])
    if scheme != "BIO":
        from lstmtext.progress import note

        note(f"{source}: tags are {scheme}; converted to BIO")
    return examples


def tokenizer_texts(examples: list[dict]):
    return (" ".join(e["tokens"]) for e in examples)


def make_labels(examples: list[dict]) -> list[str]:
    """O, then B- and I- of every entity type seen (both, so an entity type seen only as single words in
    training still accepts multi-word entities in evaluation data)."""
    kinds = sorted({t[2:] for e in examples for t in e["tags"] if t != "O"})
    return ["O"] + [f"{p}-{k}" for k in kinds for p in "BI"]


def featurize(examples: list[dict], tok, labels: list[str], recipe, right_context: bool = True) -> list[dict]:
    """One feature per window of a sentence (most sentences are one window), with "sent" and "start" so
    predictions can be put back together. A window's first tag I-X becomes B-X: the CRF forbids I-X first.

    With ner.context > 0 and examples that name their document (CoNLL files), a window also reads up to that
    many pieces of its document on each side, which carry no tags: a name tagged in a headline or in the
    previous sentence is seen again (as in FLERT, Schweter & Akbik 2020). right_context=False reads only the
    text before each sentence, as a stream must (``tag --context``). Examples without "doc" are read alone."""
    max_length = recipe.data.max_length
    context = recipe.options.context
    index = {name: i for i, name in enumerate(labels)}
    encoded = list(encode_sentences(tok, [e["tokens"] for e in examples]))
    use_context = context > 0 and all("doc" in e for e in examples)
    shapes, chars = recipe.options.shape_dim > 0, recipe.options.char_dim > 0
    if use_context:
        streams, offsets = document_streams(examples, encoded)
    feats = []
    for si, (e, (ids, first)) in enumerate(zip(examples, encoded)):
        tag_ids = None
        if "tags" in e:
            tag_ids = []
            for k, t in enumerate(e["tags"]):
                if t not in index:
                    where = f"{e['path']} line {e['line'] + k}" if "line" in e else f"{e['where']} (token {k + 1})"
                    raise UsageError(
                        f"{where}: tag '{t}' was never seen in training (this model knows: {', '.join(labels)})"
                    )
                tag_ids.append(index[t])
        for start, n, w_ids, w_first in windows(ids, first, max_length):
            # each word's last piece: the piece before the next word's first, and the window's last piece
            last = [i - 1 for i in w_first[1:]] + [max(0, len(w_ids) - 1)]
            if use_context:
                stream = streams[e["doc"]]
                a = offsets[si] + first[start]  # the window's span in its document's stream
                b = offsets[si] + (first[start + n] if start + n < len(first) else len(ids))
                left, right = stream[max(0, a - context) : a], stream[b : b + context] if right_context else []
                w_ids = left + w_ids + right
                w_first = [i + len(left) for i in w_first]
                last = [i + len(left) for i in last]
            f = {"ids": w_ids, "first": w_first, "last": last, "length": len(w_ids), "sent": si, "start": start, "n": n}
            f |= word_features(e["tokens"][start : start + n], shapes, chars)
            if tag_ids is not None:
                tags = tag_ids[start : start + n]
                f["tag0"] = tags[0]
                if labels[tags[0]].startswith("I-"):
                    tags = [index["B-" + labels[tags[0]][2:]]] + tags[1:]
                f["tags"] = tags
            feats.append(f)
    return feats


def collate(features: list[dict]) -> dict:
    import torch

    from lstmtext.tasks.common import pad

    batch = {
        "tokens": pad([f["ids"] for f in features]),
        "lengths": torch.tensor([max(1, f["length"]) for f in features]),
        "first": pad([f["first"] for f in features], 0),
        "word_lengths": torch.tensor([max(1, len(f["first"])) for f in features]),
        "last": pad([f["last"] for f in features], 0),
    }
    if features and "shape" in features[0]:
        batch["shape"] = pad([f["shape"] for f in features], 0)
    if features and "chars" in features[0]:
        batch["chars"] = torch.from_numpy(pad_chars([f["chars"] for f in features]))
    if features and "tags" in features[0]:
        batch["tags"] = pad([f["tags"] for f in features], 0)
    return batch


# -- model -------------------------------------------------------------------------------------------------
def build_model(recipe, vocab_size: int, labels: list[str]):
    from lstmtext.heads.tag import TagHead
    from lstmtext.model import Model, build_encoder

    encoder = build_encoder(recipe.encoder, vocab_size)
    o = recipe.options
    lm = None
    if o.lm_weight > 0:
        from lstmtext.heads.lm import LMHead

        lm = LMHead(encoder.embed, encoder.hidden_dim)  # --init-from an LM gives it that LM's head
    head = TagHead(
        encoder.output_dim,
        list(labels),
        o.dropout,
        o.word_state,
        o.word_hidden,
        shape_dim=o.shape_dim,
        char_dim=o.char_dim,
        char_hidden=o.char_hidden,
        word_dropout=o.word_dropout,
        scheme=o.scheme,
        lm=lm,
        lm_weight=o.lm_weight,
        lm_rate=o.lm_rate,
    )
    return Model(encoder, head)


def trained_weights(state: dict, meta: dict) -> tuple[dict, str]:
    return state, ""


def init_from(own: dict, state: dict, meta: dict) -> str:
    """A head that keeps an LM beside its tags (ner.lm_weight) starts that LM from an LM checkpoint's head."""
    if meta.get("task") != "lm":
        return ""
    taken = {
        k: state[src]
        for k in own
        if k.startswith("head.lm.")
        if (src := "head." + k[len("head.lm.") :]) in state and state[src].shape == own[k].shape
    }
    own.update(taken)
    return "the LM head" if taken else ""


def ensemble(models: list):
    from lstmtext.ensemble import TagEnsemble

    return TagEnsemble(models)  # the mean of the members' CRF scores


def decode_features(model, features: list[dict], device, batch_tokens: int, workers: int | None = None):
    """Best tag ids for every feature (in order), and the mean loss when the features carry tags."""
    if hasattr(model, "decode_features"):  # an exported model (tasks/ner_onnx.py) batches and decodes itself
        return model.decode_features(features, batch_tokens, workers)
    from lstmtext.tasks.common import map_batches

    def run(batch: dict):
        em, loss = model(batch)
        return model.head.decode(em, batch["word_lengths"]).tolist(), None if loss is None else loss.item()

    out: list[list[int] | None] = [None] * len(features)
    total_loss, n = 0.0, 0
    model.eval()
    for idx, (paths, loss) in map_batches(run, features, collate, batch_tokens, device, workers=workers):
        if loss is not None:
            total_loss += loss * len(idx)
            n += len(idx)
        for j, path in zip(idx, paths):
            out[j] = path[: len(features[j]["first"])]
    return out, (total_loss / n if n else None)


# -- evaluation --------------------------------------------------------------------------------------------
def evaluate(
    model, features: list[dict], labels: list[str], device, batch_tokens: int, tok=None, selection: bool = False
) -> dict:
    paths, loss = decode_features(model, features, device, batch_tokens)
    n_sents = max((f["sent"] for f in features), default=-1) + 1
    pred = [[labels[i] for i in p] for p in assemble(features, paths, n_sents)]
    # tag0: a window that began inside an entity had its first I- turned into B- for training; score the original
    gold_ids = assemble(features, [[f["tag0"]] + f["tags"][1:] for f in features], n_sents)
    gold = [[labels[i] for i in g] for g in gold_ids]
    metrics = entity_metrics(gold, pred)
    if loss is not None:  # an exported model computes no loss
        metrics["loss"] = loss
    return metrics


def summary(metrics: dict) -> dict:
    """The scalar metrics shown after each evaluation during training."""
    return {k: metrics[k] for k in ("loss", "precision", "recall", "f1") if k in metrics}


def plots(metrics: dict, out_dir) -> list:
    """``evaluate --plot DIR``: precision, recall and F1 of each entity type as bars."""
    from pathlib import Path

    from lstmtext.viz import charts

    title = f"Entities by type: {metrics['entities']} gold entities, micro-F1 {100 * metrics['f1']:.1f}%"
    return [charts.per_type(metrics["per_type"], Path(out_dir) / "per_type.png", title)]


def report(metrics: dict, console) -> None:
    ner_format.report(metrics, console)


# -- prediction --------------------------------------------------------------------------------------------
class Predictor:
    """What ``lstmtext.load`` returns for an NER checkpoint."""

    task = NAME
    stream_batch = 8192  # lines per predict call from a file or a fast pipe (cli.stream_predictions)
    # pieces per batch, small so an LSTM step's activations stay in cache (benchmarks/bench_ner.py --only
    # batching compares sizes); evaluate scores in the same batches
    batch_tokens = 2048
    explain_formats = ("jsonl", "inline")
    explain = 0  # >0: Integrated Gradients with this many steps adds each entity's word attributions (explain.py)

    def __init__(self, model, tok, labels: list[str], recipe, device, pretokenized: bool = False):
        self.model, self.tok, self.labels, self.recipe, self.device = model, tok, labels, recipe, device
        self.pretokenized = pretokenized
        self.explain_color = False  # explained entities' words shaded for a terminal (format "inline")
        self.workers: int | None = None  # threads of map_batches: None = one per intra-op thread on a CPU
        # With context (and a model trained with ner.context), each text is read after the texts before it in
        # its paragraph (a blank text ends one), carried from call to call: the texts are lines of one stream.
        self.context = False
        self._paragraph: list[list[str]] = []  # the words of the current paragraph's latest lines
        self.colour: bool | None = None  # inline in colour; None: when stdout is a terminal (ner_format)

    @one_or_many
    def predict(self, texts: list[str]) -> list[dict]:
        """One dict {"text", "tokens", "tags", "entities"} per text (empty lists for a blank text)."""
        words = [split_words(t, self.pretokenized) for t in texts]
        keep = [i for i, w in enumerate(words) if w]
        examples = [{"tokens": [w for w, _, _ in words[i]]} for i in keep]
        earlier: list[dict] = []
        if self.context and self.recipe.options.context > 0:
            earlier = self._with_paragraphs(words, examples)
        feats = featurize(earlier + examples, self.tok, self.labels, self.recipe, right_context=False)
        if earlier:  # the carried lines were read for context only: drop their features, renumber the rest
            feats = [{**f, "sent": f["sent"] - len(earlier)} for f in feats if f["sent"] >= len(earlier)]
        paths, _ = decode_features(self.model, feats, self.device, self.batch_tokens, workers=self.workers)
        sents = assemble(feats, paths, len(keep))
        out = [{"text": t, "tokens": [], "tags": [], "entities": []} for t in texts]
        for i, path in zip(keep, sents):
            tags = [self.labels[k] for k in path]
            out[i]["tokens"] = [w for w, _, _ in words[i]]
            out[i]["tags"] = tags
            out[i]["entities"] = entities(tags, [(s, e) for _, s, e in words[i]], texts[i])
        if self.explain:
            from lstmtext.explain import explain_entities

            explain_entities(self, feats, keep, out)
        return out

    __call__ = predict

    def _with_paragraphs(self, words: list, examples: list[dict]) -> list[dict]:
        """Give each example its paragraph as "doc"; return the carried lines that come before them (read as
        context only), and carry this call's last paragraph on."""
        para = 0
        earlier = [{"tokens": t, "doc": para} for t in self._paragraph]
        kept = iter(examples)
        for w in words:
            if not w:
                para += 1
                self._paragraph = []
                continue
            e = next(kept)
            e["doc"] = para
            self._paragraph.append(e["tokens"])
        # keep only the words that can still reach the next line: the last `context` words give at least
        # `context` pieces (a word is one piece or more), and a giant line is not carried whole
        need, n = self.recipe.options.context, 0
        for k in range(len(self._paragraph) - 1, -1, -1):
            n += len(self._paragraph[k])
            if n >= need:
                self._paragraph = [self._paragraph[k][n - need :]] + self._paragraph[k + 1 :]
                break
        return earlier

    def format(self, text: str, result: dict | None, fmt: str) -> str:
        result = result or {"text": text, "tokens": [], "tags": [], "entities": []}
        if fmt == "jsonl":
            return json.dumps({"text": text, **{k: v for k, v in result.items() if k != "text"}}, ensure_ascii=False)
        if fmt == "conll":
            if not result["tokens"]:
                return ""
            # the blank line after each sentence comes from the newline write_line adds
            return "".join(f"{w}\t{t}\n" for w, t in zip(result["tokens"], result["tags"]))
        if fmt == "inline":
            if not result["tokens"]:
                return ""
            if self.colour is None:
                self.colour = ner_format.use_colour()
            line = ner_format.inline(text, result, self.colour)
            if any("attributions" in e for e in result["entities"]):
                from lstmtext.explain import entity_lines

                line += entity_lines(result, self.explain_color)
            return line
        if fmt == "html":
            return ner_format.html_line(text, result)
        raise UsageError(f"--format {fmt}: NER predictions are written as conll, jsonl, inline or html")

    def header(self, fmt: str) -> str:
        return ner_format.HEADER if fmt == "html" else ""

    def footer(self, fmt: str) -> str:
        return ner_format.FOOTER if fmt == "html" else ""

    def show_attention(self, jsonl: bool, plot_dir=None) -> None:
        raise UsageError("--attention/--plot: a NER model has no attention weights to show")
