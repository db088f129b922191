"""The one extension point: a task is a module of plain functions, named here.

A task module provides (see tasks/sentiment.py for the reference implementation):
  NAME, MAIN_METRIC, HIGHER_IS_BETTER (optional, default True), FORMATS (predict --format choices)
  Options                       dataclass: the recipe section named after the task ([sentiment])
  DEFAULTS                      {section: {key: value}} the task's own recipe defaults
  read(source, opts, split)     → examples (dicts with "where" = "FILE line N" for messages)
  tokenizer_texts(examples)     → the text SentencePiece trains on
  make_labels(examples)         → label names (or [] when the task has none)
  featurize(examples, tok, labels, recipe) → features, each with "length" (pieces) for bucketing
  collate(features)             → dict of tensors: "tokens" (B,T), "lengths" (B,), targets
  build_model(recipe, vocab_size, labels) → Model(Encoder, Head); model(batch) → (logits, loss)
  evaluate(model, features, labels, device, batch_tokens, tok, selection=False) → metrics dict (with
                                MAIN_METRIC); selection=True when the training loop picks checkpoints, so a
                                task may use a cheaper variant there (translation: greedy decoding)
  summary(metrics)              → the scalar metrics logged after each evaluation
  report(metrics, console)      → the tables `lstmtext evaluate` prints
  Predictor(model, tok, labels, recipe, device) with .task, .predict(texts) and .format(text, result, fmt),
                                .stream_batch (lines per predict call) and .batch_tokens (pieces per batch,
                                also what `lstmtext evaluate` scores in)
Modules are imported when first asked for, so ``lstmtext --help`` never pays for torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lstmtext.errors import UsageError

TASKS = {
    "sentiment": "lstmtext.tasks.sentiment",
    "translate": "lstmtext.tasks.translate",
    "lm": "lstmtext.tasks.lm",
    "ner": "lstmtext.tasks.ner",
}


def get_task(name: str) -> ModuleType:
    if name not in TASKS:
        raise UsageError(f"unknown task '{name}' (valid: {', '.join(TASKS)})")
    return importlib.import_module(TASKS[name])
