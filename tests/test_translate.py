"""Translation: the parallel readers, the attention decoder, batched beam search, the CLI end to end, bad input."""

from __future__ import annotations

import itertools
import json
import zlib

import pytest
import torch
from conftest import REPO, TINY, assert_usage_error, run_cli

from lstmtext.config import build_recipe
from lstmtext.errors import UsageError
from lstmtext.tasks import translate as T

SAMPLE_TRAIN = REPO / "data" / "translate" / "train.tsv"
SAMPLE_DEV = REPO / "data" / "translate" / "dev.tsv"
SOURCES = [
    "Ein Mann fährt Fahrrad.",
    "Zwei kleine Hunde spielen im Schnee.",
    "Eine Frau singt.",
    "Im Park hält eine alte Frau in einem roten Mantel einen großen Ball.",
]


def _tiny_model(*overrides: str):
    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import translate as T
    from lstmtext.tokenizer import Tokenizer

    torch.manual_seed(0)
    recipe = resolve_recipe(
        "translate",
        None,
        [
            "encoder.embed_dim=16",
            "encoder.hidden_dim=16",
            "translate.hidden_dim=24",
            "tokenizer.vocab_size=400",
            *overrides,
        ],
    )
    examples = T.read(str(SAMPLE_TRAIN), recipe.options)[:400]
    tok = Tokenizer.train(T.tokenizer_texts(examples), 400, "bpe")
    model = T.build_model(recipe, len(tok), []).eval()
    return recipe, tok, model


@pytest.fixture(scope="module")
def tiny():
    return _tiny_model()


def _encode(model, tok, sentences):
    from lstmtext.tasks.common import pad

    ids = tok.encode(sentences)
    lengths = torch.tensor([len(s) for s in ids])
    with torch.inference_mode():
        states = model.encoder(pad(ids), lengths)
    return states, lengths, model.decoding.max_len([len(s) for s in ids])


# -- readers -----------------------------------------------------------------------------------------------
def test_translate_read_prefix_either_file_and_folder(tmp_path):
    from lstmtext.tasks.translate import Options, read

    (tmp_path / "train.de").write_text("Ein Hund.\nZwei Katzen.\n", encoding="utf-8")
    (tmp_path / "train.en").write_text("A dog.\nTwo cats.\n", encoding="utf-8")
    want = [("Ein Hund.", "A dog."), ("Zwei Katzen.", "Two cats.")]
    for source in (tmp_path / "train", tmp_path / "train.de", tmp_path / "train.en", tmp_path):
        got = read(str(source), Options(), "train")
        assert [(e["source"], e["target"]) for e in got] == want, source
    flipped = read(str(tmp_path / "train"), Options(source_lang="en", target_lang="de"))
    assert flipped[0]["source"] == "A dog." and flipped[0]["target"] == "Ein Hund."


def test_translate_read_tsv_and_jsonl(tmp_path):
    from lstmtext.tasks.translate import Options, read

    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("source\ttarget\nEin Hund.\tA dog.\n\t\nZwei Katzen.\tTwo cats.\n", encoding="utf-8")
    assert [(e["source"], e["target"]) for e in read(str(tsv), Options())] == [
        ("Ein Hund.", "A dog."),
        ("Zwei Katzen.", "Two cats."),
    ]
    by_lang = tmp_path / "pairs_lang.tsv"
    by_lang.write_text("en\tde\nA dog.\tEin Hund.\n", encoding="utf-8")  # columns named by language, any order
    assert read(str(by_lang), Options())[0]["source"] == "Ein Hund."
    jl = tmp_path / "pairs.jsonl"
    jl.write_text(
        json.dumps({"source": "Ein Hund.", "target": "A dog."})
        + "\n"
        + json.dumps({"source": "Zwei Katzen.", "target": "Two cats."})
        + "\n",
        encoding="utf-8",
    )
    assert [e["target"] for e in read(str(jl), Options())] == ["A dog.", "Two cats."]
    nested = tmp_path / "nested.jsonl"
    nested.write_text(json.dumps({"translation": {"de": "Ein Hund.", "en": "A dog."}}) + "\n", encoding="utf-8")
    assert read(str(nested), Options())[0]["target"] == "A dog."


