"""lstmtext ensemble: several models as one checkpoint. A tagger's path is checked against brute force over every
tag sequence (the summed CRF score of the members), a classifier's probabilities against the members' mean."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from conftest import REPO, TINY, assert_usage_error, run_cli
from test_export import make_ckpt

from lstmtext import api
from lstmtext.data import sample_path
from lstmtext.ensemble import write
from lstmtext.heads.tag import allowed_moves
from lstmtext.tasks import get_task, ner
from lstmtext.tokenizer import Tokenizer

WORDS = [["Peter", "Blackburn", "visited"], ["EU", "rejects", "German", "call"], ["Paris"]]
BIO = ["ner.scheme=bio", "ner.word_hidden=0"]


@pytest.fixture(scope="module")
def sample():
    mod = get_task("ner")
    examples = mod.read(str(sample_path("ner", "train")), ner.Options(), "train")[:300]
    return Tokenizer.train(mod.tokenizer_texts(examples), 400), mod.make_labels(examples)


def sequence_score(em, crf, tags, moves) -> torch.Tensor:
    """One member's CRF score of a tag sequence (its emissions (W, L) for one sentence); -inf if not allowed."""
    allowed, first, last = moves
    if not (first[tags[0]] and last[tags[-1]] and all(allowed[a, b] for a, b in zip(tags, tags[1:]))):
        return torch.tensor(float("-inf"), dtype=torch.float64)
    s = crf.start[tags[0]] + crf.end[tags[-1]] + sum(em[t, y] for t, y in enumerate(tags))
    return (s + sum(crf.transitions[a, b] for a, b in zip(tags, tags[1:]))).double()


def test_tag_ensemble_decodes_the_best_summed_score_and_scores_its_own_nll(sample, tmp_path):
    parts = [make_ckpt(tmp_path / f"m{s}.ckpt", sample, *BIO, seed=s) for s in (1, 2, 3)]
    out = tmp_path / "ens.ckpt"
    assert write(parts, out)["ensemble"]["members"] == 3
    p = api.load(out)
    model, labels, moves = p.model, p.labels, allowed_moves(p.labels)
    examples = [{"tokens": w, "tags": ["O"] * len(w)} for w in WORDS]
    examples[1]["tags"] = ["B-ORG", "O", "B-MISC", "O"]
    batch = ner.collate(ner.featurize(examples, p.tok, labels, p.recipe))
    with torch.no_grad():
        em, loss = model(batch)
        paths = model.head.decode(em, batch["word_lengths"])
        members = [(m(batch)[0].double(), m.head.crf) for m in model.members]
        nll, singles = [], []
        for b, words in enumerate(WORDS):
            W = len(words)
            scores = {
                seq: sum(sequence_score(e[b], crf, seq, moves) for e, crf in members) / 3
                for seq in itertools.product(range(len(labels)), repeat=W)
            }
            best = max(scores, key=scores.get)
            assert paths[b, :W].tolist() == list(best), b
            log_z = torch.logsumexp(torch.stack(list(scores.values())), 0)
            nll.append(log_z - scores[tuple(batch["tags"][b, :W].tolist())])
            singles.append([max(scores, key=lambda q: sequence_score(e[b], crf, q, moves)) for e, crf in members])
    assert loss.item() == pytest.approx(torch.stack(nll).mean().item(), rel=1e-4)
    # the random members disagree somewhere, so the ensemble's path is not any one member's by construction
    assert any(len(set(s)) > 1 for s in singles), singles
    assert set(paths.flatten().tolist()) != {labels.index("O")}


