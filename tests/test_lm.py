"""Language model: chunking, metrics, sampling, stateful generation, the CLI end to end, transfer, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch
from conftest import REPO, TINY, assert_usage_error, run_cli

import lstmtext
from lstmtext.config import build_recipe
from lstmtext.decoding import filter_logits, make_generator, sample, top_k_filter, top_p_filter
from lstmtext.errors import UsageError
from lstmtext.tasks import lm
from lstmtext.tokenizer import BOS, EOS, PAD, UNK, Tokenizer

SAMPLE = REPO / "data" / "lm" / "train.txt"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:400]
    return Tokenizer.train((l for l in lines if l.strip()), vocab_size=400)


def tiny_predictor(tok, cell="lstm", layers=2, embed=16, hidden=24):
    torch.manual_seed(0)
    recipe = build_recipe(
        "lm",
        lm.Options,
        lm.DEFAULTS,
        overrides=[
            f"encoder.cell={cell}",
            f"encoder.num_layers={layers}",
            f"encoder.embed_dim={embed}",
            f"encoder.hidden_dim={hidden}",
        ],
    )
    model = lm.build_model(recipe, len(tok), []).eval()
    return lm.Predictor(model, tok, [], recipe, torch.device("cpu"))


# -- chunking and metrics ----------------------------------------------------------------------------------
@pytest.mark.parametrize("n,length", [(1, 4), (2, 4), (9, 4), (10, 4), (11, 4), (300, 256), (257, 256)])
def test_chunk_stream_scores_every_piece_once(n, length):
    fwd, bwd = [0] * n, [0] * n
    for s, t in lm.chunk_stream(list(range(n)), length):
        assert t - s <= length
        for p in range(s + 1, t):  # forward targets of this chunk
            fwd[p] += 1
        for p in range(s, t - 1):  # backward targets
            bwd[p] += 1
    assert fwd[1:] == [1] * (n - 1) and fwd[:1] == [0]
    assert bwd[:-1] == [1] * (n - 1)


def test_featurize_counts_words_lines_and_chars_once(tok):
    texts = ["the town is old .", "", "a small river , 12 miles long .", "x"] * 7
    examples = [{"text": t, "where": f"f line {i}"} for i, t in enumerate(texts)]
    recipe = build_recipe("lm", lm.Options, lm.DEFAULTS, overrides=["lm.chunk_length=8"])
    feats = lm.featurize(examples, tok, [], recipe)
    pieces = sum(len(p) + 1 for p in tok.encode(texts))
    assert sum(f["length"] - 1 for f in feats) == pieces  # every piece after the opening EOS, once
    assert sum(f["words"] for f in feats) == sum(len(t.split()) + 1 for t in texts)
    assert sum(f["lines"] for f in feats) == len(texts)
    assert sum(f["chars"] for f in feats) == sum(len(t) + 1 for t in texts)
    assert feats[0]["ids"][0] == EOS and all(len(f["ids"]) <= 8 for f in feats)


def test_lm_metrics_per_word_perplexity_by_hand():
    # 2 lines "a b" and "c": 3 words + 2 ends of line = 5; NLL 10 nats over 8 pieces, 6 characters
    m = lm.lm_metrics(fwd_nll=10.0, pieces=8, bwd_nll=12.0, bwd_pieces=8, words=5, lines=2, chars=6)
    assert m["ppl_word"] == pytest.approx(math.exp(10.0 / 5))
    assert m["ppl_piece"] == pytest.approx(math.exp(10.0 / 8))
    assert m["bpc"] == pytest.approx(10.0 / math.log(2) / 6)
    assert m["ppl_piece_bwd"] == pytest.approx(math.exp(12.0 / 8))
    assert m["loss"] == pytest.approx(0.5 * (10 / 8 + 12 / 8))


def test_lm_evaluate_equals_stepwise_nll(tok):
    """With one chunk, the evaluated NLL is the sum of -log p(next piece) computed step by step."""
    p = tiny_predictor(tok, layers=1, embed=24, hidden=24)
    texts = ["the old town", "a river ."]
    recipe = build_recipe("lm", lm.Options, lm.DEFAULTS, overrides=["lm.chunk_length=64"])
    feats = lm.featurize([{"text": t} for t in texts], tok, [], recipe)
    m = lm.evaluate(p.model, feats, [], torch.device("cpu"), 4096)
    stream = feats[0]["ids"]
    nll = sum(-p.next_logits(stream[:i]).log_softmax(-1)[stream[i]].item() for i in range(1, len(stream)))
    assert m["nll"] == pytest.approx(nll, rel=1e-4)
    assert m["words"] == (3 + 1) + (3 + 1) and m["pieces"] == len(stream) - 1


@pytest.mark.parametrize("n,rows", [(0, 4), (1, 4), (7, 1), (7, 3), (9, 3), (10, 4)])
def test_lm_stream_rows_deal_contiguous_runs_in_step_order(n, rows):
    steps = lm.stream_rows(n, rows)
    assert sorted(i for s in steps for i in s) == list(range(n))
    for j, step in enumerate(steps):
        assert len(step) <= rows
        if j:  # each row continues its own run, and the rows still going are a prefix
            assert [i - 1 for i in step] == steps[j - 1][: len(step)]


@pytest.mark.parametrize("layers,cell", [(1, "lstm"), (2, "lstm"), (2, "gru")])
def test_lm_evaluate_carries_state_across_chunks(tok, layers, cell):
    """Scoring text cut into many chunks equals scoring each run of chunks as one sequence: the (h, c) state
    is carried from chunk to chunk, and a run starts blank only at its first piece."""
    p = tiny_predictor(tok, cell=cell, layers=layers, embed=24, hidden=24)
    examples = [
        {"text": t, "split": "test"} for t in ["the old town is by a river .", "", "x y z", "a small river"] * 5
    ]

    def score(chunk: int, rows: int) -> dict:
        recipe = build_recipe("lm", lm.Options, lm.DEFAULTS, overrides=[f"lm.eval_chunk_length={chunk}"])
        feats = lm.featurize(examples, tok, [], recipe)
        return lm.evaluate(p.model, feats, [], torch.device("cpu"), rows * max(f["length"] for f in feats)), feats

    whole, _ = score(100_000, 1)
    one_row, feats = score(7, 1)
    assert len(feats) > 10 and one_row["nll"] == pytest.approx(whole["nll"], rel=1e-5)
    assert (one_row["pieces"], one_row["words"], one_row["chars"]) == (whole["pieces"], whole["words"], whole["chars"])
    three_rows, _ = score(7, 3)
    runs = [[feats[step[r]] for step in lm.stream_rows(len(feats), 3) if r < len(step)] for r in range(3)]
    expect = 0.0
    for run in runs:  # each run as one sequence: consecutive chunks share one piece
        ids = run[0]["ids"] + [i for f in run[1:] for i in f["ids"][1:]]
        expect += lm.evaluate(
            p.model,
            [{"ids": ids, "length": len(ids), "words": 0, "lines": 0, "chars": 0}],
            [],
            torch.device("cpu"),
            100_000,
        )["nll"]
    assert three_rows["nll"] == pytest.approx(expect, rel=1e-5) and three_rows["nll"] != pytest.approx(
        whole["nll"], rel=1e-6
    )


def test_lm_forward_only_trains_and_scores_the_forward_stack_alone(tok):
    """lm.bidirectional=false: the loss is the forward NLL, the backward stack gets no gradient (it still exists,
    so the encoder transfers), and evaluation scores the forward LM exactly as the BiLM's forward half does."""
    over = ["encoder.num_layers=1", "encoder.embed_dim=16", "encoder.hidden_dim=24", "lm.chunk_length=16"]
    bi = build_recipe("lm", lm.Options, lm.DEFAULTS, overrides=over)
    fo = build_recipe("lm", lm.Options, lm.DEFAULTS, overrides=over + ["lm.bidirectional=false"])
    torch.manual_seed(0)
    m_bi = lm.build_model(bi, len(tok), [])
    m_fo = lm.build_model(fo, len(tok), [])
    missing, unexpected = m_fo.load_state_dict(m_bi.state_dict(), strict=False)
    assert missing == [] and unexpected == ["head.proj_bwd.weight", "head.proj_bwd.bias"]
    feats = lm.featurize([{"text": t} for t in ["the old town is by a river .", "x y z"]], tok, [], fo)
    batch = lm.collate(feats)
    m_bi.eval(), m_fo.eval()
    logits, loss = m_fo(batch)
    assert m_fo.encoder(batch["tokens"], batch["lengths"]).shape[-1] == 24  # (B, T, H): one stack
    V = logits.size(-1)
    expect = torch.nn.functional.cross_entropy(
        logits.reshape(-1, V), batch["tokens"][:, 1:].reshape(-1), ignore_index=0
    )
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    loss.backward()
    assert m_fo.encoder.bwd.weight_hh_l0.grad is None and m_fo.encoder.fwd.weight_hh_l0.grad is not None
    got, ref = (lm.evaluate(m, feats, [], torch.device("cpu"), 4096) for m in (m_fo, m_bi))
    assert "ppl_piece_bwd" not in got and "ppl_piece_bwd" in ref
    assert got["ppl_word"] == pytest.approx(ref["ppl_word"], rel=1e-5) and got["loss"] == pytest.approx(
        math.log(got["ppl_piece"])
    )


