"""Known answers for the tasks' scores: translation's BLEU, chrF and lowercased BLEU against sacreBLEU and a
hand count, NER's entity precision, recall and F1 counted by hand on gold read from an IOB1 file."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO

from lstmtext.config import build_recipe, resolve_recipe
from lstmtext.tasks import ner
from lstmtext.tasks import translate as T
from lstmtext.tokenizer import Tokenizer

CPU = torch.device("cpu")


# -- translation -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_translate():
    torch.manual_seed(0)
    recipe = resolve_recipe(
        "translate",
        None,
        ["encoder.embed_dim=16", "encoder.hidden_dim=16", "translate.hidden_dim=16", "tokenizer.vocab_size=400"],
    )
    examples = T.read(str(REPO / "data" / "translate" / "train.tsv"), recipe.options)[:400]
    tok = Tokenizer.train(T.tokenizer_texts(examples), 400, "bpe")
    return recipe, tok, T.build_model(recipe, len(tok), []).eval()


def _evaluate_with_hypotheses(monkeypatch, tiny_translate, refs: list[str], hyps: list[str]) -> dict:
    """translate.evaluate on pairs whose references are ``refs`` while the decoder "outputs" ``hyps``."""
    recipe, tok, model = tiny_translate
    encoded = [tok.encode_one(h) for h in hyps]
    assert [tok.decode(ids) for ids in encoded] == hyps  # the hypotheses reach the scorer unchanged
    feats = T.featurize([{"source": "Ein Hund.", "target": r} for r in refs], tok, [], recipe)

    def decode(model, features, device, beam, n_best=1, max_batch=64):
        assert len(features) == len(hyps)
        return [[(ids, 0.0)] for ids in encoded]

    monkeypatch.setattr(T, "decode", decode)
    return T.evaluate(model, feats, [], CPU, 4096, tok)


def test_translate_bleu_is_sacrebleu_corpus_bleu_on_the_same_strings(monkeypatch, tiny_translate):
    import sacrebleu

    refs = ["A man is riding a bicycle .", "Two dogs are playing in the snow .", "A woman is singing on a stage ."]
    hyps = ["A man rides a bike .", "two small dogs play in the snow .", "A woman sings ."]
    m = _evaluate_with_hypotheses(monkeypatch, tiny_translate, refs, hyps)
    assert m["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert m["bleu_lc"] == sacrebleu.corpus_bleu(hyps, [refs], lowercase=True).score
    assert m["chrf"] == sacrebleu.corpus_chrf(hyps, [refs]).score
    assert 0 < m["bleu"] < m["bleu_lc"] < 100  # "two" matches "Two" only when lowercased
    assert m["examples"] == 3
    assert m["samples"] == [{"reference": r, "translation": h} for r, h in zip(refs, hyps)]


def test_translate_bleu_by_hand_and_perfect_output(monkeypatch, tiny_translate):
    # "the cat sat on the mat" against "the cat sat on a mat": 5/6 unigrams (the second "the" is clipped),
    # 3/5 bigrams, 2/4 trigrams, 1/3 four-grams; equal lengths, so no brevity penalty.
    m = _evaluate_with_hypotheses(monkeypatch, tiny_translate, ["the cat sat on a mat"], ["the cat sat on the mat"])
    assert m["bleu"] == pytest.approx(100 * (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-9)
    same = ["A man is riding a bicycle .", "A woman is singing ."]
    m = _evaluate_with_hypotheses(monkeypatch, tiny_translate, same, same)
    # sacreBLEU's exp(mean(log 1)) × 100 lands within float rounding of 100, not on it
    assert (m["bleu"], m["bleu_lc"], m["chrf"]) == pytest.approx((100.0, 100.0, 100.0), abs=1e-9)


# -- NER ---------------------------------------------------------------------------------------------------
IOB1 = (
    "-DOCSTART- -X- O O\n\n"
    "Angela NNP I-NP I-PER\nMerkel NNP I-NP I-PER\nmet VBD I-VP O\nEmmanuel NNP I-NP I-PER\n"
    "Macron NNP I-NP I-PER\nin IN I-PP O\nParis NNP I-NP I-LOC\nBerlin NNP I-NP B-LOC\n. . O O\n\n"
    "Siemens NNP I-NP I-ORG\nfell VBD I-VP O\nin IN I-PP O\nMunich NNP I-NP I-LOC\n"
)
GOLD_BIO = [
    ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O"],
    ["B-ORG", "O", "O", "B-LOC"],
]
# Angela Merkel and both sentence-2 entities right; Emmanuel alone (boundary) and Paris Berlin as one (merged) wrong.
PRED = [
    ["B-PER", "I-PER", "O", "B-PER", "O", "O", "B-LOC", "I-LOC", "O"],
    ["B-ORG", "O", "O", "B-LOC"],
]


def _check_by_hand(m: dict) -> None:
    # 6 gold entities (PER 2, LOC 3, ORG 1), 5 predicted, 3 of them exact
    assert m["precision"] == pytest.approx(3 / 5) and m["recall"] == pytest.approx(3 / 6)
    assert m["f1"] == pytest.approx(2 * (3 / 5) * (3 / 6) / (3 / 5 + 3 / 6))  # 6/11
    assert (m["entities"], m["sentences"], m["tokens"]) == (6, 2, 13)
    assert m["token_accuracy"] == pytest.approx(11 / 13)
    per = {k: (v["precision"], v["recall"], v["f1"], v["support"]) for k, v in m["per_type"].items()}
    assert per == {
        "LOC": (pytest.approx(1 / 2), pytest.approx(1 / 3), pytest.approx(0.4), 3),
        "ORG": (1.0, 1.0, 1.0, 1),
        "PER": (pytest.approx(1 / 2), pytest.approx(1 / 2), pytest.approx(1 / 2), 2),
    }


def test_ner_entity_metrics_by_hand_on_gold_read_from_iob1(tmp_path):
    f = tmp_path / "gold.iob1"
    f.write_text(IOB1, encoding="utf-8")
    examples = ner.read(str(f), ner.Options())
    assert [e["tags"] for e in examples] == GOLD_BIO
    _check_by_hand(ner.entity_metrics([e["tags"] for e in examples], PRED))
    perfect = ner.entity_metrics(GOLD_BIO, GOLD_BIO)
    assert (perfect["precision"], perfect["recall"], perfect["f1"], perfect["token_accuracy"]) == (1.0, 1.0, 1.0, 1.0)
    nothing = ner.entity_metrics(GOLD_BIO, [["O"] * len(g) for g in GOLD_BIO])
    assert (nothing["precision"], nothing["recall"], nothing["f1"]) == (0.0, 0.0, 0.0)


def test_ner_evaluate_scores_decoded_paths_against_the_files_gold(tmp_path, monkeypatch):
    """ner.evaluate end to end from the features: the decoder's label ids become tags and meet the gold."""
    f = tmp_path / "gold.iob1"
    f.write_text(IOB1, encoding="utf-8")
    examples = ner.read(str(f), ner.Options())
    labels = ner.make_labels(examples)
    tok = Tokenizer.train([" ".join(e["tokens"]) for e in examples] * 20, vocab_size=300)
    recipe = build_recipe("ner", ner.Options, ner.DEFAULTS)
    feats = ner.featurize(examples, tok, labels, recipe)
    assert len(feats) == 2  # one window per sentence
    paths = [[labels.index(t) for t in p] for p in PRED]
    monkeypatch.setattr(ner, "decode_features", lambda model, features, device, batch_tokens: (paths, 0.25))
    m = ner.evaluate(None, feats, labels, CPU, 4096, tok)
    _check_by_hand(m)
    assert m["loss"] == 0.25