def test_tag_ensemble_of_one_model_twice_tags_as_the_model(sample, tmp_path):
    one = make_ckpt(tmp_path / "m.ckpt", sample, "ner.scheme=bioes", "ner.word_hidden=8", "ner.char_dim=4", seed=5)
    out = tmp_path / "twice.ckpt"
    assert run_cli("ensemble", one, one, "-o", out).returncode == 0
    text = "Peter Blackburn visited Paris .\nEU rejects German call to boycott British lamb .\n"
    alone = run_cli("tag", "-m", one, "--format", "conll", input=text)
    both = run_cli("tag", "-m", out, "--format", "conll", input=text)
    assert alone.returncode == both.returncode == 0, both.stderr
    assert both.stdout == alone.stdout and any(line.split()[-1] != "O" for line in alone.stdout.split("\n") if line)


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    d = tmp_path_factory.mktemp("ens")
    runs = [d / f"s{seed}.ckpt" for seed in (1, 2)]
    for seed, out in zip((1, 2), runs):
        proc = run_cli("train", "sentiment", "-o", out, "--epochs", "2", "--seed", seed, "-q", *TINY)
        assert proc.returncode == 0, proc.stderr
    return runs


def test_sentiment_ensemble_averages_probabilities_through_the_cli(classifiers, tmp_path):
    out = tmp_path / "ens.ckpt"
    proc = run_cli("ensemble", *classifiers, "-o", out)
    assert proc.returncode == 0 and "an ensemble of 2 models" in proc.stderr, proc.stderr
    text = "a gorgeous, witty, seductive movie\nthe plot is a dull mess\n"
    runs = [run_cli("predict", m, "--format", "jsonl", input=text) for m in (*classifiers, out)]
    assert all(r.returncode == 0 for r in runs), [r.stderr for r in runs]
    a, b, ens = ([json.loads(x) for x in r.stdout.splitlines()] for r in runs)
    assert len(ens) == 2
    for x, y, e in zip(a, b, ens):
        for label, q in e["scores"].items():
            assert q == pytest.approx((x["scores"][label] + y["scores"][label]) / 2, abs=2e-4)
        assert math.isclose(sum(e["scores"].values()), 1, abs_tol=1e-3)
    rows = [line.split("\t") for line in (REPO / "data/sentiment/dev.tsv").read_text().splitlines()[1:]]
    ev = json.loads(run_cli("evaluate", out, REPO / "data/sentiment/dev.tsv", "--format", "json").stdout)
    said = run_cli("predict", out, "--format", "jsonl", input="".join(f"{t}\n" for t, _ in rows)).stdout.splitlines()
    right = sum(json.loads(x)["label"] == gold for x, (_, gold) in zip(said, rows))
    assert len(said) == len(rows) == 200 and ev["accuracy"] == pytest.approx(right / 200) and ev["loss"] > 0
    info = json.loads(run_cli("info", out, "--format", "json").stdout)
    assert info["metrics"] == {} and [p["seed"] for p in info["ensemble"]["parts"]] == [1, 2]
    assert [p["path"] for p in info["ensemble"]["parts"]] == [str(c) for c in classifiers]
    table = run_cli("info", out)
    assert table.returncode == 0 and "member 2" in table.stderr and "s2.ckpt" in table.stderr, table.stderr


def test_ensemble_refusals(classifiers, tmp_path):
    ens = tmp_path / "ens.ckpt"
    assert run_cli("ensemble", *classifiers, "-o", ens).returncode == 0
    assert_usage_error(run_cli("ensemble", classifiers[0], "-o", tmp_path / "one.ckpt"), "at least two")
    assert_usage_error(run_cli("ensemble", *classifiers, "-o", ens), "exists", "--force")
    assert run_cli("ensemble", *classifiers, "-o", ens, "--force").returncode == 0
    assert_usage_error(run_cli("ensemble", ens, classifiers[0], "-o", tmp_path / "x.ckpt"), "an ensemble of 2")
    assert_usage_error(run_cli("average", ens, classifiers[0], "-o", tmp_path / "x.ckpt"), "an ensemble of 2")
    assert_usage_error(run_cli("export", ens, "-o", tmp_path / "x.onnx"), "an ensemble of 2")
    assert_usage_error(
        run_cli("train", "sentiment", "-o", tmp_path / "y.ckpt", "--init-from", ens, *TINY), "--init-from", "ensemble"
    )
    assert_usage_error(run_cli("predict", ens, "--explain", input="a fine film\n"), "explain or inspect one")
    other = tmp_path / "wide.ckpt"
    proc = run_cli("train", "sentiment", "-o", other, "--epochs", "1", "-q", *TINY, "--set", "encoder.hidden_dim=16")
    assert proc.returncode == 0, proc.stderr
    assert_usage_error(run_cli("ensemble", classifiers[0], other, "-o", tmp_path / "x.ckpt"), "[encoder] differs")
    lm = tmp_path / "lm.ckpt"
    proc = run_cli("train", "lm", "-o", lm, "--epochs", "1", "-q", *TINY)
    assert proc.returncode == 0, proc.stderr
    assert_usage_error(run_cli("ensemble", lm, lm, "-o", tmp_path / "x.ckpt"), "lm models do not ensemble")
    assert not (tmp_path / "x.ckpt").exists() and not (tmp_path / "x.onnx").exists()