# -- sampling ----------------------------------------------------------------------------------------------
def test_decoding_top_k_keeps_k_best():
    logits = torch.tensor([[1.0, 4.0, 3.0, 2.0]])
    kept = top_k_filter(logits, 2)
    assert torch.isfinite(kept).tolist() == [[False, True, True, False]]
    assert torch.equal(top_k_filter(logits, 0), logits)


def test_decoding_top_p_keeps_smallest_set_reaching_p():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log()
    assert torch.isfinite(top_p_filter(logits, 0.8)).tolist() == [[True, True, False, False]]
    assert torch.isfinite(top_p_filter(logits, 0.81)).tolist() == [[True, True, True, False]]
    assert torch.isfinite(top_p_filter(logits, 0.1)).tolist() == [[True, False, False, False]]  # the best always stays
    assert torch.equal(top_p_filter(logits, 1.0), logits)


def test_decoding_temperature_sharpens_and_zero_is_greedy():
    logits = torch.tensor([[2.0, 1.0, 0.0]])
    cold = filter_logits(logits, temperature=0.5).softmax(-1)
    assert cold[0, 0] > logits.softmax(-1)[0, 0]
    assert torch.allclose(filter_logits(logits, temperature=2.0), logits / 2)
    g = make_generator(1)
    assert sample(logits.repeat(5, 1), temperature=0, generator=g).tolist() == [0] * 5


