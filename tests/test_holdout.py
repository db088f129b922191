"""The dev slice of train: by example, and by sentence for phrase treebanks (lstmtext/holdout.py)."""

from __future__ import annotations

import random

import pytest
from conftest import REPO, TINY, run_cli

from lstmtext.errors import UsageError
from lstmtext.holdout import sentence_groups, split_valid


def inside(a: str, b: str) -> bool:
    """Brute force: the words of ``a`` occur, whole and in order, as a run inside ``b``."""
    x, y = a.split(), b.split()
    return any(y[i : i + len(x)] == x for i in range(len(y) - len(x) + 1))


def test_split_by_example_is_seeded_and_disjoint():
    ex = list(range(1000))
    tr, va = split_valid(ex, 0.1, 50, seed=1)
    assert len(va) == 50 and len(tr) == 950 and not set(tr) & set(va)
    assert split_valid(ex, 0.1, 50, seed=1) == (tr, va)
    assert tr == sorted(tr) and va == sorted(va)  # the input order is kept on both sides


def test_sentence_groups_known_answer():
    texts = ["b c", "a b c d", "c", "x y", "y", "ab", "c d", "a b"]
    group, roots = sentence_groups(texts)
    assert [texts[r] for r in roots] == ["a b c d", "x y", "ab"]  # "ab" is a word, not "a b"
    assert group == [0, 0, 0, 1, 1, 2, 0, 0]
    # whole words: "a b" is not inside "ca b a", though it is as characters and both of its words are there
    group, roots = sentence_groups(["ca b a", "a b", "b a"])
    assert roots == [0, 1] and group == [0, 1, 0]


def test_sentence_groups_duplicates_join_the_first_one():
    group, roots = sentence_groups(["the film", "a film", "the film"])
    assert roots == [0, 1] and group == [0, 1, 0]


@pytest.mark.parametrize("seed", range(30))
def test_sentence_groups_match_brute_force(seed):
    """A text is a sentence exactly when no text before it (longer, or as long and earlier) contains it, and a
    text joins the first sentence, in that order, that contains it."""
    rng = random.Random(seed)
    sentences = [" ".join(rng.choice("abcde") for _ in range(rng.randint(1, 7))) for _ in range(8)]
    texts = list(sentences)
    for s in sentences:
        w = s.split()
        for _ in range(3):
            i = rng.randrange(len(w))
            texts.append(" ".join(w[i : rng.randint(i + 1, len(w))]))
    rng.shuffle(texts)
    order = sorted(range(len(texts)), key=lambda i: (-len(texts[i].split()), i))
    rank = {i: k for k, i in enumerate(order)}
    want_roots = [i for i in order if not any(inside(texts[i], texts[j]) for j in order[: rank[i]])]
    group, roots = sentence_groups(texts)
    assert roots == want_roots
    for i, t in enumerate(texts):
        assert roots[group[i]] == next(r for r in want_roots if inside(t, texts[r]))


def treebank(n_sentences: int = 40) -> list[dict]:
    """Sentences of words of their own, each followed by three of its phrases, as SST-2's train holds them."""
    examples = []
    for s in range(n_sentences):
        words = [f"w{s}x{k}" for k in range(6)]
        for text in (words, words[:3], words[2:5], words[4:]):
            examples.append({"text": " ".join(text), "label": str(s % 2)})
    return examples


def test_split_by_sentence_holds_out_whole_sentences():
    examples = treebank()
    train, dev = split_valid(examples, 0.1, 100, seed=3, by="sentence")
    assert len(dev) == 4 and all(len(e["text"].split()) == 6 for e in dev)  # int(40 × 0.1) sentences, whole
    assert len(train) == 160 - 4 * 4  # each held sentence takes its three phrases with it
    assert not any(inside(t["text"], d["text"]) for t in train for d in dev)
    assert [examples.index(e) for e in train] == sorted(examples.index(e) for e in train)
    assert split_valid(examples, 0.1, 100, seed=3, by="sentence") == (train, dev)
    assert split_valid(examples, 0.1, 100, seed=4, by="sentence")[1] != dev
    assert len(split_valid(examples, 0.5, 7, seed=3, by="sentence")[1]) == 7  # the cap counts sentences


