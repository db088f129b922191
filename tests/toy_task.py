"""A toy task for tests/test_contract.py, written only against the Task protocol (lstmtext/tasks/contract.py):
it reads the sentiment sample's text column and learns to predict each text's length in words, a regression
with no labels. Nothing in lstmtext knows about it; the test registers it in TASKS as "toy_task" (pytest puts
tests/ on sys.path)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from lstmtext.config import PRECISIONS as TRAIN_PRECISIONS
from lstmtext.data import pick_column, read_records
from lstmtext.errors import UsageError
from lstmtext.tasks.contract import one_or_many

NAME = "toy"
MAIN_METRIC = "mae"
HIGHER_IS_BETTER = False
FORMATS = ("text", "jsonl")
PRECISIONS = TRAIN_PRECISIONS
SPEED_UNIT = "words"  # benchmark speed counts whitespace words of the input lines
EVAL_OPTIONS = ()  # nothing to change on a trained model
DEFAULTS: dict = {"train": {"lr": 0.01}}


@dataclass
class Options:
    text_column: str = ""  # empty = the first of: text, sentence
    scale: float = 10.0  # the model predicts words / scale, so its output stays near 1


def validate(options: Options) -> None:
    if options.scale <= 0:
        raise UsageError(f"toy.scale: expected a positive number, got {options.scale}")


def read(source: str, opts: Options, split: str = "train") -> list[dict]:
    examples = []
    col = None
    for lineno, rec in read_records(source):
        col = col or pick_column(rec, opts.text_column, ("text", "sentence"), "text", str(source))
        text = str(rec.get(col) or "").strip()
        if text:
            examples.append({"text": text, "words": len(text.split()), "where": f"{source} line {lineno}"})
    if not examples:
        raise UsageError(f"{source}: no examples found; expected a text column")
    return examples


def tokenizer_texts(examples: list[dict]):
    return (e["text"] for e in examples)


def make_labels(examples: list[dict]) -> list[str]:
    return []


def featurize(examples: list[dict], tok, labels: list[str], recipe) -> list[dict]:
    ids = tok.encode([e["text"] for e in examples])
    out = []
    for e, seq in zip(examples, ids):
        seq = seq[: recipe.data.max_length]
        out.append({"ids": seq, "length": len(seq), "target": e.get("words", 0) / recipe.options.scale})
    return out


def collate(features: list[dict]) -> dict:
    import torch

    from lstmtext.tasks.common import pad

    return {
        "tokens": pad([f["ids"] for f in features]),
        "lengths": torch.tensor([max(1, f["length"]) for f in features]),
        "targets": torch.tensor([f["target"] for f in features]),
    }


def build_model(recipe, vocab_size: int, labels: list[str]):
    import torch
    from torch import nn

    from lstmtext.encoder import lengths_to_mask
    from lstmtext.model import Model, build_encoder

    class MeanHead(nn.Module):
        def __init__(self, dim: int):
            super().__init__()
            self.out = nn.Linear(dim, 1)

        def forward(self, states, batch):
            mask = lengths_to_mask(batch["lengths"].to(states.device), states.size(1)).unsqueeze(-1)  # (B, T, 1)
            pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1)  # (B, 2H)
            pred = self.out(pooled).squeeze(-1).float()  # (B,)
            return pred, torch.nn.functional.mse_loss(pred, batch["targets"].float())

    encoder = build_encoder(recipe.encoder, vocab_size)
    model = Model(encoder, MeanHead(encoder.output_dim))
    model.scale = recipe.options.scale  # evaluate reports words, and gets no recipe
    return model


def trained_weights(state: dict, meta: dict) -> tuple[dict, str]:
    return state, ""


def init_from(own: dict, state: dict, meta: dict) -> str:
    return ""


def ensemble(models: list):
    raise UsageError("toy models do not ensemble")


def evaluate(model, features, labels, device, batch_tokens, tok=None, selection=False) -> dict:
    from lstmtext.tasks.common import map_batches

    model.eval()
    rows = map_batches(lambda b: (model(b)[0] - b["targets"]).abs().tolist(), features, collate, batch_tokens, device)
    errors = [e for _, errs in rows for e in errs]
    scale = model.scale
    return {"mae": scale * sum(errors) / max(1, len(errors)), "examples": len(errors)}


def summary(metrics: dict) -> dict:
    return {"mae": metrics["mae"]}


def report(metrics: dict, console) -> None:
    console.print(f"{metrics['examples']} examples, mean absolute error {metrics['mae']:.3f} words")


def plots(metrics: dict, out_dir) -> list:
    return []  # one number, no picture


class Predictor:
    task = NAME
    stream_batch = 256
    batch_tokens = 4096
    explain_formats = ()  # a toy without explanations

    def __init__(self, model, tok, labels, recipe, device):
        self.model, self.tok, self.labels, self.recipe, self.device = model, tok, labels, recipe, device

    @one_or_many
    def predict(self, texts: list[str]) -> list[float | None]:
        from lstmtext.tasks.common import map_batches

        keep = [i for i, t in enumerate(texts) if t.strip()]
        feats = featurize([{"text": texts[i].strip()} for i in keep], self.tok, [], self.recipe)
        out: list[float | None] = [None] * len(texts)
        self.model.eval()
        for idx, preds in map_batches(
            lambda b: self.model(b)[0].tolist(), feats, collate, self.batch_tokens, self.device
        ):
            for j, p in zip(idx, preds):
                out[keep[j]] = round(p * self.recipe.options.scale, 2)
        return out

    def format(self, text: str, result: float | None, fmt: str) -> str:
        if fmt == "jsonl":
            return json.dumps({"text": text, "words": result})
        return "" if result is None else f"{result:.2f}"

    def header(self, fmt: str) -> str:
        return ""  # every format is line by line

    def footer(self, fmt: str) -> str:
        return ""

    def show_attention(self, jsonl: bool, plot_dir=None) -> None:
        raise UsageError("--attention/--plot: a toy model has no attention weights to show")