def test_decoding_same_seed_same_draws():
    logits = torch.zeros(3, 50)
    a = [sample(logits, 1.0, 10, 0.9, make_generator(7)).tolist() for _ in range(2)]
    assert a[0] == a[1]


# -- generation --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lm_stateful_step_equals_recomputing_prefix(tok, cell):
    p = tiny_predictor(tok, cell=cell)
    prefix = [EOS] + tok.encode_one("The town is known for its salt")
    stepped = p.next_logits(prefix)
    enc = p.model.encoder
    with torch.inference_mode():
        out, _ = enc.forward_stack(enc.embed(torch.tensor([prefix])))  # (1, T, H): the whole prefix again
        full = p.model.head.forward_logits(out[0, -1])
    assert torch.allclose(stepped, full, atol=1e-5)


def _never_ends(p):
    """The predictor's LM with EOS made impossible: every row then runs to max_tokens."""
    with torch.no_grad():
        p.model.head.bias[EOS] = -1e4
    return p


def _record_draws(monkeypatch) -> list[list[int]]:
    """Every sample() call's ids, in order (generation calls it once per prompt per step)."""
    from lstmtext import decoding

    draws, real = [], decoding.sample

    def spy(*args, **kwargs):
        ids = real(*args, **kwargs)
        draws.append(ids.tolist())
        return ids

    monkeypatch.setattr(decoding, "sample", spy)
    return draws


def _line(p, prompt: str, pieces: list[int]) -> str:
    """The output line for ``prompt`` continued by ``pieces``, decoded with the model's tokenizer."""
    ids = [EOS] + p.tok.encode_one(prompt)
    text = p.tok.decode(ids + pieces)[len(p.tok.decode(ids)) :]
    return prompt + text.replace("\n", " ").replace("\r", " ")


