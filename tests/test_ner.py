"""NER: readers, BIO conversion, the CRF, word splitting, and `lstmtext tag` / train / evaluate / predict as a user runs them."""

from __future__ import annotations

import itertools
import json
import select
import shutil
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY, assert_usage_error, cli_env, run_cli

from lstmtext.config import build_recipe
from lstmtext.errors import UsageError
from lstmtext.heads.tag import CRF, TagHead, allowed_moves, bioes_labels
from lstmtext.tasks import ner, ner_data

LABELS = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


BIOES = bioes_labels(LABELS)  # O, B-LOC, I-LOC, E-LOC, S-LOC, B-PER, …


def valid_bio(tags: list[str]) -> bool:
    prev = "O"
    for t in tags:
        if t.startswith("I-") and prev[2:] != t[2:]:
            return False
        prev = t
    return True


def valid_bioes(tags: list[str]) -> bool:
    open_ = None  # the type of the entity a B- or I- left open
    for t in tags:
        if open_ is not None and t not in (f"I-{open_}", f"E-{open_}"):
            return False
        if open_ is None and t[:2] in ("I-", "E-"):
            return False
        open_ = t[2:] if t[:2] in ("B-", "I-") else None
    return open_ is None


# -- readers -----------------------------------------------------------------------------------------------
def test_ner_read_conll_converts_iob1_and_skips_docstart(tmp_path):
    f = tmp_path / "iob1.conll"
    f.write_text(
        "-DOCSTART- -X- O O\n\n"
        "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\n\n"
        "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\nand CC O O\nAnna NNP I-NP B-PER\n\n\n"
        "-DOCSTART- -X- O O\nBRUSSELS NNP I-NP I-LOC\n"
    )
    ex = ner.read(str(f), ner.Options())
    assert [e["tokens"] for e in ex] == [
        ["EU", "rejects", "German"],
        ["Peter", "Blackburn", "and", "Anna"],
        ["BRUSSELS"],
    ]
    assert ex[0]["tags"] == ["B-ORG", "O", "B-MISC"]
    assert ex[1]["tags"] == ["B-PER", "I-PER", "O", "B-PER"]
    assert ex[2]["tags"] == ["B-LOC"]
    assert ner.make_labels(ex) == ["O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


def test_ner_to_bio_keeps_bio_and_converts_iob1_and_bioes():
    bio = ["B-PER", "I-PER", "B-PER", "O", "B-LOC"]
    assert ner.to_bio(bio) == bio
    assert ner.to_bio(["I-PER", "I-PER", "B-PER", "I-LOC"]) == ["B-PER", "I-PER", "B-PER", "B-LOC"]
    assert ner.to_bio(["S-PER", "B-LOC", "E-LOC", "S-LOC", "O"]) == ["B-PER", "B-LOC", "I-LOC", "B-LOC", "O"]
    assert ner.detect_scheme([bio]) == "BIO"
    assert ner.detect_scheme([["O", "I-PER"]]) == "IOB1"
    assert ner.detect_scheme([["S-PER"]]) == "BIOES"


def test_ner_read_conll_malformed_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("Paris B-LOC\nis O\n\nthis-line-has-no-tag\n")
    with pytest.raises(UsageError, match=r"bad\.conll line 4: expected 'TOKEN \.\.\. TAG'"):
        ner.read(str(f), ner.Options())
    f.write_text("Paris B-LOC\nis NOT_A_TAG\n")
    with pytest.raises(UsageError, match=r"bad\.conll line 2: tag 'NOT_A_TAG'"):
        ner.read(str(f), ner.Options())


def test_ner_read_jsonl_tokens_and_tags(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(
        json.dumps({"tokens": ["Angela", "Merkel", "spoke"], "tags": ["B-PER", "I-PER", "O"]})
        + "\n\n"
        + json.dumps({"tokens": ["in", "Paris"], "tags": ["O", "I-LOC"]})
        + "\n"
    )
    ex = ner.read(str(f), ner.Options())
    assert [e["tags"] for e in ex] == [["B-PER", "I-PER", "O"], ["O", "B-LOC"]]
    f.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n")
    with pytest.raises(UsageError, match=r"d\.jsonl line 1: 2 tokens but 1 tags"):
        ner.read(str(f), ner.Options())


def test_ner_read_hf_class_label_tags_take_names_from_dataset(monkeypatch):
    import datasets

    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
    feats = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    ds = datasets.Dataset.from_dict(
        {"tokens": [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]], "ner_tags": [[3, 0, 7, 0], [1, 2]]},
        features=feats,
    )
    monkeypatch.setattr(ner_data, "load_hf", lambda source, split: ds)
    ex = ner.read("hf:eriktks/conll2003", ner.Options(), "train")
    assert [e["tags"] for e in ex] == [["B-ORG", "O", "B-MISC", "O"], ["B-PER", "I-PER"]]
    assert ex[1]["where"] == "hf:eriktks/conll2003 row 1"


def test_ner_featurize_unseen_tag_names_tag_and_line(tmp_path):
    f = tmp_path / "eval.conll"
    f.write_text("-DOCSTART- O\n\nParis B-LOC\n\nBerlin B-LOC\nin O\nSpace B-PLANET\n")
    ex = ner.read(str(f), ner.Options())
    tok = _tiny_tokenizer()
    with pytest.raises(UsageError, match=r"eval\.conll line 7: tag 'B-PLANET' was never seen in training"):
        ner.featurize(ex, tok, LABELS, _recipe())


def test_ner_featurize_long_sentence_in_bounded_windows():
    tok = _tiny_tokenizer()
    words = ["Paris", "is", "big"] * 100
    tags = ["B-LOC", "O", "O"] * 100
    tags[3] = "B-LOC"
    feats = ner.featurize([{"tokens": words, "tags": ner.to_bio(tags)}], tok, LABELS, _recipe(max_length=20))
    assert len(feats) > 1
    assert all(f["length"] <= 20 for f in feats)
    assert sum(f["n"] for f in feats) == len(words)
    assert [f["start"] for f in feats] == sorted(f["start"] for f in feats)
    # a word of a million characters still fits one window
    huge = ner.featurize([{"tokens": ["x" * 1_000_000, "Paris"]}], tok, LABELS, _recipe(max_length=20))
    assert all(f["length"] <= 20 for f in huge) and sum(f["n"] for f in huge) == 2


def test_ner_featurize_context_reads_neighbours_within_the_document(tmp_path):
    f = tmp_path / "docs.conll"
    f.write_text(
        "-DOCSTART- O\n\nParis O\nis O\nbig O\n\nBerlin B-LOC\nis O\nbig O\n\nRome B-LOC\n\n"
        "-DOCSTART- O\n\nMerkel B-PER\nmet O\nMacron B-PER\n\n"
    )
    ex = ner.read(str(f), ner.Options())
    assert [e["doc"] for e in ex] == [1, 1, 1, 2]
    tok = _tiny_tokenizer()
    alone = ner.featurize(ex, tok, LABELS, _recipe())
    recipe = _recipe()
    recipe.options.context = 4
    feats = ner.featurize(ex, tok, LABELS, recipe)
    stream = alone[0]["ids"] + alone[1]["ids"] + alone[2]["ids"]  # document 1, end to end
    a = len(alone[0]["ids"])
    b = a + len(alone[1]["ids"])
    assert feats[1]["ids"] == stream[a - 4 : b + 4]  # four pieces on each side
    assert feats[0]["ids"][: len(alone[0]["ids"])] == alone[0]["ids"]  # nothing before a document's start
    assert feats[2]["ids"][-len(alone[2]["ids"]) :] == alone[2]["ids"]  # nor after its end
    assert feats[3]["ids"] == alone[3]["ids"]  # document 2 is alone: context never crosses a -DOCSTART-
    for c, s in zip(feats, alone):
        # the same words, tags and pieces under each word; only the positions moved
        assert c["tags"] == s["tags"] and len(c["first"]) == len(s["first"])
        assert [c["ids"][i] for i in c["first"]] == [s["ids"][i] for i in s["first"]]
        assert [c["ids"][i] for i in c["last"]] == [s["ids"][i] for i in s["last"]]
        assert c["length"] == len(c["ids"])
    # text from `tag` names no document: each line is read alone
    raw = ner.featurize([{"tokens": e["tokens"]} for e in ex], tok, LABELS, recipe)
    assert [r["ids"] for r in raw] == [s["ids"] for s in alone]
    with pytest.raises(UsageError, match=r"ner.context: must be 0 \(off\)"):
        build_recipe("ner", ner.Options, ner.DEFAULTS, overrides=["ner.context=-1"])


def test_ner_predictor_context_reads_earlier_lines_of_the_paragraph(monkeypatch):
    tok = _tiny_tokenizer()
    recipe = _recipe()
    recipe.encoder.embed_dim = recipe.encoder.hidden_dim = 16
    recipe.options.context = 6
    torch.manual_seed(0)
    model = ner.build_model(recipe, len(tok), LABELS)
    read = []
    real = ner.decode_features
    monkeypatch.setattr(
        ner, "decode_features", lambda m, feats, *a, **k: (read.extend(feats), real(m, feats, *a, **k))[1]
    )

    def predictor(context):
        p = ner.Predictor(model, tok, LABELS, recipe, torch.device("cpu"))
        p.context = context
        return p

    lines = ["Angela Merkel met Emmanuel Macron", "Paris is big", "", "Berlin is in Germany", "Macron met Merkel"]
    alone = [tok.encode_words(line.split())[0] for line in lines]
    whole = predictor(True).predict(lines)
    fed = [f["ids"] for f in read]
    assert fed[0] == alone[0]  # a paragraph's first line has nothing before it
    assert fed[1] == alone[0][-6:] + alone[1]  # then up to 6 pieces of the lines before, none after
    assert fed[2] == alone[3]  # the blank line started a new paragraph
    assert fed[3] == alone[3][-6:] + alone[4]
    # one line at a time (an interactive pipe) reads the same as the whole batch (a file)
    p = predictor(True)
    assert [p.predict([line])[0] for line in lines] == whole
    # a long line is not carried whole: the last 6 words hold at least 6 pieces
    read.clear()
    p.predict(["Paris is big " * 100, "Berlin"])
    assert (
        read[-1]["ids"] == tok.encode_words(("Paris is big " * 100).split())[0][-6:] + tok.encode_words(["Berlin"])[0]
    )
    assert sum(len(words) for words in p._paragraph) <= 6
    read.clear()
    predictor(False).predict(lines)
    assert [f["ids"] for f in read] == [ids for ids in alone if ids]  # without --context every line is alone


def test_ner_span_word_state_reads_each_word_whole_alone_or_in_a_batch():
    from lstmtext.model import build_encoder

    tok = _tiny_tokenizer()
    recipe = _recipe()
    recipe.encoder.embed_dim = recipe.encoder.hidden_dim = 16
    long_words = ["Emmanuel", "Macron", "met", "Angela", "Merkel", "in", "Berlin"]
    feats = ner.featurize([{"tokens": ["Paris"]}, {"tokens": long_words}], tok, LABELS, recipe)
    batch = ner.collate(feats)
    for f, _first, last in zip(feats, batch["first"], batch["last"]):
        n = len(f["first"])
        ends = [f["first"][w + 1] - 1 if w + 1 < n else f["length"] - 1 for w in range(n)]
        assert last[:n].tolist() == ends  # each word's last piece
    assert any(l > f for l, f in zip(batch["last"][1].tolist(), batch["first"][1].tolist()))  # some word has 2+ pieces

    torch.manual_seed(0)
    encoder = build_encoder(recipe.encoder, len(tok)).eval()
    head = TagHead(encoder.output_dim, LABELS, 0.0, "span")
    with torch.no_grad():
        states = encoder(batch["tokens"], batch["lengths"])  # (B, T, 2H)
        em = head.emissions(states, batch["first"], batch["last"])  # (B, W, L)
        H = encoder.hidden_dim
        f, l = batch["first"][1], batch["last"][1]
        words = torch.cat(
            [states[1, l, :H], states[1, f, H:]], dim=-1
        )  # forward at the last piece, backward at the first
        assert torch.allclose(em[1, : len(long_words)], head.proj(words)[: len(long_words)], atol=1e-6)
        alone = ner.collate(feats[1:])
        em_alone = head.emissions(encoder(alone["tokens"], alone["lengths"]), alone["first"], alone["last"])
        assert torch.allclose(em[1, : len(long_words)], em_alone[0], atol=1e-5)
    with pytest.raises(ValueError, match="word_state must be one of first, span"):  # library users building the head
        TagHead(32, LABELS, word_state="middle")


def test_ner_word_bilstm_sees_neighbours_and_ignores_padding():
    torch.manual_seed(0)
    head = TagHead(8, LABELS, 0.0, "first", word_hidden=6).eval()
    assert head.proj.in_features == 12  # two directions of 6
    states = torch.randn(2, 5, 8)
    first = torch.arange(5).expand(2, 5)
    lengths = torch.tensor([5, 3])
    with torch.no_grad():
        em = head.emissions(states, first, None, lengths)  # (B, W, L)
        alone = head.emissions(states[1:, :3], first[1:, :3], None, lengths[1:])
        assert torch.allclose(em[1, :3], alone[0], atol=1e-6)  # the padded words of row 1 change nothing
        changed = states.clone()
        changed[0, 4] += 1.0  # only the last word's state moves ...
        em2 = head.emissions(changed, first, None, lengths)
        assert not torch.allclose(em2[0, 0], em[0, 0])  # ... and the first word's scores follow it
    with pytest.raises(UsageError, match=r"ner.word_hidden: must be 0 \(off\)"):
        build_recipe("ner", ner.Options, ner.DEFAULTS, overrides=["ner.word_hidden=-1"])


def test_ner_word_shapes_reach_the_tag_scores():
    from lstmtext.tasks.ner_data import word_shape

    cases = {
        "the": 1,
        "Paris": 2,
        "I": 2,
        "EU": 3,
        "McDonald": 4,
        "1996": 5,
        "2-1": 6,
        "1,000": 6,
        ".": 7,
        "(": 7,
        "1st": 8,
        "B52": 8,
        "Éire": 2,
        "ÉIRE": 3,
    }
    assert {w: word_shape(w) for w in cases} == cases
    recipe = build_recipe(
        "ner",
        ner.Options,
        ner.DEFAULTS,
        overrides=["ner.shape_dim=4", "ner.word_hidden=6", "encoder.embed_dim=8", "encoder.hidden_dim=8"],
    )

    class Tok:  # one piece per word is enough here
        def encode_words(self, words):
            return [len(w) for w in words], list(range(len(words)))

    examples = [{"tokens": ["Angela", "MERKEL", "met", "1,000", "people"]}, {"tokens": ["PARIS", "."]}]
    feats = ner.featurize(examples, Tok(), LABELS, recipe)
    assert [f["shape"] for f in feats] == [[2, 3, 1, 6, 1], [3, 7]]
    batch = ner.collate(feats)
    assert batch["shape"].tolist() == [[2, 3, 1, 6, 1], [3, 7, 0, 0, 0]]  # 0 pads
    torch.manual_seed(0)
    model = ner.build_model(recipe, 64, LABELS).eval()
    with torch.no_grad():
        em, _ = model(batch)
        batch["shape"][1, 0] = 1  # "PARIS" read as if it were lower case
        em2, _ = model(batch)
    assert torch.allclose(em[0], em2[0]) and not torch.allclose(em[1, 0], em2[1, 0])
    assert "shape" not in ner.featurize(examples, Tok(), LABELS, build_recipe("ner", ner.Options, ner.DEFAULTS))[0]
    with pytest.raises(UsageError, match=r"ner.shape_dim: must be 0 \(off\)"):
        build_recipe("ner", ner.Options, ner.DEFAULTS, overrides=["ner.shape_dim=-1"])


def test_ner_character_bilstm_reads_each_words_own_bytes():
    from lstmtext.tasks.ner_data import pad_chars, word_bytes

    assert word_bytes("Ab") == [66, 99]  # byte + 1: 0 pads
    assert word_bytes("é") == [0xC3 + 1, 0xA9 + 1]  # UTF-8: two bytes
    assert word_bytes("") == [1]
    long = "x" * 20 + "y" * 20
    assert word_bytes(long) == [ord("x") + 1] * 16 + [ord("y") + 1] * 16  # first and last 16 bytes
    assert pad_chars([[[5, 6], [7]], [[8, 9, 10]]]).tolist() == [
        [[5, 6, 0], [7, 0, 0]],
        [[8, 9, 10], [0, 0, 0]],
    ]
    recipe = build_recipe(
        "ner", ner.Options, ner.DEFAULTS, overrides=["ner.char_dim=5", "ner.char_hidden=3", "encoder.hidden_dim=8"]
    )

    class Tok:  # one piece per word is enough here
        def encode_words(self, words):
            return [len(w) for w in words], list(range(len(words)))

    examples = [{"tokens": ["Angela", "Merkel", "met", "Éire"]}, {"tokens": ["PARIS", "."]}]
    feats = ner.featurize(examples, Tok(), LABELS, recipe)
    assert feats[1]["chars"] == [[81, 66, 83, 74, 84], [47]]
    batch = ner.collate(feats)
    assert batch["chars"].shape == (2, 4, 6)  # "Angela", "Merkel", "Éire" (5 bytes): 6 bytes at most
    torch.manual_seed(0)
    model = ner.build_model(recipe, 64, LABELS).eval()
    head = model.head
    with torch.no_grad():
        got = head.spellings(batch["chars"])  # (2, 4, 6)
        for b, e in enumerate(examples):  # each word alone, unpadded: the forward's last and backward's last step
            for w, word in enumerate(e["tokens"]):
                ids = torch.tensor([word_bytes(word)])
                out, _ = head.char_lstm(head.char_embed(ids))  # (1, C, 2c)
                want = torch.cat([out[0, -1, :3], out[0, 0, 3:]])
                assert torch.allclose(got[b, w], want, atol=1e-6), (b, w)
        em, _ = model(batch)
        batch["chars"][1, 0, 1:5] = torch.tensor(word_bytes("aris"))  # "Paris" instead of "PARIS"
        em2, _ = model(batch)
    assert torch.equal(em[0], em2[0]) and torch.equal(em[1, 1], em2[1, 1])  # no word BiLSTM: only that word moves
    assert not torch.allclose(em[1, 0], em2[1, 0])
    assert "chars" not in ner.featurize(examples, Tok(), LABELS, build_recipe("ner", ner.Options, ner.DEFAULTS))[0]
    with pytest.raises(UsageError, match=r"ner.char_dim: must be 0 \(off\)"):
        build_recipe("ner", ner.Options, ner.DEFAULTS, overrides=["ner.char_dim=-1"])
    with pytest.raises(UsageError, match=r"ner.char_hidden: the character BiLSTM needs a width of 1 or more"):
        build_recipe("ner", ner.Options, ner.DEFAULTS, overrides=["ner.char_dim=4", "ner.char_hidden=0"])


def test_ner_word_dropout_zeroes_whole_words_in_training_only():
    torch.manual_seed(0)
    head = TagHead(8, LABELS, 0.0, "first", word_dropout=0.5)
    states = torch.randn(4, 50, 8) + 3.0  # no state is zero by chance
    first = torch.arange(50).expand(4, 50)
    seen = {}
    head.proj.register_forward_hook(lambda m, inp, out: seen.update(x=inp[0]))
    head.emissions(states, first, None, torch.full((4,), 50))
    zero = (seen["x"] == 0).all(-1)  # (B, W): words dropped whole
    assert ((seen["x"] == 0) == zero.unsqueeze(-1)).all()  # never part of a word
    assert 0.3 < zero.float().mean() < 0.7
    assert torch.equal(seen["x"][~zero], states[~zero])  # kept words are not rescaled
    head.eval()
    head.emissions(states, first, None, torch.full((4,), 50))
    assert torch.equal(seen["x"], states)
    for bad in ("ner.word_dropout=1", "ner.dropout=-0.1", "encoder.dropout=1.5"):
        with pytest.raises(UsageError, match=r"expected a probability in \[0, 1\)"):
            build_recipe("ner", ner.Options, ner.DEFAULTS, overrides=[bad])


def test_ner_lm_objective_joins_the_loss_in_training_only():
    from lstmtext.heads.lm import LMHead

    torch.manual_seed(0)
    embed = torch.nn.Embedding(50, 6, padding_idx=0)
    lm = LMHead(embed, 8)  # H 8 ≠ E 6: through the per-direction projections
    head = TagHead(16, LABELS, 0.0, "first", lm=lm, lm_weight=0.5, lm_rate=1.0)
    tokens = torch.tensor([[5, 9, 12, 7], [3, 4, 0, 0]])  # (B, T), the second padded
    states = torch.randn(2, 4, 16, requires_grad=True)  # (B, T, 2H)
    batch = {
        "tokens": tokens,
        "lengths": torch.tensor([4, 2]),
        "first": torch.tensor([[0, 2], [0, 1]]),
        "word_lengths": torch.tensor([2, 2]),
        "tags": torch.tensor([[3, 4], [1, 0]]),
    }
    lm_loss = lm(states, batch)[1]  # the LM's own loss over every piece
    assert torch.allclose(lm.sampled_loss(states, tokens, 1.0), lm_loss)
    head.lm_weight = 0.0
    crf_only = head(states, batch)[1]
    head.lm_weight = 0.5
    loss = head(states, batch)[1]
    assert torch.allclose(loss, crf_only + 0.5 * lm_loss)
    loss.backward()
    assert embed.weight.grad is not None and embed.weight.grad.abs().sum() > 0  # the tied output layer learns
    head.eval()
    assert torch.allclose(head(states, batch)[1], crf_only)  # dev loss and tagging: the CRF alone
    # a share of the pieces: a random subset, so the loss differs from the full one but stays finite
    head.train()
    sampled = [lm.sampled_loss(states, tokens, 0.3).item() for _ in range(20)]
    assert all(v == v and v >= 0 for v in sampled) and len(set(sampled)) > 1
    for bad, msg in (("ner.lm_rate=0", "lm_rate"), ("ner.lm_rate=1.5", "lm_rate"), ("ner.lm_weight=-1", "lm_weight")):
        with pytest.raises(UsageError, match=msg):
            build_recipe("ner", ner.Options, ner.DEFAULTS, overrides=[bad])


# -- the CRF -----------------------------------------------------------------------------------------------
def test_ner_allowed_moves_forbid_invalid_bio_and_bioes():
    trans, start, end = allowed_moves(LABELS)
    ix = {t: i for i, t in enumerate(LABELS)}
    assert not start[ix["I-LOC"]] and start[ix["B-LOC"]] and start[ix["O"]] and end.all()
    assert not trans[ix["O"], ix["I-LOC"]]
    assert not trans[ix["B-PER"], ix["I-LOC"]] and not trans[ix["I-PER"], ix["I-LOC"]]
    assert trans[ix["B-LOC"], ix["I-LOC"]] and trans[ix["I-LOC"], ix["I-LOC"]] and trans[ix["I-PER"], ix["B-LOC"]]
    trans, start, end = allowed_moves(BIOES)
    for a, b in itertools.product(BIOES, repeat=2):  # allowed exactly when a → b can occur in a valid sequence
        before = f"B-{a[2:]}" if a[:2] in ("I-", "E-") else "O"  # what a needs before it ...
        after = f"E-{b[2:]}" if b[:2] in ("B-", "I-") else "O"  # ... and b after it
        assert bool(trans[BIOES.index(a), BIOES.index(b)]) == valid_bioes([before, a, b, after]), (a, b)
    assert [t for t, ok in zip(BIOES, start) if ok] == ["O", "B-LOC", "S-LOC", "B-PER", "S-PER"]
    assert [t for t, ok in zip(BIOES, end) if ok] == ["O", "E-LOC", "S-LOC", "E-PER", "S-PER"]


@pytest.mark.parametrize("labels,valid", [(LABELS, valid_bio), (BIOES, valid_bioes)])
def test_ner_crf_never_decodes_an_invalid_sequence(labels, valid):
    torch.manual_seed(0)
    crf = CRF(labels)
    with torch.no_grad():  # learned transitions that try hard to favour invalid moves cannot win
        crf.transitions.fill_(50.0)
        crf.start.fill_(50.0)
        crf.end.fill_(50.0)
    em = torch.randn(64, 12, len(labels)) * 20
    em[..., [i for i, t in enumerate(labels) if t[:2] in ("I-", "E-")]] += 30  # inside tags look best everywhere
    lengths = torch.randint(1, 13, (64,))
    mask = torch.arange(12).unsqueeze(0) < lengths.unsqueeze(1)
    paths = crf.decode(em, mask)
    for path, n in zip(paths.tolist(), lengths.tolist()):
        assert valid([labels[i] for i in path[:n]])


def _path_score(crf: CRF, em: torch.Tensor, path: tuple[int, ...]) -> float | None:
    trans, start, end = crf._scores(float("-inf"))
    s = start[path[0]] + em[0, path[0]]
    for t in range(1, len(path)):
        s = s + trans[path[t - 1], path[t]] + em[t, path[t]]
    s = s + end[path[-1]]
    return float(s.detach())


@pytest.mark.parametrize("labels", [LABELS, BIOES])
def test_ner_viterbi_and_partition_match_brute_force(labels):
    torch.manual_seed(1)
    crf = CRF(labels)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    lengths = [4, 2, 1]
    em = torch.randn(3, 4, len(labels))
    mask = torch.arange(4).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
    paths = crf.decode(em, mask)
    logz = crf._log_partition(em, mask, *crf._scores(-1e4))
    for b, n in enumerate(lengths):
        scores = {p: _path_score(crf, em[b], p) for p in itertools.product(range(len(labels)), repeat=n)}
        finite = {p: s for p, s in scores.items() if s != float("-inf")}
        best = max(finite, key=finite.get)
        assert tuple(paths[b, :n].tolist()) == best
        expected = torch.logsumexp(torch.tensor(list(finite.values())), 0)
        assert abs(float(logz[b].detach()) - float(expected)) < 1e-4


def test_ner_crf_loss_finite_and_decreasing_on_toy():
    torch.manual_seed(2)
    head = TagHead(8, LABELS, dropout=0.0)
    states = torch.randn(6, 7, 8)
    tags = torch.tensor([[0, 1, 2, 0, 3, 4, 0]] * 6)
    batch = {"first": torch.arange(7).expand(6, 7), "word_lengths": torch.tensor([7, 7, 5, 4, 3, 1]), "tags": tags}
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    losses = []
    for _ in range(60):
        _, loss = head(states, batch)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.2
    # forbidden transitions got no gradient and stay forbidden
    em, _ = head(states, batch)
    assert head.decode(em, batch["word_lengths"])[0].tolist() == tags[0].tolist()


def test_ner_bioes_scheme_trains_on_bio_ids_and_decodes_bio():
    torch.manual_seed(2)
    head = TagHead(8, LABELS, dropout=0.0, scheme="bioes")
    assert head.crf.num_labels == len(BIOES) == 9 and head.proj.out_features == 9
    names = ["O", "B-LOC", "I-LOC", "O", "B-PER", "B-PER", "I-PER", "I-PER", "B-LOC"]
    tags = torch.tensor([[LABELS.index(t) for t in names]] * 2)  # (2, 9) BIO ids, as featurize makes them
    lengths = torch.tensor([9, 6])
    mask = torch.arange(9)[None] < lengths[:, None]
    crf_tags = head.to_bioes(tags, mask)
    assert [BIOES[i] for i in crf_tags[0]] == ["O", "B-LOC", "E-LOC", "O", "S-PER", "B-PER", "I-PER", "E-PER", "S-LOC"]
    assert [BIOES[i] for i in crf_tags[1, :6]] == ["O", "B-LOC", "E-LOC", "O", "S-PER", "S-PER"]  # cut at its length
    states = torch.randn(2, 9, 8)
    batch = {"first": torch.arange(9).expand(2, 9), "word_lengths": lengths, "tags": tags}
    opt = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(60):
        _, loss = head(states, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    em, _ = head(states, {k: v for k, v in batch.items() if k != "tags"})
    assert head.decode(em, lengths).tolist()[0] == tags[0].tolist()  # BIO ids again
    recipe = build_recipe("ner", ner.Options, ner.DEFAULTS, overrides=["ner.scheme=bioes", "encoder.hidden_dim=8"])
    assert ner.build_model(recipe, 64, LABELS).head.bioes
    with pytest.raises(UsageError, match="bioes"):
        build_recipe("ner", ner.Options, ner.DEFAULTS, overrides=["ner.scheme=iobes"])
    with pytest.raises(ValueError, match="bio or bioes"):
        TagHead(8, LABELS, scheme="iobes")


def test_ner_bioes_model_evaluates_and_tags_in_bio():
    class Tok:  # one piece per word
        def encode_words(self, words):
            return [1 + len(w) % 20 for w in words], list(range(len(words)))

    torch.manual_seed(3)
    recipe = build_recipe(
        "ner",
        ner.Options,
        ner.DEFAULTS,
        overrides=["ner.scheme=bioes", "ner.word_hidden=6", "encoder.embed_dim=8", "encoder.hidden_dim=8"],
    )
    model = ner.build_model(recipe, 32, LABELS)
    with torch.no_grad():  # untrained, but pushed to open entities everywhere: output must still be valid BIO
        model.head.proj.bias[[i for i, t in enumerate(BIOES) if t[:2] in ("B-", "I-")]] += 5.0
    words = ["Angela", "Merkel", "met", "Macron"]
    # pushed this way, the model tags these words as one entity: right for the first sentence's gold only
    tagged = ner.Predictor(model, Tok(), LABELS, recipe, "cpu", pretokenized=True).predict([" ".join(words)])
    assert tagged[0]["tags"] == ["B-PER", "I-PER", "I-PER", "I-PER"]
    examples = [{"tokens": words, "tags": ["B-PER", "I-PER", "I-PER", "I-PER"]}]
    examples += [{"tokens": words, "tags": ["B-PER", "I-PER", "O", "B-PER"]}] * 2
    metrics = ner.evaluate(model, ner.featurize(examples, Tok(), LABELS, recipe), LABELS, "cpu", 1000)
    # 3 entities predicted, 1 of them right; 5 in the gold
    assert metrics["entities"] == 5
    assert (metrics["precision"], metrics["recall"], metrics["f1"]) == pytest.approx((1 / 3, 1 / 5, 1 / 4))
    out = ner.Predictor(model, Tok(), LABELS, recipe, "cpu").predict(["Angela Merkel met Emmanuel Macron in Paris."])
    tags = out[0]["tags"]
    assert len(tags) == 8 and set(tags) <= set(LABELS) and valid_bio(tags) and any(t != "O" for t in tags)


# -- words and entities ------------------------------------------------------------------------------------
def test_ner_split_words_offsets_and_punctuation():
    text = "  Angela Merkel met Mr. Smith in the U.S. on 1996-08-22, paying $1,000.50 (really!)."
    words = ner.split_words(text)
    assert all(text[s:e] == w for w, s, e in words)
    assert [w for w, _, _ in words] == [
        "Angela",
        "Merkel",
        "met",
        "Mr.",
        "Smith",
        "in",
        "the",
        "U.S.",
        "on",
        "1996-08-22",
        ",",
        "paying",
        "$",
        "1,000.50",
        "(",
        "really",
        "!",
        ")",
        ".",
    ]
    assert [w for w, _, _ in ner.split_words("a,b  c.", pretokenized=True)] == ["a,b", "c."]


def test_ner_entities_text_is_exact_slice():
    text = "Angela  Merkel met Emmanuel Macron in Paris."
    words = ner.split_words(text)
    tags = ["B-PER", "I-PER", "O", "B-PER", "I-PER", "O", "B-LOC", "O"]
    ents = ner.entities(tags, [(s, e) for _, s, e in words], text)
    assert [(e["label"], e["text"]) for e in ents] == [
        ("PER", "Angela  Merkel"),
        ("PER", "Emmanuel Macron"),
        ("LOC", "Paris"),
    ]
    assert all(text[e["start"] : e["end"]] == e["text"] for e in ents)


def test_ner_format_inline_preserves_spacing():
    text = " Angela  Merkel met\tMacron ."
    words = ner.split_words(text)
    tags = ["B-PER", "I-PER", "O", "B-PER", "O"]
    result = {
        "text": text,
        "tokens": [w for w, _, _ in words],
        "tags": tags,
        "entities": ner.entities(tags, [(s, e) for _, s, e in words], text),
    }
    p = ner.Predictor(None, None, LABELS, None, None)
    assert p.format(text, result, "inline") == " [PER Angela  Merkel] met\t[PER Macron] ."
    assert p.format(text, result, "conll") == "Angela\tB-PER\nMerkel\tI-PER\nmet\tO\nMacron\tB-PER\n.\tO\n"
    empty = {"text": "", "tokens": [], "tags": [], "entities": []}
    assert p.format("", empty, "inline") == "" and p.format("", empty, "conll") == ""
    assert json.loads(p.format("", empty, "jsonl")) == empty


def test_ner_entity_metrics_strict_spans():
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    pred = [["B-PER", "O", "O", "B-LOC"]]
    m = ner.entity_metrics(gold, pred)
    assert m["precision"] == 0.5 and m["recall"] == 0.5
    assert m["per_type"]["LOC"]["f1"] == 1.0 and m["per_type"]["PER"]["f1"] == 0.0


# -- helpers -----------------------------------------------------------------------------------------------
_TOK = []


def _tiny_tokenizer():
    from lstmtext.tokenizer import Tokenizer

    if not _TOK:
        text = ["Paris is big and Berlin is in Germany", "Angela Merkel met Emmanuel Macron"] * 50
        _TOK.append(Tokenizer.train(text, vocab_size=300))
    return _TOK[0]


def _recipe(max_length: int = 256):
    return build_recipe("ner", ner.Options, ner.DEFAULTS, overrides=[f"data.max_length={max_length}"])


# -- through the CLI ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ner_ckpt(tmp_path_factory):
    """A tiny NER model trained once through the CLI on the embedded sample (no data argument)."""
    out = tmp_path_factory.mktemp("ner") / "tiny.ckpt"
    proc = run_cli(
        "train",
        "ner",
        "-o",
        out,
        "--epochs",
        "8",
        "-q",
        *TINY,
        "--set",
        "train.batch_tokens=600",
        LSTMTEXT_HOME=str(out.parent / "home"),
    )
    assert proc.returncode == 0, proc.stderr
    return out


SENTENCES = (
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.\n\nShares in Siemens fell after Lars Becker resigned.\n"
)


def test_ner_cli_train_evaluate_tag_predict(ner_ckpt, tmp_path, lstmtext_home):
    proc = run_cli("evaluate", ner_ckpt, "data/ner/dev.conll", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    m = json.loads(proc.stdout)
    assert {"precision", "recall", "f1", "per_type", "loss"} <= set(m) and m["f1"] > 0.3
    proc = run_cli("evaluate", ner_ckpt, "data/ner/dev.conll")
    assert proc.returncode == 0 and "micro" in proc.stderr and "PER" in proc.stderr and proc.stdout == ""

    # jsonl through a pipe: one object per input line, blank line kept as an empty result
    proc = run_cli("tag", "-m", ner_ckpt, "--format", "jsonl", input=SENTENCES)
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(rows) == 3 and rows[1] == {"text": "", "tokens": [], "tags": [], "entities": []}
    assert rows[0]["tokens"][:2] == ["Angela", "Merkel"] and rows[0]["tokens"][-1] == "."
    for r in rows:
        assert len(r["tokens"]) == len(r["tags"]) and valid_bio(r["tags"])
        assert all(r["text"][e["start"] : e["end"]] == e["text"] for e in r["entities"])

    # inline keeps the text apart from brackets, one line per input line
    proc = run_cli("tag", "-", "-m", ner_ckpt, "--format", "inline", input=SENTENCES)
    out = proc.stdout.split("\n")
    assert proc.returncode == 0 and len(out) == 4 and out[1] == ""
    assert (
        out[0].replace("[PER ", "").replace("[LOC ", "").replace("[ORG ", "").replace("[MISC ", "").replace("]", "")
        == SENTENCES.split("\n")[0]
    )

    # conll: token<TAB>tag, a blank line after each sentence
    inp = tmp_path / "in.txt"
    inp.write_text(SENTENCES)
    proc = run_cli("tag", inp, "-m", ner_ckpt)
    blocks = proc.stdout.split("\n\n")
    assert proc.returncode == 0 and blocks[0].splitlines()[0].startswith("Angela\t")
    assert all(len(line.split("\t")) == 2 for line in proc.stdout.splitlines() if line)

    # --pretokenized splits on whitespace only
    proc = run_cli("tag", "-m", ner_ckpt, "--format", "jsonl", "--pretokenized", input="Paris, France.\n")
    assert json.loads(proc.stdout)["tokens"] == ["Paris,", "France."]

    # bf16 autocast: the same words and line alignment; the CRF still never emits an invalid sequence
    proc = run_cli("tag", "-m", ner_ckpt, "--format", "jsonl", "--precision", "bf16", input=SENTENCES)
    assert proc.returncode == 0, proc.stderr
    half = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["tokens"] for r in half] == [r["tokens"] for r in rows] and all(valid_bio(r["tags"]) for r in half)

    # int8 LSTMs: the same words and line alignment, valid tags, and nearly always the same tags
    proc = run_cli("tag", "-m", ner_ckpt, "--format", "jsonl", "--precision", "int8", input=SENTENCES)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    small = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["tokens"] for r in small] == [r["tokens"] for r in rows] and all(valid_bio(r["tags"]) for r in small)
    import lstmtext

    api = lstmtext.load(ner_ckpt, int8=True).predict(SENTENCES.splitlines())
    assert [r["tokens"] for r in api] == [r["tokens"] for r in rows] and api[0]["tags"] == small[0]["tags"]
    proc = run_cli("evaluate", ner_ckpt, "data/ner/dev.conll", "--format", "json", "--precision", "int8")
    assert proc.returncode == 0, proc.stderr
    assert abs(json.loads(proc.stdout)["f1"] - m["f1"]) < 0.05

    # --context on a model trained without ner.context: a note, and every line read alone as before
    proc = run_cli("tag", "-m", ner_ckpt, "--format", "jsonl", "--context", input=SENTENCES)
    assert proc.returncode == 0 and "trained without ner.context" in proc.stderr
    assert [json.loads(line) for line in proc.stdout.splitlines()] == rows

    # the generic predict takes the same checkpoint and formats
    proc = run_cli("predict", ner_ckpt, "--format", "jsonl", input=SENTENCES)
    assert proc.returncode == 0 and [json.loads(l) for l in proc.stdout.splitlines()] == rows
    proc = run_cli("predict", ner_ckpt, "--format", "text", input=SENTENCES)
    assert_usage_error(proc, "--format text")

    # without -m: the model that 'train ner' wrote to its default place
    proc = run_cli("tag", input="Paris\n")
    assert_usage_error(proc, "no model given", "lstmtext train ner")
    (lstmtext_home / "models").mkdir(parents=True)
    shutil.copy(ner_ckpt, lstmtext_home / "models" / "ner.ckpt")
    proc = run_cli("tag", "--format", "inline", input="Angela Merkel visited Paris.\n")
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1


def test_ner_cli_tag_file_in_parallel_threads_matches_one_thread(ner_ckpt, tmp_path):
    """Two intra-op threads make tag run whole batches side by side (common.map_batches): same output."""
    lines = [f"Angela Merkel met Emmanuel Macron in Paris on day {i} ." if i % 7 else "" for i in range(700)]
    lines += ["Shares in Siemens fell after " + " ".join(["Lars Becker"] * (i % 30)) for i in range(300)]
    inp = tmp_path / "lines.txt"
    inp.write_text("\n".join(lines) + "\n")
    one = run_cli("tag", inp, "-m", ner_ckpt, "--format", "jsonl", OMP_NUM_THREADS="1")
    two = run_cli("tag", inp, "-m", ner_ckpt, "--format", "jsonl", OMP_NUM_THREADS="2")
    assert one.returncode == 0 and two.returncode == 0, (one.stderr, two.stderr)
    assert len(one.stdout.splitlines()) == len(lines)
    assert two.stdout == one.stdout

    import lstmtext

    p = lstmtext.load(ner_ckpt)
    p.batch_tokens = 512  # many batches from few lines
    p.workers = 1
    alone = p.predict(lines[:200])
    p.workers = 2
    assert p.predict(lines[:200]) == alone


def test_ner_cli_interactive_line_answered_before_next(ner_ckpt):
    p = subprocess.Popen(
        [sys.executable, "-m", "lstmtext", "tag", "-m", str(ner_ckpt), "--format", "jsonl"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=cli_env(),
    )
    try:
        p.stdin.write("Angela Merkel met Macron.\n")
        p.stdin.flush()
        ready, _, _ = select.select([p.stdout], [], [], 60)
        assert ready, "no answer to the first line while stdin is still open"
        assert json.loads(p.stdout.readline())["tokens"][0] == "Angela"
        p.stdin.write("Paris\n")
        p.stdin.close()
        assert json.loads(p.stdout.readline())["tokens"] == ["Paris"]
        assert p.wait(60) == 0
    finally:
        p.kill()


def test_ner_cli_closed_pipe_downstream_ends_quietly(ner_ckpt, tmp_path):
    inp = tmp_path / "many.txt"
    inp.write_text("Angela Merkel met Emmanuel Macron in Paris on Tuesday.\n" * 5000)
    p = subprocess.Popen(
        [sys.executable, "-m", "lstmtext", "tag", str(inp), "-m", str(ner_ckpt), "--format", "jsonl"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=cli_env(),
    )
    assert json.loads(p.stdout.readline())["tokens"][0] == "Angela"
    p.stdout.close()  # like | head -1
    assert p.wait(120) == 0
    assert p.stderr.read() == b""


def test_ner_cli_bad_eval_data(ner_ckpt, tmp_path):
    bad = tmp_path / "bad.conll"
    bad.write_text("Paris B-LOC\nis O\n\nonly-one-column\n")
    assert_usage_error(run_cli("evaluate", ner_ckpt, bad), "bad.conll line 4")
    unseen = tmp_path / "unseen.conll"
    unseen.write_text("-DOCSTART- -X- O O\n\nParis B-LOC\nMars B-PLANET\n")
    assert_usage_error(run_cli("evaluate", ner_ckpt, unseen), "unseen.conll line 4", "B-PLANET", "never seen")
    assert_usage_error(run_cli("train", "ner", "--train", bad, "-o", tmp_path / "x.ckpt", *TINY), "bad.conll line 4")


def test_ner_cli_bad_input_lines(ner_ckpt):
    assert_usage_error(run_cli("tag", "-m", ner_ckpt, input=""), "empty")
    assert_usage_error(run_cli("tag", "-m", ner_ckpt, input=b"Paris ok\nM\xfcnchen\n"), "stdin line 2", "UTF-8")
    proc = run_cli("tag", "-m", ner_ckpt, "--format", "jsonl", input="\n \r\nParis\n\n")
    rows = [json.loads(l) for l in proc.stdout.splitlines()]
    assert proc.returncode == 0 and len(rows) == 4 and [len(r["tokens"]) for r in rows] == [0, 0, 1, 0]


def test_ner_cli_one_megabyte_line(ner_ckpt):
    sentence = "Angela Merkel met Emmanuel Macron in Paris on Tuesday. "
    line = (sentence * (1_000_000 // len(sentence) + 1))[:1_000_000]
    proc = run_cli("tag", "-m", ner_ckpt, "--format", "jsonl", input=line + "\nParis\n", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(l) for l in proc.stdout.splitlines()]
    assert len(rows) == 2 and rows[1]["tokens"] == ["Paris"]
    assert len(rows[0]["tokens"]) == len(rows[0]["tags"]) > 150_000
    assert all(line[e["start"] : e["end"]] == e["text"] for e in rows[0]["entities"])


def test_ner_cli_tag_refuses_other_task_checkpoint(sentiment_ckpt):
    assert_usage_error(run_cli("tag", "-m", sentiment_ckpt, input="Paris\n"), "'sentiment' model", "tag")
    assert_usage_error(run_cli("tag", "-m", "no-such.ckpt", input="Paris\n"), "no-such.ckpt")
    assert_usage_error(
        run_cli("tag", "--format", "xml", input="Paris\n"), "'xml' is not one of 'conll', 'jsonl', 'inline'"
    )