def test_train_members_trains_each_seed_and_keeps_their_ensemble_scored_on_the_shared_dev_slice(tmp_path):
    out = tmp_path / "e.ckpt"
    train = ["--train", REPO / "data/sentiment/train.tsv", "--epochs", "2", "--seed", "3", *TINY]
    proc = run_cli("train", "sentiment", "-o", out, *train, "--set", "train.members=2")
    assert proc.returncode == 0, proc.stderr
    assert "ensemble member 2 of 2: seed 4" in proc.stderr and "ensemble of 2: dev accuracy" in proc.stderr
    meta = json.loads(run_cli("info", out, "--format", "json").stdout)
    parts = [tmp_path / "e.member1.ckpt", tmp_path / "e.member2.ckpt"]
    assert [p["path"] for p in meta["ensemble"]["parts"]] == [str(p) for p in parts]
    assert [p["seed"] for p in meta["ensemble"]["parts"]] == [3, 4]
    assert meta["recipe"]["train"]["members"] == 2 and meta["recipe"]["train"]["seed"] == 3
    member_meta = [json.loads(run_cli("info", p, "--format", "json").stdout) for p in parts]
    spent = sum(m["provenance"]["train_seconds"] for m in member_meta)
    assert meta["provenance"]["train_seconds"] == pytest.approx(spent, abs=0.11) and meta["provenance"]["seed"] == 3
    assert [m["recipe"]["data"]["split_seed"] for m in member_meta] == [3, 3]  # one held-out slice for both
    # the ensemble's dev score is that of the slice both members held out: the same slice a seed-3 run holds out
    from lstmtext.tasks import sentiment
    from lstmtext.training.prepare import read_split

    p = api.load(out)
    dev = read_split(sentiment, p.recipe)[-1]
    alone = read_split(sentiment, api.load(parts[1]).recipe)[-1]
    assert dev == alone and len(dev) == 80
    feats = sentiment.featurize(dev, p.tok, p.labels, p.recipe)
    got = sentiment.evaluate(p.model, feats, p.labels, p.device, p.batch_tokens)
    assert meta["metrics"]["accuracy"] == pytest.approx(got["accuracy"]) and meta["metrics"]["loss"] > 0
    # a streamed or decoded task refuses before it trains anything
    proc = run_cli("train", "lm", "-o", tmp_path / "lm.ckpt", "--epochs", "1", *TINY, "--set", "train.members=2")
    assert_usage_error(proc, "lm models do not ensemble")
    assert not list(tmp_path.glob("lm*"))
    assert_usage_error(run_cli("train", "sentiment", "-o", tmp_path / "z.ckpt", "--set", "train.members=0"), "members")
    proc = run_cli("train", "sentiment", "-o", tmp_path / "z.ckpt", *TINY, "--set", "train.members=2", WORLD_SIZE="2")
    assert_usage_error(proc, "train.members runs in one process")
    assert not list(tmp_path.glob("z*"))