def test_lm_generate_writes_exactly_max_tokens_pieces(tok, monkeypatch):
    p = _never_ends(tiny_predictor(tok))
    draws = _record_draws(monkeypatch)
    lines = p.generate_text(["The town"], num_samples=3, max_tokens=7, temperature=1.0, seed=5)[0]
    assert len(draws) == 7 and all(len(d) == 3 for d in draws)  # 7 steps, one piece per sample each
    for j, line in enumerate(lines):
        pieces = [d[j] for d in draws]
        assert line == _line(p, "The town", pieces) and line != "The town"
    assert p.stats["pieces"] == 3 * 7


def test_lm_generate_greedy_is_the_argmax_chain_of_max_tokens_pieces(tok):
    p = _never_ends(tiny_predictor(tok))
    prefix = [EOS] + tok.encode_one("Anna")
    pieces = []
    for _ in range(9):  # the reference: recompute each next piece from the whole prefix, PAD/UNK/BOS banned
        logits = p.next_logits(prefix + pieces).clone()
        logits[[PAD, UNK, BOS]] = float("-inf")
        pieces.append(int(logits.argmax()))
    assert len(pieces) == 9 and EOS not in pieces
    assert p.generate_text(["Anna"], max_tokens=9, temperature=0) == [[_line(p, "Anna", pieces)]]


def test_lm_generate_ends_a_row_at_eos(tok):
    p = tiny_predictor(tok)
    with torch.no_grad():
        p.model.head.bias[EOS] = 1e4  # the first piece is EOS: nothing is added to the prompt
    assert p.generate_text(["The town", "Anna"], num_samples=2, max_tokens=5, seed=1) == [
        ["The town", "The town"],
        ["Anna", "Anna"],
    ]


def test_lm_generate_same_seed_same_text_and_batch_independent(tok):
    p = _never_ends(tiny_predictor(tok))
    kw = dict(max_tokens=20, temperature=1.0, top_p=0.9, seed=3)
    a = p.generate_text(["The town", "Anna"], num_samples=2, **kw)
    b = p.generate_text(["The town", "Anna"], num_samples=2, **kw)
    alone = p.generate_text(["Anna"], num_samples=2, **kw)
    assert a == b and a[1] == alone[0]
    # an untrained model's next piece is spread over hundreds: 20 draws cannot repeat by chance
    assert a[0][0] != a[0][1] and a[1][0] != a[1][1]  # the samples of one prompt differ
    other = p.generate_text(["The town", "Anna"], num_samples=2, **{**kw, "seed": 4})
    assert all(x != y for xs, ys in zip(a, other) for x, y in zip(xs, ys))  # another seed, other text
    greedy = p.generate_text(["The town"], num_samples=2, max_tokens=10, temperature=0)
    assert greedy[0][0] == greedy[0][1] != "The town"


def _stop_in(cont: str) -> str:
    """Two printable ASCII characters from a continuation, not at its start, to use as a stop string."""
    pairs = (cont[i : i + 2] for i in range(len(cont) - 1))
    return next(s for s in pairs if s.isascii() and s.isprintable() and s.strip() and cont.index(s) > 0)


@pytest.mark.parametrize("kw", [dict(temperature=0), dict(temperature=1.0, seed=9)])
def test_lm_generate_stop_string_is_not_written(tok, kw):
    p = _never_ends(tiny_predictor(tok))
    full = p.generate_text(["The"], max_tokens=30, **kw)[0][0]
    cont = full[len("The") :]
    stop = _stop_in(cont)
    cut = p.generate_text(["The"], max_tokens=30, stop=stop, **kw)[0][0]
    # the same pieces up to the stop string; the line ends just before its first occurrence
    assert cut == "The" + cont[: cont.index(stop)] and stop not in cut


def test_lm_generate_unseen_characters_use_byte_fallback(tok):
    p = tiny_predictor(tok)
    line = p.generate_text(["Ωμέγα ☃ 𝔘"], max_tokens=5, seed=1)[0][0]
    assert line.startswith("Ωμέγα ☃ 𝔘") and "\n" not in line


def test_cli_lm_write_rows_keeps_lines_in_order(capsys):
    from lstmtext.cli.generate import _write_rows

    events = [
        (0, "a", False),
        (1, "b", False),
        (2, "c", False),
        (1, "B", True),
        (0, "A", False),
        (0, "!", True),
        (2, "C", True),
    ]
    finished = [False, False, False, True]  # row 3 is a blank input line
    _write_rows(iter(events), 4, finished)
    assert capsys.readouterr().out == "aA!\nbB\ncC\n\n"


