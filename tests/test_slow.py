"""Slow tests (opt in with ``python -m pytest -m slow``): each task trains a small model for a few CPU minutes
on its benchmark data set and must reach a dev score that a broken model cannot.

Runs are bounded by epochs or steps, not by time: a seeded CPU run then gives the same model on a busy
machine as on an idle one, so the score does not depend on the load.

The data directory is $LSTMTEXT_DATA, else ../shared/data beside the repository (conftest.SHARED_DATA); a test
whose data set is not there is skipped. The floors sit well below what these settings reach and far above
what an untrained or broken model scores.
"""

from __future__ import annotations

import json

import pytest
from conftest import SHARED_DATA, run_cli

pytestmark = pytest.mark.slow

# A small model: a couple of CPU minutes train it well past chance.
SMALL = [
    "--set",
    "encoder.embed_dim=64",
    "--set",
    "encoder.hidden_dim=128",
    "--set",
    "tokenizer.vocab_size=4000",
]


def _train_and_evaluate(tmp_path, task: str, dataset: str, *extra: str) -> dict:
    """Train TASK on DATASET:train (model selection on DATASET:dev), then `lstmtext evaluate` the checkpoint
    on DATASET:dev; returns the evaluation's metrics."""
    if not (SHARED_DATA / dataset).is_dir():
        pytest.skip(f"{SHARED_DATA / dataset} is missing: set LSTMTEXT_DATA to the folder holding {dataset}/")
    out = tmp_path / f"{task}.ckpt"
    data = ["--data-dir", SHARED_DATA]
    proc = run_cli(
        "train",
        task,
        "--train",
        f"{dataset}:train",
        "--dev",
        f"{dataset}:dev",
        *data,
        "-o",
        out,
        "-q",
        *SMALL,
        *extra,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ev = run_cli("evaluate", out, f"{dataset}:dev", *data, "--format", "json", timeout=900)
    assert ev.returncode == 0, ev.stderr[-3000:]
    metrics = json.loads(ev.stdout)
    print(f"{task} on {dataset}:dev:", {k: v for k, v in metrics.items() if isinstance(v, int | float)})
    return metrics


def test_slow_sentiment_sst2_accuracy(tmp_path):
    m = _train_and_evaluate(tmp_path, "sentiment", "sst2", "--set", "sentiment.hidden_dim=64", "--epochs", "1")
    assert m["examples"] == 872
    assert m["accuracy"] >= 0.70  # two balanced classes: chance is 0.5


def test_slow_ner_conll2003_f1(tmp_path):
    m = _train_and_evaluate(tmp_path, "ner", "conll2003", "--set", "ner.word_hidden=64", "--epochs", "2")
    assert m["f1"] >= 0.45  # tagging every word O scores 0


def test_slow_lm_wikitext2_perplexity(tmp_path):
    # a fixed number of steps, the last evaluated: an epoch of wikitext2 takes far longer
    steps = ["--set", "train.max_steps=300", "--set", "train.eval_every=300", "--set", "tokenizer.max_sentences=50000"]
    m = _train_and_evaluate(tmp_path, "lm", "wikitext2", *steps)
    # piece frequencies alone (a unigram model) give several times this per word, a uniform guess ~10^6
    assert m["ppl_word"] <= 5000


def test_slow_translate_multi30k_bleu(tmp_path):
    m = _train_and_evaluate(tmp_path, "translate", "multi30k", "--set", "translate.hidden_dim=128", "--epochs", "1")
    assert m["examples"] == 1014
    assert m["bleu"] >= 5.0  # an untrained decoder scores below 1