def test_split_by_sentence_never_trains_on_a_dev_sentence():
    """Random phrase sets with shared words: no training text contains a dev sentence."""
    rng = random.Random(0)
    examples = [{"text": " ".join(rng.choice("abcdef") for _ in range(rng.randint(1, 8)))} for _ in range(300)]
    train, dev = split_valid(examples, 0.2, 1000, seed=1, by="sentence")
    assert dev and not any(inside(d["text"], t["text"]) for d in dev for t in train)


def test_split_by_sentence_refuses_a_corpus_of_one_sentence():
    with pytest.raises(UsageError, match="all 3 examples lie inside one sentence"):
        split_valid([{"text": "a b c"}, {"text": "a b"}, {"text": "b c"}], 0.5, 10, seed=1, by="sentence")


def test_split_by_sentence_refuses_examples_without_text():
    with pytest.raises(UsageError, match='valid_by = "sentence" groups examples by their text.*words, tags'):
        split_valid([{"words": ["a"], "tags": ["O"]}] * 3, 0.5, 10, seed=1, by="sentence")
    with pytest.raises(UsageError, match="data.valid_by 'word': expected one of example, sentence"):
        split_valid([{"text": "a"}] * 3, 0.5, 10, seed=1, by="word")


def test_info_names_the_dev_data_of_each_kind():
    from lstmtext.cli.info import dev_data

    slice_ = {"train": ["sst2:train"], "dev": "", "valid_fraction": 0.05, "valid_max": 3000}
    assert dev_data({**slice_, "dev": "conll2003:dev"}) == "conll2003:dev"
    assert dev_data({**slice_, "train": []}) == "the embedded sample's dev split"
    assert dev_data({**slice_, "valid_fraction": 0}) == "none (the last checkpoint was kept)"
    # a recipe stored before data.valid_by existed held out by example
    assert dev_data(slice_) == "a seeded 5 % slice of train, by example (at most 3000)"
    assert (
        dev_data({**slice_, "valid_by": "sentence"})
        == "a seeded 5 % slice of train, by sentence (at most 3000 sentences)"
    )


def test_train_holds_out_by_sentence_from_the_recipe(tmp_path):
    train = tmp_path / "phrases.tsv"
    train.write_text("sentence\tlabel\n" + "".join(f"{e['text']}\t{e['label']}\n" for e in treebank()))
    args = ["train", "sentiment", "--train", train, "--epochs", "1", *TINY]
    run = run_cli(
        *args, "-o", tmp_path / "m.ckpt", "--set", "data.valid_by=sentence", "--set", "data.valid_fraction=0.1"
    )
    assert run.returncode == 0, run.stderr
    assert "144 training examples, 4 for validation (a seeded slice of train, by sentence)" in run.stderr
    card = run_cli("info", tmp_path / "m.ckpt", COLUMNS="300").stderr
    assert "a seeded 10 % slice of train, by sentence (at most 2000 sentences)" in card
    last = run_cli(*args, "-o", tmp_path / "last.ckpt", "--set", "data.valid_fraction=0")
    assert (
        last.returncode == 0 and "160 training examples, none held out (the last checkpoint is kept)" in last.stderr
    ), last.stderr
    card = run_cli("info", tmp_path / "last.ckpt", COLUMNS="300").stderr
    assert "none (the last checkpoint was kept)" in card and "dev accuracy" not in card
    bad = run_cli(*args, "-o", tmp_path / "bad.ckpt", "--set", "data.valid_by=phrase")
    assert bad.returncode == 2 and bad.stderr.startswith("lstmtext: error: --set data.valid_by: expected"), bad.stderr
    assert "sentence" in bad.stderr and not (tmp_path / "bad.ckpt").exists()


@pytest.mark.parametrize("task", ["ner", "lm"])
def test_tasks_without_sentence_text_refuse_it(task, tmp_path):
    sample = {"ner": "data/ner/train.conll", "lm": "data/lm/train.txt"}[task]
    run = run_cli("train", task, "--train", REPO / sample, "-o", tmp_path / "m.ckpt", *TINY,
                  "--set", "data.valid_by=sentence")  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.startswith("lstmtext: error: data.valid_by") and 'use "example"' in run.stderr
    assert not (tmp_path / "m.ckpt").exists()