def test_translate_read_hf_translation_column_or_two_text_columns(monkeypatch):
    import datasets

    from lstmtext.tasks import translate as T

    nested = datasets.Dataset.from_dict({"translation": [{"de": "Ein Hund.", "en": "A dog."}]})
    flat = datasets.Dataset.from_dict({"en": ["A dog."], "de": ["Ein Hund."]})  # as hf:bentrevett/multi30k
    for ds in (nested, flat):
        monkeypatch.setattr(T, "load_hf", lambda source, split, ds=ds: ds)
        got = T.read("hf:some/multi30k", T.Options(), "train")
        assert [(e["source"], e["target"]) for e in got] == [("Ein Hund.", "A dog.")]


def test_translate_read_line_count_mismatch_names_the_first_line_without_a_partner(tmp_path):
    (tmp_path / "x.de").write_text("Ein Hund.\nZwei Katzen.\nEine Frau.\n", encoding="utf-8")
    (tmp_path / "x.en").write_text("A dog.\nTwo cats.\n", encoding="utf-8")
    proc = run_cli("train", "translate", "--train", tmp_path / "x", "-q", *TINY)
    assert_usage_error(proc, f"{tmp_path / 'x.de'} line 3: no such line in {tmp_path / 'x.en'}, which has 2 lines")
    (tmp_path / "x.en").write_text("A dog.\nTwo cats.\nA woman.\nA man.\n", encoding="utf-8")
    proc = run_cli("train", "translate", "--train", tmp_path / "x", "-q", *TINY)
    assert_usage_error(proc, f"{tmp_path / 'x.en'} line 4: no such line in {tmp_path / 'x.de'}, which has 3 lines")


def test_translate_read_missing_target_file_is_a_usage_error(tmp_path):
    (tmp_path / "x.de").write_text("Ein Hund.\n", encoding="utf-8")
    (tmp_path / "x.fr").write_text("Un chien.\n", encoding="utf-8")
    proc = run_cli("train", "translate", "--train", tmp_path / "x", "-q", *TINY)
    assert_usage_error(proc, "x.en", "file not found", "--source-lang")


# -- the decoder -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "variant",
    [
        [],
        ["translate.attention=bahdanau"],
        ["translate.input_feeding=true"],
        ["translate.attention=dot", "translate.hidden_dim=32"],
    ],
)
def test_seq2seq_attention_masks_padding(variant):
    from lstmtext.tasks import translate as T

    recipe, tok, model = _tiny_model(*variant)
    pairs = [
        {"source": "Eine Frau singt.", "target": "A woman is singing."},
        {"source": SOURCES[3], "target": "An old woman in a red coat is holding a big ball in the park."},
    ]
    feats = T.featurize(pairs, tok, [], recipe)
    with torch.inference_mode():
        alone, _ = model(T.collate(feats[:1]))
        batched, _ = model(T.collate(feats))  # the short pair is padded on both sides here
    U = alone.size(1)
    assert batched.size(1) > U and feats[1]["length"] > feats[0]["length"]
    torch.testing.assert_close(batched[0, :U], alone[0], rtol=1e-4, atol=1e-5)


def test_seq2seq_step_matches_teacher_forced_forward(tiny):
    """Decoding one token at a time, carrying (h, c), gives the same scores as the fused training pass."""
    from lstmtext.tasks import translate as T

    recipe, tok, model = tiny
    feats = T.featurize([{"source": SOURCES[1], "target": "Two little dogs are playing in the snow."}], tok, [], recipe)
    batch = T.collate(feats)
    with torch.inference_mode():
        logits, _ = model(batch)
        states = model.encoder(batch["tokens"], batch["lengths"])
        st = model.head.start(states, batch["lengths"])
        for t in range(batch["tgt_in"].size(1)):
            logp, st = model.head.step(batch["tgt_in"][:, t], st)
            torch.testing.assert_close(logp, logits[:, t].log_softmax(-1), rtol=1e-4, atol=1e-5)


