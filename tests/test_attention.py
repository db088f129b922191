"""Attention you can look at: the weights beam search keeps along its hypotheses, translate --attention/--plot,
and sentiment's attention pooling through predict --attention/--plot.

Shapes: a translation's weights have one row per target piece plus one for the step that emitted EOS (the
JSONL's "target" ends with "</s>"), and one column per source piece (the source has no BOS/EOS)."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import REPO, TINY, assert_usage_error, run_cli

SAMPLE_TRAIN = REPO / "data" / "translate" / "train.tsv"
SOURCES = [
    "Ein Mann fährt Fahrrad.",
    "Zwei kleine Hunde spielen im Schnee.",
    "Eine Frau singt.",
    "Im Park hält eine alte Frau in einem roten Mantel einen großen Ball.",
]
PNG = b"\x89PNG\r\n\x1a\n"


# -- the decoder: kept weights against recomputations ------------------------------------------------------
def _untrained(*overrides: str):
    """A small untrained translation model, its attention keys scaled up so that its weights are far from
    uniform: different paths then get clearly different weights."""
    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import translate as T
    from lstmtext.tokenizer import Tokenizer

    torch.manual_seed(0)
    sets = ["encoder.embed_dim=16", "encoder.hidden_dim=16", "translate.hidden_dim=24", "tokenizer.vocab_size=400"]
    recipe = resolve_recipe("translate", None, [*sets, *overrides])
    tok = Tokenizer.train(T.tokenizer_texts(T.read(str(SAMPLE_TRAIN), recipe.options)[:400]), 400, "bpe")
    model = T.build_model(recipe, len(tok), []).eval()
    with torch.no_grad():
        model.head.key_proj.weight.mul_(20)
    return tok, model


@pytest.fixture(scope="module", params=[[], ["translate.input_feeding=true"]], ids=["fused", "input-feeding"])
def untrained(request):
    return _untrained(*request.param)


def _encode(model, tok, sentences):
    from lstmtext.tasks.common import pad

    ids = tok.encode(sentences)
    lengths = torch.tensor([len(s) for s in ids])
    with torch.inference_mode():
        states = model.encoder(pad(ids), lengths)
    return states, lengths, model.decoding.max_len([len(s) for s in ids])


def _teacher_forced(model, states, lengths, ids: list[int]) -> torch.Tensor:
    """The head's teacher-forced weights for BOS + ids: (len(ids) + 1, S)."""
    from lstmtext.tokenizer import BOS

    batch = {"lengths": lengths, "tgt_in": torch.tensor([[BOS, *ids]])}
    with torch.inference_mode():
        return model.head.attention_weights(states, batch)[0]


def test_beam_1_weights_equal_a_greedy_step_by_step_recomputation(untrained):
    from lstmtext.decoding import _mask_step, beam_search
    from lstmtext.tokenizer import BOS, EOS

    tok, model = untrained
    for sentence in SOURCES:
        states, lengths, limit = _encode(model, tok, [sentence])
        ids, _, kept = beam_search(model.head, states, lengths, limit, beam=1, attention=True)[0][0]
        assert kept.shape == (len(ids) + 1, lengths[0])
        # greedy by hand: the most likely piece at each step, and the weights the step used
        with torch.inference_mode():
            st, token, rows, picked = model.head.start(states, lengths, 1, attention=True), BOS, [], []
            for t in range(limit[0] + 1):
                logp, st = model.head.step(torch.tensor([token]), st)
                _mask_step(logp, torch.tensor([t >= limit[0]]))
                token = int(logp.argmax(-1))
                rows.append(st.weights[0])
                if token == EOS:
                    break
                picked.append(token)
        assert picked == ids, sentence
        assert torch.equal(kept, torch.stack(rows)), sentence


def test_beam_weights_are_those_of_each_returned_hypothesis(untrained):
    from lstmtext.decoding import beam_search

    tok, model = untrained
    states, lengths, limits = _encode(model, tok, SOURCES)
    plain = beam_search(model.head, states, lengths, limits, beam=4, n_best=3)
    kept = beam_search(model.head, states, lengths, limits, beam=4, n_best=3, attention=True)
    for b, (hyps, with_weights) in enumerate(zip(plain, kept)):
        assert [h[:2] for h in with_weights] == hyps  # asking for weights changes no hypothesis and no score
        n = int(lengths[b])
        for ids, _, weights in with_weights:
            assert weights.shape == (len(ids) + 1, states.size(1))
            assert torch.all(weights[:, n:] == 0)  # padding gets no weight
            torch.testing.assert_close(weights.sum(-1), torch.ones(len(ids) + 1), atol=1e-4, rtol=0)
            forced = _teacher_forced(model, states[b : b + 1, :n], lengths[b : b + 1], ids)
            torch.testing.assert_close(weights[:, :n], forced, atol=1e-5, rtol=1e-4)
    # where two hypotheses part, their weights part too: a mix-up of backpointers could not pass the check above
    (a, _, wa), (b, _, wb) = kept[3][:2]
    part = next(i for i, (x, y) in enumerate(zip(a + [-1], b + [-2])) if x != y)
    assert (
        torch.equal(wa[: part + 1], wb[: part + 1]) and (wa[part + 1] - wb[part + 1]).abs().max() > 1e-3
    )  # 100 × the tolerance


# -- the CLI -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def translate_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("translate") / "tiny.ckpt"
    sets = ["--set", "translate.hidden_dim=32", "--set", "train.batch_tokens=800"]
    proc = run_cli("train", "translate", "-o", out, "--epochs", "1", "-q", *TINY, *sets)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def attentive_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("sentiment") / "attentive.ckpt"
    proc = run_cli(
        "train", "sentiment", "-o", out, "--epochs", "2", "-q", *TINY, "--set", "sentiment.pooling=attention"
    )
    assert proc.returncode == 0, proc.stderr
    return out


