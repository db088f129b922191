"""Sentiment (any label set): pooled encoder states → MLP → labels.

Data: TSV/CSV with a header or JSONL, text and label columns found by name or given with
``--set sentiment.text_column=…``; or ``hf:NAME``. Labels may be strings or integers; ``label_names`` maps
integer ids to names as the data is read (``{ "0" = "negative", "1" = "positive" }``), so the checkpoint's
labels, predictions and reports show the names. The mapping is stored in the checkpoint's recipe, so
evaluation data labelled with the same ids reads the same way; a label the mapping does not name (data
already written with the names) stays as it is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from lstmtext.config import INFERENCE_PRECISIONS, choice
from lstmtext.data import header_where, is_hf, load_hf, pick_column, read_records
from lstmtext.errors import UsageError
from lstmtext.heads import POOLINGS
from lstmtext.tasks.contract import one_or_many

NAME = "sentiment"
MAIN_METRIC = "accuracy"
HIGHER_IS_BETTER = True
FORMATS = ("text", "jsonl")
PRECISIONS = INFERENCE_PRECISIONS  # int8 too: one encoder pass and a pooled head
SPEED_UNIT = "words"  # benchmark speed counts whitespace words of the input lines
EVAL_OPTIONS = ()
ONNX = "lstmtext.tasks.sentiment_onnx"  # lstmtext export: the module with its graph and the model that runs it
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "polarity")


@dataclass
class Options:
    text_column: str = ""  # empty = the first of: text, sentence, review, content, document
    label_column: str = ""  # empty = the first of: label, labels, sentiment, class, polarity
    pooling: str = choice(*POOLINGS)
    hidden_dim: int = 256
    dropout: float = 0.3
    label_names: dict[str, str] = field(default_factory=dict)  # label in the data → the name a model uses


DEFAULTS: dict = {}


def validate(options: Options) -> None:
    if options.hidden_dim < 1:
        raise UsageError(f"sentiment.hidden_dim: must be at least 1, got {options.hidden_dim}")
    for key, name in options.label_names.items():
        if not key.strip() or not name.strip():
            raise UsageError(
                f"sentiment.label_names: expected a non-empty label and name in each entry, got {key!r} = {name!r}"
            )


def label_name(label, opts: Options) -> str:
    """The label as the model knows it: its name where ``label_names`` gives one."""
    label = str(label).strip()
    return opts.label_names.get(label, label)


# -- data --------------------------------------------------------------------------------------------------
def read(source: str, opts: Options, split: str = "train") -> list[dict]:
    """Examples {"text", "label", "where"}; ``where`` names the file and line for error messages. Each line is
    checked as it is read, and one with an empty text is counted rather than kept."""
    kept = []
    skipped = 0
    for e in _hf_examples(source, opts, split) if is_hf(source) else _file_examples(source, opts):
        if e["text"]:
            kept.append(e)
        else:
            skipped += 1
    if not kept:
        raise UsageError(f"{source}: no examples found; expected a text and a label on each line")
    if skipped:
        from lstmtext.progress import note

        note(f"{source}: skipped {skipped} example(s) with empty text")
    return kept


def _hf_examples(source: str, opts: Options, split: str):
    ds = load_hf(source, split)
    text_col = pick_column(ds.column_names, opts.text_column, TEXT_COLUMNS, "text", source)
    label_col = pick_column(ds.column_names, opts.label_column, LABEL_COLUMNS, "label", source)
    names = getattr(ds.features[label_col], "names", None)  # ClassLabel integers → their names
    for i, row in enumerate(ds):
        label = row[label_col]
        label = names[label] if names is not None and isinstance(label, int) and label >= 0 else label
        yield {"text": str(row[text_col]).strip(), "label": label_name(label, opts), "where": f"{source} row {i}"}


def _file_examples(source: str, opts: Options):
    cols = None
    for lineno, rec in read_records(source):
        if cols is None:
            cols = (
                pick_column(rec, opts.text_column, TEXT_COLUMNS, "text", header_where(source, lineno)),
                pick_column(rec, opts.label_column, LABEL_COLUMNS, "label", header_where(source, lineno)),
            )
        text, label = rec.get(cols[0]), rec.get(cols[1])
        where = f"{source} line {lineno}"
        if text is None or label is None:
            raise UsageError(f"{where}: expected fields '{cols[0]}' and '{cols[1]}'")
        if not str(label).strip():
            raise UsageError(f"{where}: the label is empty")
        yield {"text": str(text).strip(), "label": label_name(label, opts), "where": where}


def tokenizer_texts(examples: list[dict]):
    return (e["text"] for e in examples)


def make_labels(examples: list[dict]) -> list[str]:
    names = {e["label"] for e in examples}
    try:
        return sorted(names, key=lambda s: (float(s), s))  # 0 < 1 < 2 … < 10, not "10" < "2"
    except ValueError:
        return sorted(names)


def featurize(examples: list[dict], tok, labels: list[str], recipe) -> list[dict]:
    max_length = recipe.data.max_length
    index = {name: i for i, name in enumerate(labels)}
    ids = tok.encode([e["text"] for e in examples])
    feats = []
    for e, seq in zip(examples, ids):
        if len(seq) > max_length:  # keep head and tail: reviews state their verdict at either end
            head = max_length // 4
            seq = seq[:head] + seq[len(seq) - (max_length - head) :]
        f = {"ids": seq, "length": len(seq)}
        if "label" in e:
            if e["label"] not in index:
                raise UsageError(
                    f"{e['where']}: label '{e['label']}' was never seen in training "
                    f"(this model knows: {', '.join(labels)})"
                )
            f["label"] = index[e["label"]]
        feats.append(f)
    return feats


def collate(features: list[dict]) -> dict:
    import torch

    from lstmtext.tasks.common import pad

    batch = {
        "tokens": pad([f["ids"] for f in features]),
        "lengths": torch.tensor([max(1, f["length"]) for f in features]),
    }
    if features and "label" in features[0]:
        batch["labels"] = torch.tensor([f["label"] for f in features])
    return batch


# -- model -------------------------------------------------------------------------------------------------
def build_model(recipe, vocab_size: int, labels: list[str]):
    from lstmtext.heads.classify import ClassifyHead
    from lstmtext.model import Model, build_encoder

    encoder = build_encoder(recipe.encoder, vocab_size)
    o = recipe.options
    return Model(encoder, ClassifyHead(encoder.output_dim, len(labels), o.hidden_dim, o.dropout, o.pooling))


def trained_weights(state: dict, meta: dict) -> tuple[dict, str]:
    return state, ""


def init_from(own: dict, state: dict, meta: dict) -> str:
    return ""  # a classifier's head fits only a checkpoint of its own task (the shared copy takes that)


def ensemble(models: list):
    from lstmtext.ensemble import ClassifyEnsemble

    return ClassifyEnsemble(models)  # the mean of the members' class probabilities


# -- evaluation --------------------------------------------------------------------------------------------
def evaluate(
    model, features: list[dict], labels: list[str], device, batch_tokens: int, tok=None, selection: bool = False
) -> dict:
    from lstmtext.tasks.common import classification_metrics, map_batches

    if hasattr(model, "classify"):  # an exported model (tasks/sentiment_onnx.py): no loss
        pairs = [(i, p) for idx, probs in model.classify(features, batch_tokens) for i, p in zip(idx, probs)]
        gold, pred = [features[i]["label"] for i, _ in pairs], [max(range(len(p)), key=p.__getitem__) for _, p in pairs]
        return classification_metrics(gold, pred, labels)

    def run(batch: dict):
        logits, loss = model(batch)
        return batch["labels"].tolist(), logits.argmax(-1).tolist(), loss.item()

    gold, pred = [], []
    total_loss, n = 0.0, 0
    model.eval()
    for _, (g, p, loss) in map_batches(run, features, collate, batch_tokens, device):
        total_loss += loss * len(g)
        n += len(g)
        gold += g
        pred += p
    metrics = classification_metrics(gold, pred, labels)
    metrics["loss"] = total_loss / max(1, n)
    return metrics


def summary(metrics: dict) -> dict:
    """The scalar metrics shown after each evaluation during training."""
    return {k: metrics[k] for k in ("loss", "accuracy", "macro_f1") if k in metrics}


def plots(metrics: dict, out_dir) -> list:
    """``evaluate --plot DIR``: the confusion matrix (counts; colour: each gold label's row shares)."""
    from pathlib import Path

    from lstmtext.viz import charts

    title = f"Confusion matrix: {metrics['examples']} examples, accuracy {100 * metrics['accuracy']:.1f}%"
    return [charts.confusion(metrics["confusion"], metrics["labels"], Path(out_dir) / "confusion.png", title)]


def report(metrics: dict, console) -> None:
    from rich.table import Table

    labels = metrics["labels"]
    head = Table(title=f"{metrics['examples']} examples", show_header=False, box=None)
    head.add_row("accuracy", f"{100 * metrics['accuracy']:.2f}")
    head.add_row("macro-F1", f"{100 * metrics['macro_f1']:.2f}")
    console.print(head)
    t = Table(title="per class")
    for c in ("label", "precision", "recall", "F1", "support"):
        t.add_column(c, justify="left" if c == "label" else "right")
    for name in labels:
        m = metrics["per_class"][name]
        t.add_row(
            name, f"{100 * m['precision']:.2f}", f"{100 * m['recall']:.2f}", f"{100 * m['f1']:.2f}", str(m["support"])
        )
    console.print(t)
    cm = Table(title="confusion (rows: gold, columns: predicted)")
    cm.add_column("gold \\ pred")
    for name in labels:
        cm.add_column(name, justify="right")
    for name, row in zip(labels, metrics["confusion"]):
        cm.add_row(name, *map(str, row))
    console.print(cm)


# -- prediction --------------------------------------------------------------------------------------------
class Predictor:
    """What ``lstmtext.load`` returns for a sentiment checkpoint."""

    task = NAME
    stream_batch = 8192  # lines per predict call from a file or a fast pipe (cli.stream_predictions)
    batch_tokens = 16384  # pieces per batch in predict and evaluate
    explain_formats = FORMATS
    explain = 0  # >0: Integrated Gradients with this many steps adds word attributions (lstmtext/explain.py)

    def __init__(self, model, tok, labels: list[str], recipe, device):
        self.model, self.tok, self.labels, self.recipe, self.device = model, tok, labels, recipe, device
        self.workers: int | None = None  # threads of map_batches: None = one per intra-op thread on a CPU
        self.attention, self.plot_dir, self.lines_seen = False, None, 0  # show_attention; lines so far (PNG names)
        self.explain_color = False  # explained words shaded for a terminal (format "text")

    @one_or_many
    def predict(self, texts: list[str]) -> list[dict | None]:
        """One dict {"label", "score", "scores"} per text; None for an empty text."""
        from lstmtext.tasks.common import map_batches

        out: list[dict | None] = [None] * len(texts)
        keep = [i for i, t in enumerate(texts) if t.strip()]
        feats = featurize([{"text": texts[i].strip()} for i in keep], self.tok, self.labels, self.recipe)

        def run(batch: dict) -> list[list[float]]:
            return self.model(batch)[0].float().softmax(-1).tolist()

        if hasattr(self.model, "classify"):  # an exported model (tasks/sentiment_onnx.py)
            batches = self.model.classify(feats, self.batch_tokens, self.workers)
        else:
            self.model.eval()
            batches = map_batches(run, feats, collate, self.batch_tokens, self.device, workers=self.workers)
        for idx, probs in batches:
            for j, p in zip(idx, probs):
                best = max(range(len(p)), key=p.__getitem__)
                out[keep[j]] = {
                    "label": self.labels[best],
                    "score": round(p[best], 4),
                    "scores": {name: round(q, 4) for name, q in zip(self.labels, p)},
                }
        if self.attention or self.plot_dir is not None:
            self._add_attention(texts, keep, feats, out)
        if self.explain:
            from lstmtext.explain import explain_sentiment

            explain_sentiment(self, feats, [out[i] for i in keep])
        return out

    def show_attention(self, jsonl: bool = True, plot_dir=None) -> None:
        """``predict --attention`` / ``--plot DIR``: attention pooling's weights per piece (JSONL, one PNG a line)."""
        if getattr(self, "exported", None):
            raise UsageError("--attention/--plot read the model's weights: pass the checkpoint, not its ONNX export")
        pooling = self.model.head.pooling
        if pooling != "attention":
            raise UsageError(
                f"--attention/--plot: this model pools with '{pooling}', which has no attention weights; "
                "train it with --set sentiment.pooling=attention"
            )
        from lstmtext.viz.attention import plot_dir as folder

        self.attention, self.plot_dir = jsonl, folder(plot_dir) if plot_dir is not None else None

    def _add_attention(self, texts: list[str], keep: list[int], feats: list[dict], out: list) -> None:
        """[[piece, weight], …] over each text's real pieces (summing to 1), in the result and/or as a PNG."""
        from lstmtext.tasks.common import map_batches
        from lstmtext.viz.attention import picture_name, strip

        model, first = self.model, self.lines_seen + 1
        self.lines_seen += len(texts)

        def run(batch: dict) -> list[list[float]]:
            states = model.encoder(batch["tokens"], batch["lengths"])
            w = model.head.attention_weights(states, batch["lengths"]).float()
            return [row[:n] for row, n in zip(w.tolist(), batch["lengths"].tolist())]

        for idx, rows in map_batches(run, feats, collate, self.batch_tokens, self.device, workers=self.workers):
            for j, row in zip(idx, rows):
                pieces = [self.tok.sp.IdToPiece(i) for i in feats[j]["ids"]]
                result, line = out[keep[j]], first + keep[j]
                if self.plot_dir is not None:
                    title = f"{line}: {result['label']} ({result['score']:.2f}): {texts[keep[j]].strip()}"
                    strip(picture_name(self.plot_dir, line), pieces, row, title)
                if self.attention:
                    result["attention"] = [[p, round(w, 4)] for p, w in zip(pieces, row)]

    __call__ = predict

    def format(self, text: str, result: dict | None, fmt: str) -> str:
        if fmt == "jsonl":
            if result is None:
                return json.dumps({"text": text, "label": None}, ensure_ascii=False)
            return json.dumps({"text": text, **result}, ensure_ascii=False)
        if fmt == "text":
            if result is not None and "attributions" in result:
                from lstmtext.explain import shade

                return f"{result['label']}\t{shade(result['attributions'], self.explain_color)}"
            return "" if result is None else result["label"]
        raise UsageError(f"--format {fmt}: sentiment predictions are written as text or jsonl")

    def header(self, fmt: str) -> str:
        return ""  # every format is line by line

    def footer(self, fmt: str) -> str:
        return ""