# -- beam search -------------------------------------------------------------------------------------------
def test_beam_search_with_beam_1_equals_greedy(tiny):
    from lstmtext.decoding import beam_search, greedy_search

    _, tok, model = tiny
    states, lengths, max_len = _encode(model, tok, SOURCES)
    greedy = greedy_search(model.head, states, lengths, max_len, alpha=1.0)
    beam1 = beam_search(model.head, states, lengths, max_len, beam=1, alpha=1.0)
    assert [g[0][0] for g in greedy] == [b[0][0] for b in beam1]
    for g, b in zip(greedy, beam1):
        assert g[0][1] == pytest.approx(b[0][1], rel=1e-4)


def test_beam_search_batched_equals_per_sentence(tiny):
    from lstmtext.decoding import beam_search

    _, tok, model = tiny
    states, lengths, max_len = _encode(model, tok, SOURCES)
    batched = beam_search(model.head, states, lengths, max_len, beam=4, n_best=2)
    for i, sentence in enumerate(SOURCES):
        s, l, m = _encode(model, tok, [sentence])
        alone = beam_search(model.head, s, l, m, beam=4, n_best=2)[0]
        assert [h[0] for h in alone] == [h[0] for h in batched[i]], sentence
        assert [h[1] for h in alone] == pytest.approx([h[1] for h in batched[i]], rel=1e-4)


def test_beam_search_n_best_sorted_distinct_and_bounded(tiny):
    from lstmtext.decoding import beam_search

    _, tok, model = tiny
    states, lengths, max_len = _encode(model, tok, SOURCES)
    for hyps, limit in zip(beam_search(model.head, states, lengths, max_len, beam=5, n_best=3), max_len):
        scores = [s for _, s in hyps]
        assert len(hyps) == 3 and scores == sorted(scores, reverse=True)
        assert len({tuple(ids) for ids, _ in hyps}) == 3
        assert all(len(ids) <= limit for ids, _ in hyps)