def test_lm_read_formats_and_bad_files(tmp_path):
    opts = lm.Options()
    j = tmp_path / "t.jsonl"
    j.write_text('{"text": "one two"}\n{"text": "three"}\n', encoding="utf-8")
    assert [e["text"] for e in lm.read(str(j), opts)] == ["one two", "three"]
    empty = tmp_path / "e.txt"
    empty.write_text("\n \n", encoding="utf-8")
    with pytest.raises(UsageError, match="no text found"):
        lm.read(str(empty), opts)
    table = tmp_path / "t.tsv"
    table.write_text("text\tlabel\nx\t1\n", encoding="utf-8")
    with pytest.raises(UsageError, match="plain text"):
        lm.read(str(table), opts)
    bad = tmp_path / "b.jsonl"
    bad.write_text('{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(UsageError, match="line 1"):
        lm.read(str(bad), opts)


# -- the CLI end to end ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_home(tmp_path_factory):
    """A tiny LM trained through the CLI on the embedded sample, written to the default place."""
    home = tmp_path_factory.mktemp("lm") / "home"
    proc = run_cli("train", "lm", "--epochs", "2", "-q", *TINY, LSTMTEXT_HOME=str(home))
    assert proc.returncode == 0, proc.stderr
    return home


@pytest.fixture(scope="module")
def lm_ckpt(lm_home):
    return lm_home / "models" / "lm.ckpt"


def test_cli_lm_train_evaluate_generate_predict(lm_ckpt, lm_home):
    assert lm_ckpt.exists()
    ev = run_cli("evaluate", lm_ckpt, REPO / "data" / "lm" / "dev.txt", "--format", "json")
    assert ev.returncode == 0, ev.stderr
    m = json.loads(ev.stdout)
    assert m["ppl_word"] > m["ppl_piece"] > 1 and 0 < m["bpc"] < 8
    table = run_cli("evaluate", lm_ckpt, REPO / "data" / "lm" / "dev.txt")
    assert table.returncode == 0 and "perplexity per word" in table.stderr
    # bf16 autocast: the carried state goes through bf16 steps; perplexity stays close to fp32's
    half = run_cli("evaluate", lm_ckpt, REPO / "data" / "lm" / "dev.txt", "--format", "json", "--precision", "bf16")
    assert half.returncode == 0, half.stderr
    assert json.loads(half.stdout)["ppl_word"] == pytest.approx(m["ppl_word"], rel=0.05)
    gen = run_cli(
        "generate", "-m", lm_ckpt, "--prompt", "The", "--max-tokens", "12", "--seed", "1", "--precision", "bf16"
    )
    assert gen.returncode == 0 and gen.stdout.startswith("The") and gen.stdout.count("\n") == 1, gen.stderr
    assert gen.stdout != "The\n"  # something was generated
    # int8 is for one-pass models; generation steps LSTM cells, so it is refused in one line (by the
    # --precision choice where the lm module names its PRECISIONS, else when the model loads)
    gen = run_cli("generate", "-m", lm_ckpt, "--prompt", "The", "--precision", "int8")
    assert_usage_error(gen, "--precision", "int8")

    # no -m: the model `train lm` wrote to its default place
    gen = run_cli("generate", "--prompt", "The", "--max-tokens", "12", "--seed", "1", LSTMTEXT_HOME=str(lm_home))
    assert gen.returncode == 0, gen.stderr
    # the CLI writes what the library generates with the same settings (its defaults: GEN_DEFAULTS)
    model = lstmtext.load(lm_ckpt)
    assert gen.stdout == model.generate_text(["The"], max_tokens=12, seed=1)[0][0] + "\n" != "The\n"
    again = run_cli("generate", "--prompt", "The", "--max-tokens", "12", "--seed", "1", LSTMTEXT_HOME=str(lm_home))
    assert again.stdout == gen.stdout
    cont = gen.stdout[len("The") : -1]
    stop = _stop_in(cont)
    cut = run_cli(
        "generate", "--prompt", "The", "--max-tokens", "12", "--seed", "1", "--stop", stop, LSTMTEXT_HOME=str(lm_home)
    )
    assert cut.returncode == 0 and cut.stdout == "The" + cont[: cont.index(stop)] + "\n", (stop, cut.stdout)

    piped = run_cli(
        "generate",
        "-m",
        lm_ckpt,
        "--num-samples",
        "2",
        "--max-tokens",
        "8",
        "--seed",
        "2",
        "--top-k",
        "50",
        "--top-p",
        "0.9",
        "--temperature",
        "0.7",
        input="The war\n\nIn 1990 ,\n",
    )
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.split("\n")[:-1]
    sampled = model.generate_text(
        ["The war", "In 1990 ,"], num_samples=2, max_tokens=8, seed=2, top_k=50, top_p=0.9, temperature=0.7
    )
    assert lines == [*sampled[0], "", "", *sampled[1]]  # two samples per line; a blank line gives two blank ones
    assert sampled[0][0] != "The war" and sampled[1][0] != "In 1990 ,"

    pred = run_cli("predict", lm_ckpt, "-", "--format", "jsonl", input="The town\n\nAnna\n")
    assert pred.returncode == 0, pred.stderr
    rows = [json.loads(l) for l in pred.stdout.splitlines()]
    expected = model.predict(["The town", "", "Anna"])
    assert rows == [
        {"prompt": "The town", **expected[0]},
        {"prompt": "", "text": None},
        {"prompt": "Anna", **expected[2]},
    ]
    assert expected[0]["text"] == "The town" + expected[0]["continuation"] and expected[0]["continuation"]
    text = run_cli("predict", lm_ckpt, input="The town\n")
    assert text.returncode == 0 and text.stdout == expected[0]["text"] + "\n"


def test_cli_evaluate_set_cache_and_refusals(lm_ckpt):
    dev = REPO / "data" / "lm" / "dev.txt"
    plain = run_cli("evaluate", lm_ckpt, dev, "--format", "json")
    cached = run_cli(
        "evaluate", lm_ckpt, dev, "--format", "json", "--set", "lm.cache_size=500", "--set", "lm.cache_lambda=0.2"
    )
    assert plain.returncode == 0 and cached.returncode == 0, cached.stderr
    a, b = json.loads(plain.stdout), json.loads(cached.stdout)
    assert b["pieces"] == a["pieces"] and b["ppl_word"] != pytest.approx(a["ppl_word"], rel=1e-4)
    assert "cache" not in a and b["cache"]["size"] == 500 and b["cache"]["lambda"] == 0.2  # the figure says so
    table = run_cli("evaluate", lm_ckpt, dev, "--set", "lm.cache_size=500")
    assert table.returncode == 0 and "continuous cache" in table.stderr and "500 states" in table.stderr
    zero = run_cli(
        "evaluate", lm_ckpt, dev, "--format", "json", "--set", "lm.cache_size=500", "--set", "lm.cache_lambda=0"
    )
    assert json.loads(zero.stdout)["ppl_word"] == pytest.approx(a["ppl_word"], rel=1e-6)
    fixed = run_cli("evaluate", lm_ckpt, dev, "--set", "encoder.hidden_dim=8")
    assert_usage_error(fixed, "--set encoder.hidden_dim", "lm.cache_size", "fixed by its weights")
    out_of_range = run_cli("evaluate", lm_ckpt, dev, "--set", "lm.cache_lambda=2")
    assert_usage_error(out_of_range, "lm.cache_lambda")
    malformed = run_cli("evaluate", lm_ckpt, dev, "--set", "cache_size")
    assert_usage_error(malformed, "SECTION.KEY=VALUE")


def test_cli_lm_generate_unseen_characters(lm_ckpt):
    proc = run_cli("generate", "-m", lm_ckpt, "--prompt", "Ωμέγα ☃ 𝔘", "--max-tokens", "5", "--seed", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Ωμέγα ☃ 𝔘")


# -- transfer ----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sentiment_from_lm(lm_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer") / "s.ckpt"
    proc = run_cli(
        "train",
        "sentiment",
        "--init-from",
        lm_ckpt,
        "-o",
        out,
        "--epochs",
        "1",
        "-q",
        *TINY,
        LSTMTEXT_HOME=str(out.parent / "home"),
    )
    assert proc.returncode == 0, proc.stderr
    return out, proc


def test_train_sentiment_init_from_lm_copies_encoder(lm_ckpt, sentiment_from_lm):
    from lstmtext.checkpoint import read_meta

    out, proc = sentiment_from_lm
    lm_meta, s_meta = read_meta(lm_ckpt), read_meta(out)
    assert s_meta["tokenizer"] == lm_meta["tokenizer"]
    assert s_meta["provenance"]["init_from"] == str(lm_ckpt)
    assert proc.returncode == 0


def test_train_sentiment_init_from_lm_refuses_misfit_encoder(lm_ckpt, tmp_path):
    proc = run_cli(
        "train",
        "sentiment",
        "--init-from",
        lm_ckpt,
        "-o",
        tmp_path / "s.ckpt",
        "--epochs",
        "1",
        "-q",
        *TINY,
        "--set",
        "encoder.hidden_dim=48",
    )
    assert_usage_error(proc, "--init-from", "encoder")


def test_train_init_from_takes_the_encoder_shape_from_the_checkpoint(lm_ckpt, tmp_path):
    from lstmtext.checkpoint import read_meta
    from lstmtext.config import ENCODER_SHAPE

    # No shape given: sentiment's own default (256 wide) would not fit the 32-wide LM; its weights decide.
    out = tmp_path / "s.ckpt"
    proc = run_cli(
        "train",
        "sentiment",
        "--init-from",
        lm_ckpt,
        "-o",
        out,
        "--epochs",
        "1",
        "-q",
        "--set",
        "train.batch_tokens=2000",
        "--set",
        "encoder.dropout=0.1",
    )
    assert proc.returncode == 0, proc.stderr
    enc, lm_enc = read_meta(out)["recipe"]["encoder"], read_meta(lm_ckpt)["recipe"]["encoder"]
    assert {k: enc[k] for k in ENCODER_SHAPE} == {k: lm_enc[k] for k in ENCODER_SHAPE}
    assert enc["hidden_dim"] == 32 and enc["dropout"] == 0.1  # the dropouts stay this run's


def test_init_from_copies_the_lm_encoder_weights(lm_ckpt):
    from lstmtext.checkpoint import load
    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import sentiment
    from lstmtext.transfer import copy_encoder

    meta, state = load(lm_ckpt)
    recipe = resolve_recipe("sentiment", None, TINY[1::2])
    model = sentiment.build_model(recipe, state["encoder.embed.weight"].shape[0], ["neg", "pos"])
    copy_encoder(model, state, lm_ckpt, meta, task="sentiment")
    for k, v in model.state_dict().items():
        if k.startswith("encoder."):
            assert torch.equal(v, state[k]), k


def test_init_from_an_lm_into_an_lm_run_takes_the_head_too(lm_ckpt):
    from lstmtext.checkpoint import load
    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import lm, sentiment
    from lstmtext.transfer import copy_encoder

    meta, state = load(lm_ckpt)
    recipe = resolve_recipe("lm", None, [], stored=meta["recipe"])
    model = lm.build_model(recipe, state["encoder.embed.weight"].shape[0], [])
    copy_encoder(model, state, lm_ckpt, meta, task="lm")  # adapting the LM to new text goes on from all of it
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    vocab = state["encoder.embed.weight"].shape[0]
    other = sentiment.build_model(resolve_recipe("sentiment", None, TINY[1::2]), vocab, ["neg", "pos"])
    before = {k: v.clone() for k, v in other.state_dict().items() if k.startswith("head.")}
    copy_encoder(other, state, lm_ckpt, meta, task="sentiment")  # another task: the encoder only
    assert before and all(torch.equal(other.state_dict()[k], v) for k, v in before.items())
    # the same task with another head shape (here the output bias of a smaller vocabulary): the encoder only
    shrunk = {**state, "head.bias": state["head.bias"][:-1]}
    fresh = lm.build_model(recipe, vocab, [])
    bias = fresh.state_dict()["head.bias"].clone()
    copy_encoder(fresh, shrunk, lm_ckpt, meta, task="lm")
    assert torch.equal(fresh.state_dict()["head.bias"], bias)


def test_init_from_an_lm_gives_a_ner_lm_objective_the_lm_head(lm_ckpt, tmp_path):
    from lstmtext.checkpoint import load
    from lstmtext.tasks import ner

    meta, state = load(lm_ckpt)
    out = tmp_path / "ner.ckpt"
    proc = run_cli(
        "train",
        "ner",
        "--init-from",
        lm_ckpt,
        "-o",
        out,
        "--epochs",
        "1",
        *TINY,
        "--set",
        "ner.lm_weight=0.5",
        "--set",
        "train.lr=1e-9",
        LSTMTEXT_HOME=str(tmp_path / "home"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "and the LM head" in proc.stderr
    _, tagged = load(out)
    lm_keys = [k for k in tagged if k.startswith("head.lm.")]
    assert lm_keys and all(torch.allclose(tagged[k], state["head." + k[len("head.lm.") :]], atol=1e-6) for k in lm_keys)
    line = run_cli("tag", "-m", out, "--format", "conll", input="Paris is nice .\n")  # tagging never runs the LM
    assert line.returncode == 0, line.stderr
    assert [l.split("\t")[0] for l in line.stdout.splitlines() if l] == ["Paris", "is", "nice", "."]
    # without the objective the NER head has no LM, and an LM's head is not taken
    model = ner.build_model(
        ner_recipe := __import__("lstmtext.config", fromlist=["x"]).resolve_recipe("ner", None, TINY[1::2]),
        state["encoder.embed.weight"].shape[0],
        ["O", "B-LOC", "I-LOC"],
    )
    assert ner_recipe.options.lm_weight == 0 and not any(k.startswith("head.lm.") for k in model.state_dict())


def test_init_from_a_forward_only_lm_leaves_the_backward_stack_fresh(lm_ckpt):
    from lstmtext.checkpoint import load
    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import sentiment
    from lstmtext.transfer import copy_encoder

    meta, state = load(lm_ckpt)
    meta = {**meta, "recipe": {**meta["recipe"], "lm": {**meta["recipe"]["lm"], "bidirectional": False}}}
    recipe = resolve_recipe("sentiment", None, TINY[1::2])
    model = sentiment.build_model(recipe, state["encoder.embed.weight"].shape[0], ["neg", "pos"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy_encoder(model, state, lm_ckpt, meta, task="sentiment")
    after = model.state_dict()
    assert torch.equal(after["encoder.fwd.weight_hh_l0"], state["encoder.fwd.weight_hh_l0"])
    assert torch.equal(after["encoder.embed.weight"], state["encoder.embed.weight"])
    assert torch.equal(after["encoder.bwd.weight_hh_l0"], before["encoder.bwd.weight_hh_l0"])
    assert not torch.equal(after["encoder.bwd.weight_hh_l0"], state["encoder.bwd.weight_hh_l0"])


# -- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args,fragment",
    [
        (["--prompt", ""], "empty prompt"),
        (["--prompt", "   "], "empty prompt"),
        (["--prompt", "The", "--max-tokens", "0"], "--max-tokens"),
        (["--prompt", "The", "--max-tokens", "-3"], "--max-tokens"),
        (["--prompt", "The", "--top-p", "0"], "--top-p"),
        (["--prompt", "The", "--top-p", "1.5"], "--top-p"),
        (["--prompt", "The", "--top-p", "-0.1"], "--top-p"),
        (["--prompt", "The", "--temperature", "-1"], "--temperature"),
        (["--prompt", "The", "--top-k", "-1"], "--top-k"),
        (["--prompt", "The", "--num-samples", "0"], "--num-samples"),
        (["--prompt", "The", "--stop", ""], "--stop"),
    ],
)
def test_cli_lm_generate_bad_input(lm_ckpt, args, fragment):
    assert_usage_error(run_cli("generate", "-m", lm_ckpt, *args), fragment)


def test_cli_lm_generate_refuses_a_model_that_is_not_an_lm(sentiment_from_lm):
    out, _ = sentiment_from_lm
    assert_usage_error(run_cli("generate", "-m", out, "--prompt", "The"), "'sentiment' model", "generate")


def test_cli_lm_generate_without_a_trained_model():
    assert_usage_error(run_cli("generate", "--prompt", "The"), "train lm")


def test_cli_lm_generate_empty_stdin(lm_ckpt):
    assert_usage_error(run_cli("generate", "-m", lm_ckpt, input=""), "empty")
