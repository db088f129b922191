"""--explain: Integrated Gradients attributions (lstmtext/explain.py) for sentiment and NER.

Completeness is checked against a known answer computed here without Captum: the model's score on the
input and on the baseline (the same length of PAD pieces), each from one ordinary forward pass. The
tolerance: 1e-2 of |f(input) − f(baseline)| plus 1e-4 (the quadrature error of the integral) plus 5e-7 for
each rounded entry (scores are written with 6 decimals). NER's emissions are smooth in the embeddings and
meet it with the default 50 steps; sentiment's max pooling has kinks along the path, which slow the
quadrature's convergence, and the tiny model's logits differ little, so its test integrates with 200.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY, assert_usage_error, run_cli

import lstmtext
from lstmtext.explain import entity_spans, piece_words, plot_attributions, shade
from lstmtext.heads.tag import FORBIDDEN

REVIEWS = ["a truly wonderful film , I loved it !", "", "boring and dull plot ."]
SENTENCES = ["Angela Merkel met Emmanuel Macron in Paris .", "", "Sofia Yilmaz joined the World Bank ."]


def tolerance(diff: float, entries: int) -> float:
    return 1e-2 * abs(diff) + 1e-4 + 5e-7 * entries


def train_tiny_ner(tmp_path_factory, *sets: str):
    out = tmp_path_factory.mktemp("ner") / "tiny.ckpt"
    proc = run_cli(
        "train", "ner", "-o", out, "--epochs", "8", "-q", *TINY, "--set", "train.batch_tokens=600", *sets,
        LSTMTEXT_HOME=str(out.parent / "home"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def ner_ckpt(tmp_path_factory):
    return train_tiny_ner(tmp_path_factory)


@pytest.fixture(scope="module")
def ner_chars_ckpt(tmp_path_factory):
    """With the character BiLSTM: its bytes are no input of the integral, so they stay as they are."""
    return train_tiny_ner(tmp_path_factory, "--set", "ner.char_dim=8", "--set", "ner.char_hidden=8")


def batch_for(predictor, task, text: str) -> dict:
    feats = task.featurize([{"text": text}], predictor.tok, predictor.labels, predictor.recipe)
    return task.collate(feats)


def test_sentiment_attributions_are_complete(sentiment_ckpt):
    from lstmtext.tasks import sentiment

    p = lstmtext.load(sentiment_ckpt)
    p.explain = 200
    results = p.predict(REVIEWS)
    assert results[1] is None
    for text, res in zip(REVIEWS[::2], results[::2]):
        target = p.labels.index(res["label"])
        batch = batch_for(p, sentiment, text)
        with torch.no_grad():
            f_in = p.model(batch)[0][0, target].item()
            f_base = p.model({**batch, "tokens": torch.zeros_like(batch["tokens"])})[0][0, target].item()
        diff = f_in - f_base
        assert abs(diff) > 1e-3  # the check below says something
        pieces = [s for _, s in res["pieces"]]
        assert sum(pieces) == pytest.approx(diff, abs=tolerance(diff, len(pieces)))
        words = [s for _, s in res["attributions"]]
        assert sum(words) == pytest.approx(diff, abs=tolerance(diff, len(pieces) + len(words)))
        # one entry per piece and per word, in order
        assert [w for w, _ in res["pieces"]] == p.tok.pieces(text)
        assert [w for w, _ in res["attributions"]] == text.split()
        assert res["ig"]["score"] == pytest.approx(f_in, abs=1e-5)
        assert res["ig"]["baseline_score"] == pytest.approx(f_base, abs=1e-5)
        assert (res["ig"]["steps"], res["ig"]["baseline"]) == (200, "pad")
        assert abs(res["ig"]["delta"]) <= tolerance(diff, 0)


def test_piece_words_groups_at_word_starts():
    assert piece_words(["▁a", "▁tr", "ul", "y", "▁", ",", "▁I", "<0x49>"]) == [[0], [1, 2, 3], [4, 5], [6, 7]]
    assert piece_words(["x", "▁y"]) == [[0], [1]]  # a text cut at its head starts mid-word


def test_entity_spans_follow_bio():
    tags = ["B-PER", "I-PER", "O", "I-LOC", "B-ORG", "B-ORG", "I-ORG", "I-PER"]
    assert entity_spans(tags) == [(0, 2), (3, 4), (4, 5), (5, 7), (7, 8)]


@pytest.mark.parametrize("ckpt", ["ner_ckpt", "ner_chars_ckpt"])
def test_ner_attributions_are_complete(ckpt, request):
    from lstmtext.tasks import ner

    p = lstmtext.load(request.getfixturevalue(ckpt))
    p.explain = 50
    results = p.predict(SENTENCES)
    assert results[1]["entities"] == []
    n_entities = 0
    for res in results[::2]:
        feats = ner.featurize([{"tokens": res["tokens"]}], p.tok, p.labels, p.recipe)
        batch = ner.collate(feats)
        head = p.model.head
        with torch.no_grad():
            em_in = p.model(batch)[0][0]
            em_base = p.model({**batch, "tokens": torch.zeros_like(batch["tokens"])})[0][0]
            path = head.crf.decode(em_in[None], torch.ones(1, em_in.size(0), dtype=torch.bool))[0]
            trans = head.crf._scores(FORBIDDEN)[0]
        for ent, (i, j) in zip(res["entities"], entity_spans(res["tags"])):
            n_entities += 1
            words = list(range(i, j))
            link = sum(trans[path[k - 1], path[k]].item() for k in words[1:])
            f_in = sum(em_in[k, path[k]].item() for k in words) + link
            f_base = sum(em_base[k, path[k]].item() for k in words) + link
            diff = f_in - f_base
            scores = [s for _, s in ent["attributions"]]
            assert [w for w, _ in ent["attributions"]] == res["tokens"]
            assert sum(scores) == pytest.approx(diff, abs=tolerance(diff, len(scores)))
            assert ent["ig"]["score"] == pytest.approx(f_in, abs=1e-3)
            assert ent["ig"]["baseline_score"] == pytest.approx(f_base, abs=1e-3)
    assert n_entities >= 2  # the tiny model finds entities here, so the loop above checked something


def strip_explanations(line: str) -> str:
    obj = json.loads(line)
    for key in ("attributions", "pieces", "ig"):
        obj.pop(key, None)
    for ent in obj.get("entities", []):
        ent.pop("attributions")
        ent.pop("ig")
    return json.dumps(obj, ensure_ascii=False)


def test_cli_output_without_explain_is_unchanged(sentiment_ckpt, ner_ckpt):
    reviews, sentences = "\n".join(REVIEWS) + "\n", "\n".join(SENTENCES) + "\n"
    plain = run_cli("predict", sentiment_ckpt, "-f", "jsonl", input=reviews)
    explained = run_cli("predict", sentiment_ckpt, "-f", "jsonl", "--explain", "--explain-steps", "8", input=reviews)
    assert plain.returncode == explained.returncode == 0, explained.stderr
    assert "attributions" not in plain.stdout and explained.stdout.count('"attributions"') == 2
    assert [strip_explanations(line) for line in explained.stdout.splitlines()] == plain.stdout.splitlines()
    first = json.loads(explained.stdout.splitlines()[0])

    plain = run_cli("tag", "-m", ner_ckpt, "-f", "jsonl", input=sentences)
    explained = run_cli("tag", "-m", ner_ckpt, "-f", "jsonl", "--explain", "--explain-steps", "8", input=sentences)
    assert plain.returncode == explained.returncode == 0, explained.stderr
    assert "attributions" not in plain.stdout and '"attributions"' in explained.stdout
    assert [strip_explanations(line) for line in explained.stdout.splitlines()] == plain.stdout.splitlines()

    # text and inline, piped: the plain output, then the words with their scores, uncoloured
    text = run_cli("predict", sentiment_ckpt, "--explain", "--explain-steps", "8", input=reviews)
    label = run_cli("predict", sentiment_ckpt, input=reviews).stdout.splitlines()[0]
    assert text.stdout.splitlines()[0] == f"{label}\t{shade(first['attributions'], False)}"
    assert "\x1b[" not in text.stdout and text.stdout.splitlines()[1] == ""
    inline = run_cli("tag", "-m", ner_ckpt, "-f", "inline", "--explain", "--explain-steps", "8", input=sentences)
    lines = inline.stdout.splitlines()
    assert lines[0] == run_cli("tag", "-m", ner_ckpt, "-f", "inline", input=sentences).stdout.splitlines()[0]
    assert lines[1].startswith("  [") and "(+" in inline.stdout and "\x1b[" not in inline.stdout


def test_explain_refusals(sentiment_ckpt, ner_ckpt, tmp_path):
    text = tmp_path / "lines.txt"
    text.write_text("".join(f"the cat sat on the mat number {i} .\n" for i in range(40)), encoding="utf-8")
    dev = tmp_path / "dev.txt"
    dev.write_text("the cat sat on the mat .\n", encoding="utf-8")
    lm = tmp_path / "lm.ckpt"
    proc = run_cli(
        "train", "lm", "--train", text, "--dev", dev, "-o", lm, "--epochs", "1", "-q", *TINY,
        LSTMTEXT_HOME=str(tmp_path / "home"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_usage_error(run_cli("predict", lm, "--explain", input="the cat\n"), "--explain", "sentiment", "lm model")
    assert_usage_error(run_cli("tag", "-m", ner_ckpt, "--explain", input="x\n"), "--explain", "conll", "jsonl")
    assert_usage_error(
        run_cli("tag", "-m", ner_ckpt, "-f", "jsonl", "--explain", "--context", input="x\n"), "--context"
    )
    assert_usage_error(
        run_cli("predict", sentiment_ckpt, "--explain", "--explain-steps", "0", input="x\n"), "--explain-steps", "0"
    )
    assert_usage_error(
        run_cli("predict", sentiment_ckpt, "--explain", "--precision", "int8", input="x\n"), "--explain", "fp32"
    )


def test_shade_and_plot(tmp_path):
    pairs = [["great", 0.5], ["plot", -0.25], ["here", 0.0]]
    assert shade(pairs, False) == "great(+0.500) plot(-0.250) here(+0.000)"
    colored = shade(pairs, True)
    assert "\x1b[" in colored and "great" in colored and "plot" in colored
    out = tmp_path / "a.png"
    plot_attributions(pairs, out, "positive")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    img = Image.open(out).convert("RGB")
    assert len(img.getcolors(1 << 20)) > 2  # not blank: bars of two colours on white