class TableDecoder:
    """A decoder whose next-piece log-probabilities are a fixed random function of (sentence, prefix), over a
    vocabulary of the four special ids and two pieces: few enough sequences to enumerate them all."""

    V = 6

    def logp(self, sentence: int, prefix: tuple) -> torch.Tensor:
        g = torch.Generator().manual_seed(zlib.crc32(repr((sentence, prefix)).encode()))
        return (2 * torch.randn(self.V, generator=g)).log_softmax(-1)

    def start(self, states, lengths, K):
        B = states.size(0)
        return {"K": K, "sentences": list(range(B)), "rows": [(b, ()) for b in range(B) for _ in range(K)]}

    def step(self, tokens, st):
        rows = []
        for r, ((b, prefix), token) in enumerate(zip(st["rows"], tokens.tolist())):
            assert b == st["sentences"][r // st["K"]]  # a sentence's rows stay together, in the sentence's place
            rows.append((b, (*prefix, token)))
        return torch.stack([self.logp(b, p) for b, p in rows]), {**st, "rows": rows}

    def reorder(self, st, rows, sentences):
        kept = st["sentences"] if sentences is None else [st["sentences"][i] for i in sentences.tolist()]
        return {**st, "sentences": kept, "rows": [st["rows"][i] for i in rows.tolist()]}


def brute_force(dec: TableDecoder, sentence: int, limit: int, alpha: float) -> list[tuple[list[int], float]]:
    """Every output of at most ``limit`` pieces (any piece but PAD and BOS, then EOS), scored as the GNMT
    length penalty says: the sum of log-probabilities / ((5 + pieces + 1) / 6) ** alpha; best first."""
    from lstmtext.tokenizer import BOS, EOS, UNK

    hyps = []
    for n in range(limit + 1):
        for seq in itertools.product([UNK, 4, 5], repeat=n):
            fed, total = (BOS,), 0.0
            for token in (*seq, EOS):
                total += float(dec.logp(sentence, fed)[token])
                fed = (*fed, token)
            hyps.append((list(seq), total / ((5 + n + 1) / 6) ** alpha))
    return sorted(hyps, key=lambda h: -h[1])


@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
@pytest.mark.parametrize("chunk", [64, 2, 4])  # candidates without chunks (6 pieces), in 3 chunks, padded ones
def test_beam_search_wide_enough_finds_exactly_the_brute_force_ranking(alpha, chunk, monkeypatch):
    from lstmtext import decoding
    from lstmtext.decoding import beam_search

    monkeypatch.setattr(decoding, "CHUNK", chunk)
    dec, limits = TableDecoder(), [3, 2]  # 1 + 3 + 9 + 27 = 40 outputs for the first sentence, 13 for the second
    states, lengths = torch.zeros(2, 1, 1), torch.tensor([1, 1])
    every = beam_search(dec, states, lengths, limits, beam=40, n_best=40, alpha=alpha)
    top = beam_search(dec, states, lengths, limits, beam=40, n_best=3, alpha=alpha)
    for b, limit in enumerate(limits):
        want = brute_force(dec, b, limit, alpha)
        assert len(want) == (40, 13)[b]
        assert min(x[1] - y[1] for x, y in zip(want, want[1:])) > 1e-4  # no near-ties to reorder by rounding
        assert [ids for ids, _ in every[b]] == [ids for ids, _ in want]
        assert [s for _, s in every[b]] == pytest.approx([s for _, s in want], rel=1e-5)
        assert [ids for ids, _ in top[b]] == [ids for ids, _ in want[:3]]


@pytest.mark.parametrize("V, chunk", [(64, 8), (70, 8), (7, 1), (9, 64), (50, 3)])
def test_top_candidates_equal_a_topk_over_every_extension(V, chunk):
    from lstmtext.decoding import top_candidates

    g = torch.Generator().manual_seed(V * 100 + chunk)
    Ba, K, n = 6, 3, 6
    logp = torch.randn(Ba * K, V, generator=g).log_softmax(-1)
    logp[logp < -4.5] = float("-inf")  # banned pieces
    logp[2 * K : 3 * K] = float("-inf")  # a sentence at its limit: only EOS stays
    logp[2 * K : 3 * K, 2] = torch.randn(K, generator=g)
    scores = torch.randn(Ba, K, generator=g)
    scores[0, 1:] = float("-inf")  # the first step: only beam 0 is live, so fewer than n may be finite
    sums = (scores.unsqueeze(-1) + logp.view(Ba, K, V)).view(Ba, K * V)
    want_scores, want = sums.topk(n, dim=1)
    got_scores, beam, piece = top_candidates(scores, logp, n, chunk=chunk)
    assert torch.equal(got_scores, want_scores)  # the same sums, bit for bit
    finite = torch.isfinite(want_scores)
    assert torch.equal((beam * V + piece)[finite], want[finite])  # and the same places (no ties among them)
    assert bool((piece < V).all()) and bool((beam < K).all())  # -inf places still name a real piece and beam


@pytest.mark.parametrize(
    "override, message",
    [
        ("translate.max_length_ratio=nan", "translate.max_length_ratio: expected a finite number > 0, got nan"),
        ("translate.max_length_ratio=0", "translate.max_length_ratio: expected a finite number > 0, got 0.0"),
        ("translate.length_penalty=inf", "translate.length_penalty: expected a finite number ≥ 0, got inf"),
        ("translate.length_penalty=-1", "translate.length_penalty: expected a finite number ≥ 0, got -1.0"),
        ("translate.max_length_extra=-2", "translate.max_length_extra: expected a number ≥ 0, got -2"),
    ],
)
def test_decoding_settings_out_of_range_are_refused(override, message):
    """What evaluate --set (and train --set) may pass to beam search: a bad value is one line, not a traceback."""
    with pytest.raises(UsageError) as e:
        build_recipe("translate", T.Options, T.DEFAULTS, overrides=[override])
    assert str(e.value) == message


def test_translate_evaluate_selects_with_select_beam_and_reports_with_beam(tiny):
    from lstmtext.tasks import translate as T

    recipe, tok, model = tiny
    examples = T.read(str(SAMPLE_DEV), recipe.options)[:8]
    feats = T.featurize(examples, tok, [], recipe)
    during = T.evaluate(model, feats, [], torch.device("cpu"), 4096, tok, selection=True)
    after = T.evaluate(model, feats, [], torch.device("cpu"), 4096, tok)
    assert (during["beam"], after["beam"]) == (recipe.options.select_beam, recipe.options.beam) == (1, 5)
    assert during["loss"] == pytest.approx(after["loss"])  # the same model, only the decoder's beam differs


def test_beam_max_lengths_are_relative_to_the_source_and_capped():
    from lstmtext.decoding import max_lengths

    assert max_lengths([0, 10, 10_000], 1.5, 10, 256) == [10, 25, 256]


# -- the CLI end to end ------------------------------------------------------------------------------------
def test_translate_train_evaluate_translate_predict_end_to_end(tmp_path):
    # No -o: the model goes to the default place, so translate and predict then need no model path. Four
    # epochs: after three, one seed in four still translates every sentence to nothing.
    proc = run_cli(
        "train",
        "translate",
        "--epochs",
        "4",
        "-q",
        *TINY,
        "--set",
        "translate.hidden_dim=64",
        "--set",
        "train.batch_tokens=800",
    )
    assert proc.returncode == 0, proc.stderr
    ckpt = tmp_path / "home" / "models" / "translate.ckpt"
    assert ckpt.exists()

    ev = run_cli("evaluate", ckpt, SAMPLE_DEV, "--format", "json")
    assert ev.returncode == 0, ev.stderr
    m = json.loads(ev.stdout)
    assert m["examples"] == 200 and m["beam"] == 5
    # the score is sacreBLEU's on what `translate` writes for the same sources
    import sacrebleu

    from lstmtext.tasks import translate as T

    pairs = T.read(str(SAMPLE_DEV), T.Options())
    out = run_cli("translate", "-m", ckpt, input="".join(p["source"] + "\n" for p in pairs))
    assert out.returncode == 0, out.stderr
    hyps, refs = out.stdout.split("\n")[:-1], [p["target"] for p in pairs]
    assert len(hyps) == 200
    assert m["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score, abs=1e-9)
    assert m["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score, abs=1e-9) and m["chrf"] > 0
    assert m["signature"].startswith("nrefs:1|case:mixed") and "bleu_lc" in m
    # evaluate --set changes a decoding setting of the trained model: greedy scores what translate --beam 1 writes
    greedy = run_cli("evaluate", ckpt, SAMPLE_DEV, "--format", "json", "--set", "translate.beam=1")
    assert greedy.returncode == 0, greedy.stderr
    out1 = run_cli("translate", "-m", ckpt, "--beam", "1", input="".join(p["source"] + "\n" for p in pairs))
    g = json.loads(greedy.stdout)
    assert g["beam"] == 1 and g["bleu"] == pytest.approx(
        sacrebleu.corpus_bleu(out1.stdout.split("\n")[:-1], [refs]).score, abs=1e-9
    )
    assert_usage_error(
        run_cli("evaluate", ckpt, SAMPLE_DEV, "--set", "translate.hidden_dim=8"),
        "translate.beam",
        "fixed by its weights",
    )
    table = run_cli("evaluate", ckpt, SAMPLE_DEV)
    assert table.returncode == 0 and table.stdout == ""
    for word in ("BLEU", "chrF", "lowercased", "signature", "nrefs:1|case:mixed"):
        assert word in table.stderr

    lines = [SOURCES[0], "", SOURCES[1]]
    text = run_cli("translate", "--beam", "3", input="\n".join(lines) + "\n")
    assert text.returncode == 0, text.stderr
    out = text.stdout.split("\n")
    assert len(out) == 4 and out[1] == "" and out[3] == ""  # one line per input line, the empty one kept
    assert out[0].strip() and out[2].strip()

    jl = run_cli(
        "translate", "-m", ckpt, "-", "--beam", "3", "--n-best", "2", "--format", "jsonl", input="\n".join(lines) + "\n"
    )
    assert jl.returncode == 0, jl.stderr
    rows = [json.loads(l) for l in jl.stdout.splitlines()]
    assert [r["source"] for r in rows] == lines
    assert rows[1] == {"source": "", "translation": "", "n_best": []}
    for r in (rows[0], rows[2]):
        assert len(r["n_best"]) == 2 and r["n_best"][0]["score"] >= r["n_best"][1]["score"]
        assert r["translation"] == r["n_best"][0]["text"]
    assert [r["translation"] for r in rows] == out[:3]  # beam 3 (n-best 2) and beam 3 agree on the best

    # bf16 autocast: stateful beam search runs with a bf16 decoder and keeps line alignment
    half = run_cli("translate", "-m", ckpt, "--beam", "3", "--precision", "bf16", input="\n".join(lines) + "\n")
    assert half.returncode == 0, half.stderr
    assert half.stdout.split("\n")[1] == "" and half.stdout.count("\n") == 3 and half.stdout.split("\n")[0].strip()

    infile = tmp_path / "news.de"
    infile.write_text("\n".join(lines) + "\n", encoding="utf-8")
    pred = run_cli("predict", ckpt, infile)
    assert pred.returncode == 0, pred.stderr
    assert len(pred.stdout.splitlines()) == 3 and pred.stdout.splitlines()[1] == ""

    # A 10,000-word line: cut to data.max_length pieces, so the output is bounded (ratio × 128 + 10 pieces).
    long_line = " ".join(["Hund"] * 10_000)
    big = run_cli("translate", "--beam", "2", input=long_line + "\n" + SOURCES[2] + "\n")
    assert big.returncode == 0, big.stderr
    got = big.stdout.split("\n")
    assert len(got) == 3 and got[2] == ""
    assert len(got[0].split()) <= int(1.5 * 128 + 10)
    assert "cut" in big.stderr


def test_translate_refuses_a_checkpoint_of_another_task(tmp_path):
    from lstmtext import checkpoint as ckpt
    from lstmtext.tasks import translate as T
    from lstmtext.tokenizer import Tokenizer

    tok = Tokenizer.train(T.tokenizer_texts(T.read(str(SAMPLE_DEV), T.Options())), 400, "bpe")
    other = tmp_path / "sentiment.ckpt"
    ckpt.save(other, {"w": torch.zeros(2)}, {"task": "sentiment", "recipe": {}, "labels": ["0", "1"]}, tok.model_proto)
    proc = run_cli("translate", "-m", other, input="Ein Hund.\n")
    assert_usage_error(proc, "'sentiment' model", "'lstmtext translate' needs a 'translate' model")


def test_translate_without_a_trained_model_says_how_to_train():
    proc = run_cli("translate", input="Ein Hund.\n")
    assert_usage_error(proc, "lstmtext train translate")


def test_translate_bad_options_are_usage_errors(tmp_path):
    assert_usage_error(run_cli("translate", "--beam", "0", input="x\n"), "--beam")
    assert_usage_error(run_cli("translate", "--format", "conll", input="x\n"), "'conll' is not one of 'text', 'jsonl'")
    assert_usage_error(
        run_cli("train", "translate", "--set", "translate.attention=cosine", "-q", *TINY), "translate.attention"
    )