def _assert_pictures(folder, names):
    import matplotlib.image

    assert sorted(p.name for p in folder.iterdir()) == names
    for name in names:
        data = (folder / name).read_bytes()
        assert data[:8] == PNG
        pixels = matplotlib.image.imread(folder / name)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100
        assert len(torch.from_numpy(pixels).reshape(-1, pixels.shape[-1]).unique(dim=0)) > 20  # not blank


def test_translate_attention_jsonl_matches_the_teacher_forced_weights_and_plots(translate_ckpt, tmp_path):
    import lstmtext

    lines = [SOURCES[0], "", SOURCES[1]]
    text = "\n".join(lines) + "\n"
    before = run_cli("translate", "-m", translate_ckpt, "-f", "jsonl", "--beam", "3", input=text)
    proc = run_cli(
        "translate",
        "-m",
        translate_ckpt,
        "-f",
        "jsonl",
        "--beam",
        "3",
        "--attention",
        "--plot",
        tmp_path / "p",
        input=text,
    )
    assert before.returncode == 0 and proc.returncode == 0, proc.stderr
    plain, rows = before.stdout.splitlines(), [json.loads(line) for line in proc.stdout.splitlines()]
    assert "attention" not in before.stdout and len(rows) == 3 and "attention" not in rows[1]
    for line, row in zip(plain, rows):  # the weights are added; nothing else changes
        row.pop("attention", None)
        assert json.dumps(row, ensure_ascii=False) == line
    _assert_pictures(tmp_path / "p", ["0001.png", "0003.png"])  # line 2 is blank: no picture

    predictor = lstmtext.load(translate_ckpt)
    model, tok = predictor.model, predictor.tok
    for sentence, result in zip(SOURCES[:2], predictor.translate(SOURCES[:2], beam=3, attention=True)):
        att = result["attention"]
        assert att["source"] == tok.pieces(sentence) and att["target"][-1] == "</s>"
        ids = [tok.sp.PieceToId(p) for p in att["target"][:-1]]
        assert tok.decode(ids) == result["translation"]
        weights = torch.tensor(att["weights"])
        assert weights.shape == (len(att["target"]), len(att["source"]))  # target pieces + EOS × source pieces
        torch.testing.assert_close(weights.sum(-1), torch.ones(len(ids) + 1), atol=len(att["source"]) * 5e-5, rtol=0)
        states, lengths, _ = _encode(model, tok, [sentence])
        torch.testing.assert_close(weights, _teacher_forced(model, states, lengths, ids), atol=1e-4, rtol=0)


def test_translate_attention_refusals(translate_ckpt, tmp_path):
    proc = run_cli("translate", "-m", translate_ckpt, "--attention", input="Ein Hund.\n")
    assert_usage_error(proc, "--attention", "--format jsonl")
    (tmp_path / "file").write_text("x")
    proc = run_cli("translate", "-m", translate_ckpt, "--plot", tmp_path / "file", input="Ein Hund.\n")
    assert_usage_error(proc, "--plot", "is a file", "folder")


def test_predict_attention_pooling_weights_are_the_ones_the_model_pools_with(attentive_ckpt, tmp_path):
    import lstmtext

    texts = ["a wonderful, moving film", "", "terrible and boring"]
    text = "\n".join(texts) + "\n"
    before = run_cli("predict", attentive_ckpt, "-f", "jsonl", input=text)
    proc = run_cli("predict", attentive_ckpt, "-f", "jsonl", "--attention", "--plot", tmp_path / "p", input=text)
    assert before.returncode == 0 and proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    _assert_pictures(tmp_path / "p", ["0001.png", "0003.png"])

    predictor = lstmtext.load(attentive_ckpt)
    model, tok = predictor.model, predictor.tok
    for line, row, sentence in zip(before.stdout.splitlines(), rows, texts):
        att = row.pop("attention", None)
        assert json.dumps(row, ensure_ascii=False) == line  # the weights are added; nothing else changes
        if not sentence:
            assert att is None
            continue
        assert [p for p, _ in att] == tok.pieces(sentence)
        weights = torch.tensor([w for _, w in att])
        assert float(weights.sum()) == pytest.approx(1.0, abs=len(att) * 5e-5)
        # pooling the encoder states with exactly these weights gives the scores predict wrote
        ids = tok.encode([sentence])
        lengths = torch.tensor([len(ids[0])])
        with torch.inference_mode():
            states = model.encoder(torch.tensor(ids), lengths)
            exact = model.head.attention_weights(states, lengths)[0]
            probs = model.head.mlp((exact.unsqueeze(-1) * states[0]).sum(0)).softmax(-1)
        torch.testing.assert_close(weights, exact, atol=5e-5, rtol=0)
        assert [round(p, 4) for p in probs.tolist()] == list(row["scores"].values())


def test_predict_attention_refusals(sentiment_ckpt, attentive_ckpt, tmp_path):
    from types import SimpleNamespace

    from lstmtext.errors import UsageError

    proc = run_cli("predict", sentiment_ckpt, "-f", "jsonl", "--attention", input="good\n")
    assert_usage_error(proc, "pools with 'maxmean'", "sentiment.pooling=attention")
    proc = run_cli("predict", attentive_ckpt, "--attention", input="good\n")  # the default format is text
    assert_usage_error(proc, "--attention", "--format jsonl")
    from lstmtext.tasks import lm, ner

    for predictor, name in ((ner.Predictor, "NER model"), (lm.Predictor, "language model")):
        with pytest.raises(UsageError, match=f"a {name} has no attention weights"):
            predictor.show_attention(SimpleNamespace(), jsonl=True, plot_dir=None)
