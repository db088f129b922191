"""Unit tests of the shared parts: config, tokenizer, encoder, checkpoint, data, metrics."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmtext import checkpoint as ckpt
from lstmtext.config import build_recipe, parse_duration
from lstmtext.data import InputLines, bucket_batches, read_records
from lstmtext.dropout import dropout
from lstmtext.encoder import Encoder, final_states, reverse_within_length, take_rows
from lstmtext.errors import UsageError
from lstmtext.tasks import TASKS, get_task
from lstmtext.tasks.common import classification_metrics
from lstmtext.tokenizer import UNK, Tokenizer

REPO = Path(__file__).resolve().parent.parent


# -- config ------------------------------------------------------------------------------------------------
def _recipe(**kw):
    mod = get_task("sentiment")
    return build_recipe("sentiment", mod.Options, mod.DEFAULTS, **kw)


def test_config_set_overrides_with_types():
    r = _recipe(overrides=["train.lr=0.01", "encoder.cell=gru", "train.epochs=3", "sentiment.pooling=attention"])
    assert r.train.lr == 0.01 and r.encoder.cell == "gru" and r.train.epochs == 3
    assert r.options.pooling == "attention"
    assert r.to_dict()["sentiment"]["pooling"] == "attention"


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("train.lrr=1", "unknown key 'lrr'"),
        ("trian.lr=1", "unknown section 'trian'"),
        ("train.epochs=many", "expected int"),
        ("encoder.cell=rnn", "encoder.cell"),
        ("train.lr", "expected SECTION.KEY=VALUE"),
    ],
)
def test_config_bad_values_are_errors(override, fragment):
    with pytest.raises(UsageError, match=fragment):
        _recipe(overrides=[override])


@pytest.mark.parametrize(
    "task, override, valid",
    [
        ("sentiment", "encoder.cell=rnn", "lstm, gru"),
        ("sentiment", "train.schedule=step", "linear, cosine, constant"),
        ("sentiment", "tokenizer.model_type=wordpiece", "unigram, bpe"),
        ("sentiment", "sentiment.pooling=last", "maxmean, max, mean, attention"),
        ("ner", "ner.word_state=last", "first, span"),
        ("translate", "translate.attention=cosine", "general, dot, bahdanau"),
    ],
)
def test_config_choice_keys_refuse_other_values_as_the_recipe_is_read(task, override, valid):
    """Every choice-valued key, the task's own included, is checked by the loader (before any data is read)
    and the message lists what it takes."""
    mod = get_task(task)
    with pytest.raises(UsageError, match=f"{override.split('=')[0]}: expected one of {valid}, got"):
        build_recipe(task, mod.Options, mod.DEFAULTS, overrides=[override])


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.max_steps=-1", "train.max_steps: expected 0 (no limit) or a positive number of steps, got -1"),
        ("data.max_length=0", "data.max_length: expected at least 1 piece, got 0"),
        ("train.weight_decay=-0.1", "train.weight_decay: expected a number at least 0, got -0.1"),
        ("train.eval_every=-5", "train.eval_every: expected 0 (once per epoch) or a positive number of steps, got -5"),
        ("train.max_batch_size=0", "train.max_batch_size: expected at least 1, got 0"),
        (
            "train.patience=-1",
            "train.patience: expected 0 (never stop early) or a positive number of evaluations, got -1",
        ),
        ("train.lr=nan", "train.lr: expected a finite number, got nan"),
        ("train.lr=inf", "train.lr: expected a finite number, got inf"),
        ("train.clip=nan", "train.clip: expected a finite number, got nan"),
        ("train.clip=-1", "train.clip: expected a number at least 0 (0 = no clipping), got -1.0"),
        ("train.warmup=inf", "train.warmup: expected a finite number, got inf"),
        ("train.warmup=nan", "train.warmup: expected a finite number, got nan"),
        ("train.warmup=1", "train.warmup: expected a fraction of the run in [0, 1), got 1.0"),
        ("train.warmup=-0.1", "train.warmup: expected a fraction of the run in [0, 1), got -0.1"),
        (
            "train.max_time=0",
            "train.max_time: expected a positive duration such as 20m (omit it for no limit), got '0'",
        ),
        (
            "train.max_time=0m",
            "train.max_time: expected a positive duration such as 20m (omit it for no limit), got '0m'",
        ),
        ("train.init_seed=-3", "train.init_seed: expected 0 (train.seed) or a positive seed, got -3"),
        ("encoder.weight_drop=1", "encoder.weight_drop: expected a probability in [0, 1), got 1.0"),
    ],
)
def test_config_refuses_out_of_range_values_in_one_line(override, message):
    with pytest.raises(UsageError) as e:
        _recipe(overrides=[override])
    assert str(e.value) == message


@pytest.mark.parametrize(
    "override, key, value",
    [
        ("train.max_steps=0", "max_steps", 0),
        ("train.warmup=0", "warmup", 0.0),
        ("train.patience=0", "patience", 0),
        ("train.clip=0", "clip", 0.0),
        ("train.max_time=90s", "max_time", "90s"),
        ("train.init_seed=7", "init_seed", 7),
        ("train.eval_every=0", "eval_every", 0),
        ("train.max_batch_size=1", "max_batch_size", 1),
    ],
)
def test_config_accepts_the_edges_of_each_range(override, key, value):
    assert getattr(_recipe(overrides=[override]).train, key) == value
    assert _recipe(overrides=["data.max_length=1"]).data.max_length == 1


@pytest.mark.parametrize(
    "task, override, message",
    [
        ("ner", "ner.context=-1", "ner.context: must be 0 (off) or a positive number"),
        ("ner", "ner.lm_rate=0", "ner.lm_rate: expected a share of the pieces in (0, 1], got 0.0"),
        ("lm", "lm.chunk_length=1", "lm.chunk_length: must be at least 2, got 1"),
        ("translate", "translate.beam=0", "translate.beam: must be at least 1"),
        ("sentiment", "sentiment.hidden_dim=0", "sentiment.hidden_dim: must be at least 1, got 0"),
    ],
)
def test_config_runs_the_tasks_own_checks(task, override, message):
    """config.validate knows no task's options: each task module's validate checks its own."""
    mod = get_task(task)
    with pytest.raises(UsageError) as e:
        build_recipe(task, mod.Options, mod.DEFAULTS, overrides=[override])
    assert str(e.value) == message


def test_config_unknown_key_in_recipe_file_is_error(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text('task = "sentiment"\n[train]\nepochs = 2\nlearning_rate = 0.1\n')
    with pytest.raises(UsageError, match="unknown key 'learning_rate'"):
        _recipe(path=path)
    path.write_text('task = "ner"\n')
    with pytest.raises(UsageError, match="is for task 'ner'"):
        _recipe(path=path)


def test_config_every_recipe_loads_and_opens_with_its_command():
    recipes = sorted((REPO / "recipes").glob("*.toml"))
    assert any(p.name == "sst2.toml" for p in recipes) and any(p.name == "imdb.toml" for p in recipes)
    import tomllib

    for path in recipes:
        task = tomllib.loads(path.read_text())["task"]
        assert task in TASKS, f"{path.name}: task {task} is not in TASKS"
        mod = get_task(task)
        r = build_recipe(task, mod.Options, mod.DEFAULTS, path=path)
        assert r.task == task
        first = path.read_text().splitlines()[0]
        assert first.startswith(f"# lstmtext train {task}"), f"{path.name} must open with its command"
        assert "score:" in path.read_text().split("\ntask")[0], f"{path.name} must state the score it reached"


def test_config_parse_duration():
    assert parse_duration("20m") == 1200
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90") == 90 and parse_duration("90s") == 90
    assert parse_duration("") is None
    with pytest.raises(UsageError):
        parse_duration("soon")


def test_tasks_unknown_name_lists_valid_ones():
    with pytest.raises(UsageError, match="valid: sentiment"):
        get_task("sentimnet")


# -- tokenizer ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tok():
    lines = [f"the film number {i} was good and the plot was dull ." for i in range(200)]
    return Tokenizer.train(lines, vocab_size=300)


def test_tokenizer_byte_fallback_never_unknown(tok):
    text = "the film ✓ was 好 great"
    ids = tok.encode_one(text)
    assert UNK not in ids
    assert tok.decode(ids) == text


def test_tokenizer_roundtrips_through_bytes(tok):
    again = Tokenizer(tok.model_proto)
    assert again.encode(["the plot was good"]) == tok.encode(["the plot was good"])
    with pytest.raises(UsageError):
        Tokenizer(b"not a model")


def test_tokenizer_encode_words_marks_first_pieces(tok):
    words = ["the", "unbelievably", "dull", "plot"]
    ids, first = tok.encode_words(words)
    assert first[0] == 0 and len(first) == len(words)
    assert first == sorted(first) and len(set(first)) == len(first)
    for w, start, end in zip(words, first, first[1:] + [len(ids)]):
        assert tok.decode(ids[start:end]) == w


def test_tokenizer_training_is_deterministic():
    lines = [f"sentence {i} about films and plots" for i in range(100)]
    assert Tokenizer.train(lines, vocab_size=300).model_proto == Tokenizer.train(lines, vocab_size=300).model_proto


# -- encoder -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_encoder_same_output_alone_and_in_padded_batch(cell):
    torch.manual_seed(0)
    enc = Encoder(50, 16, 12, num_layers=2, cell=cell).eval()
    seqs = [[5, 6, 7], [8, 9, 10, 11, 12, 13], [14]]
    T = max(map(len, seqs))
    tokens = torch.tensor([s + [0] * (T - len(s)) for s in seqs])
    lengths = torch.tensor([len(s) for s in seqs])
    batch = enc(tokens, lengths)
    assert batch.shape == (3, T, 24)
    for i, s in enumerate(seqs):
        alone = enc(torch.tensor([s]), torch.tensor([len(s)]))
        torch.testing.assert_close(batch[i, : len(s)], alone[0], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(final_states(batch, lengths)[i], final_states(alone, torch.tensor([len(s)]))[0])


def test_encoder_forward_stack_never_sees_the_future():
    torch.manual_seed(0)
    enc = Encoder(50, 16, 12, num_layers=2).eval()
    a = torch.tensor([[5, 6, 7, 8, 9]])
    b = torch.tensor([[5, 6, 7, 30, 31]])
    L = torch.tensor([5])
    sa, sb = enc(a, L), enc(b, L)
    torch.testing.assert_close(sa[0, :3, :12], sb[0, :3, :12])  # forward states before the change agree
    assert not torch.allclose(sa[0, :3, 12:], sb[0, :3, 12:])  # backward states do see it


def test_encoder_reverse_within_length_keeps_padding_in_place():
    x = torch.tensor([[1, 2, 3, 0], [4, 5, 6, 7]])
    out = reverse_within_length(x, torch.tensor([3, 4]))
    assert out.tolist() == [[3, 2, 1, 0], [7, 6, 5, 4]]


def test_encoder_take_rows_matches_gather():
    x = torch.randn(3, 5, 4)
    idx = torch.tensor([[0, 4], [2, 2], [1, 0]])
    want = x.gather(1, idx.unsqueeze(-1).expand(-1, -1, 4))
    assert torch.equal(take_rows(x, idx), want)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_encoder_weight_drop_masks_the_recurrent_matrices_in_training_only(cell):
    torch.manual_seed(0)
    enc = Encoder(50, 16, 12, num_layers=2, cell=cell, embed_dropout=0.0, dropout=0.0, weight_drop=0.5)
    x = torch.randn(2, 5, 16)
    plain = type(enc.fwd)(16, 12, 2, batch_first=True)
    plain.load_state_dict(enc.fwd.state_dict())
    kept = {k: v.clone() for k, v in enc.state_dict().items()}
    # By hand: the same draws, layer by layer, put into a copy of the stack (dropout scales by 1/(1-p)).
    torch.manual_seed(3)
    masked = [dropout(getattr(enc.fwd, f"weight_hh_l{k}"), 0.5) for k in range(2)]
    torch.manual_seed(3)
    out, _ = enc.forward_stack(x)
    with torch.no_grad():
        for k, w in enumerate(masked):
            getattr(plain, f"weight_hh_l{k}").copy_(w)
    torch.testing.assert_close(out, plain(x)[0])
    assert all(0.3 < (w == 0).float().mean() < 0.7 for w in masked)
    out.sum().backward()  # the gradient reaches the stored matrix only where the mask kept it
    grad = enc.fwd.weight_hh_l0.grad
    assert torch.equal(grad[masked[0] == 0], torch.zeros_like(grad[masked[0] == 0]))
    assert all(torch.equal(v, kept[k]) for k, v in enc.state_dict().items())  # the stored weights are untouched
    enc.eval()
    plain.load_state_dict(enc.fwd.state_dict())
    torch.testing.assert_close(enc.forward_stack(x)[0], plain(x)[0])  # no mask at inference


# -- checkpoint --------------------------------------------------------------------------------------------
def _save(path, task="sentiment", **meta):
    ckpt.save(path, {"w": torch.arange(6.0).view(2, 3)}, {"task": task, "recipe": {}, **meta}, b"proto-bytes")


def test_checkpoint_roundtrip_is_safetensors_with_json_metadata(tmp_path):
    path = tmp_path / "m.ckpt"
    _save(path, labels=["neg", "pos"])
    meta, state = ckpt.load(path, task="sentiment")
    assert meta["labels"] == ["neg", "pos"] and meta["format_version"] == ckpt.FORMAT_VERSION
    assert ckpt.tokenizer_proto(meta) == b"proto-bytes"
    torch.testing.assert_close(state["w"], torch.arange(6.0).view(2, 3))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:  # a plain safetensors file: no pickle involved
        assert json.loads(f.metadata()["lstmtext"])["task"] == "sentiment"


def test_checkpoint_refuses_truncated_foreign_newer_and_wrong_task(tmp_path):
    good = tmp_path / "m.ckpt"
    _save(good)
    data = good.read_bytes()
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(data[: len(data) - 10])
    with pytest.raises(UsageError, match="truncated"):
        ckpt.load(cut)
    (tmp_path / "tiny.ckpt").write_bytes(b"abc")
    with pytest.raises(UsageError, match="truncated or not an lstmtext checkpoint"):
        ckpt.load(tmp_path / "tiny.ckpt")
    foreign = tmp_path / "foreign.ckpt"
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(UsageError, match="not an lstmtext checkpoint"):
        ckpt.load(foreign)
    newer = tmp_path / "newer.ckpt"
    ckpt.save(newer, {"w": torch.zeros(1)}, {"task": "sentiment", "format_version": 99}, b"")
    # save() stamps the current version first; rewrite the header to claim a future one
    raw = newer.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = json.loads(header["__metadata__"]["lstmtext"])
    meta["format_version"] = 99
    header["__metadata__"]["lstmtext"] = json.dumps(meta)
    body = json.dumps(header).encode()
    body += b" " * (-len(body) % 8)
    newer.write_bytes(struct.pack("<Q", len(body)) + body + raw[8 + n :])
    with pytest.raises(UsageError, match="newer"):
        ckpt.load(newer)
    with pytest.raises(UsageError, match="is a 'sentiment' model; 'lstmtext tag' needs a 'ner' model"):
        ckpt.load(good, task="ner", command="tag")
    with pytest.raises(UsageError, match="file not found"):
        ckpt.load(tmp_path / "missing.ckpt")


def test_checkpoint_crash_mid_save_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "m.ckpt"
    _save(path, labels=["a"])
    before = path.read_bytes()
    import safetensors.torch

    def boom(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", boom)
    with pytest.raises(OSError):
        _save(path, labels=["b"])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt"]  # no temp file left behind


# -- data --------------------------------------------------------------------------------------------------
def test_data_bucket_batches_cover_all_under_budget():
    lengths = [(i * 7) % 50 + 1 for i in range(500)]
    batches = bucket_batches(lengths, batch_tokens=300, max_batch_size=32, shuffle=True, seed=3)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(500))
    for b in batches:
        assert len(b) <= 32
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 300
    padded = sum(max(lengths[i] for i in b) * len(b) for b in batches)
    assert padded / sum(lengths) < 1.1  # bucketing keeps padding small
    as_lists = [b.tolist() for b in batches]
    assert as_lists == [b.tolist() for b in bucket_batches(lengths, 300, 32, shuffle=True, seed=3)]
    assert as_lists != [b.tolist() for b in bucket_batches(lengths, 300, 32, shuffle=True, seed=4)]


def _greedy_batches(lengths, batch_tokens, max_batch_size, shuffle, seed):
    """The plan by its definition, one item at a time: sort by (length, a key drawn per index), fill each batch
    while (items + 1) × the longest ≤ batch_tokens and items < max_batch_size, shuffle the batches."""
    import random

    rng = random.Random(seed)
    key = (lambda i: (lengths[i], rng.random())) if shuffle else (lambda i: lengths[i])
    batches, cur, longest = [], [], 0
    for i in sorted(range(len(lengths)), key=key):
        n = max(1, lengths[i])
        if cur and (max(longest, n) * (len(cur) + 1) > batch_tokens or len(cur) >= max_batch_size):
            batches.append(cur)
            cur, longest = [], 0
        cur.append(i)
        longest = max(longest, n)
    if cur:
        batches.append(cur)
    if shuffle:
        rng.shuffle(batches)
    return batches


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from([0, 1, 3, 7, 7, 7, 20, 64, 300]), max_size=120),
    st.integers(1, 400),
    st.integers(1, 12),
    st.booleans(),
    st.integers(0, 50),
)
def test_data_bucket_batches_are_the_greedy_plan(lengths, batch_tokens, max_batch_size, shuffle, seed):
    got = [b.tolist() for b in bucket_batches(lengths, batch_tokens, max_batch_size, shuffle, seed)]
    assert got == _greedy_batches(lengths, batch_tokens, max_batch_size, shuffle, seed)


def _length_features(n: int) -> list[dict]:
    return [{"length": (i * 13) % 40 + 1, "ids": list(range((i * 13) % 40 + 1))} for i in range(n)]


def _collate_ids(feats: list[dict]) -> dict:
    from lstmtext.tasks.common import pad

    return {"ids": pad([f["ids"] for f in feats]), "n": len(feats)}


def test_common_map_batches_parallel_threads_give_the_sequential_results_in_order():
    from lstmtext.tasks.common import map_batches

    feats = _length_features(300)
    encoder = Encoder(50, 16, 16).eval()

    def run(batch):
        ids = batch["ids"]
        lengths = (ids != 0).sum(1).clamp(min=1)
        # inference_mode holds in the worker threads too: no autograd graph, outputs are inference tensors
        out = encoder(ids, lengths)
        return torch.is_inference_mode_enabled(), torch.get_num_threads(), out.sum(-1).tolist()

    threads = torch.get_num_threads()
    one = map_batches(run, feats, _collate_ids, 200, "cpu", workers=1)
    two = map_batches(run, feats, _collate_ids, 200, "cpu", workers=2)
    assert len(one) > 2 and [idx for idx, _ in one] == [idx for idx, _ in two]
    assert sorted(i for idx, _ in two for i in idx) == list(range(300))
    assert all(r[0] for _, r in one + two)
    assert {r[1] for _, r in two} == {1}  # one intra-op thread per worker...
    assert torch.get_num_threads() == threads  # ...and the caller's count back afterwards
    for (_, a), (_, b) in zip(one, two):
        assert torch.allclose(torch.tensor(a[2]), torch.tensor(b[2]), atol=1e-5)


def test_common_map_batches_carries_autocast_into_threads_and_restores_threads_on_error():
    from lstmtext.tasks.common import inference_workers, map_batches

    feats = _length_features(100)
    seen = map_batches(
        lambda b: (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")),
        feats,
        _collate_ids,
        100,
        "cpu",
        workers=2,
    )
    assert {r for _, r in seen} == {(False, torch.get_autocast_dtype("cpu"))}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        seen = map_batches(
            lambda b: (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")),
            feats,
            _collate_ids,
            100,
            "cpu",
            workers=2,
        )
    assert {r for _, r in seen} == {(True, torch.bfloat16)}

    def fail(batch):
        raise ValueError("boom")

    threads = torch.get_num_threads()
    with pytest.raises(ValueError, match="boom"):
        map_batches(fail, feats, _collate_ids, 100, "cpu", workers=2)
    assert torch.get_num_threads() == threads
    assert inference_workers("cpu", 1) == 1  # a single batch never pays for a thread pool
    assert inference_workers("cpu", 50) == torch.get_num_threads()
    assert inference_workers("cuda", 50) == 1  # a GPU runs one batch at a time


def test_data_records_from_tsv_csv_jsonl_with_bom_and_crlf(tmp_path):
    (tmp_path / "a.tsv").write_bytes("\ufeffsentence\tlabel\r\ngood film\t1\r\n\r\nbad film\t0\r\n".encode())
    (tmp_path / "a.csv").write_text('text,label\n"good, really",pos\nbad,neg\n')
    (tmp_path / "a.jsonl").write_text('{"text": "good", "label": 1}\n\n{"text": "bad", "label": 0}\n')
    assert [r for _, r in read_records(tmp_path / "a.tsv")] == [
        {"sentence": "good film", "label": "1"},
        {"sentence": "bad film", "label": "0"},
    ]
    assert [r["text"] for _, r in read_records(tmp_path / "a.csv")] == ["good, really", "bad"]
    assert [(n, r["label"]) for n, r in read_records(tmp_path / "a.jsonl")] == [(1, 1), (3, 0)]


def test_data_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"sentence\tlabel\ngood\t1\nbad \xff\xfe film\t0\n")
    with pytest.raises(UsageError, match=r"bad.tsv line 3: not valid UTF-8"):
        list(read_records(bad))
    short = tmp_path / "short.tsv"
    short.write_text("sentence\tlabel\ngood\t1\nno label here\n")
    with pytest.raises(UsageError, match=r"short.tsv line 3: expected 2 fields"):
        list(read_records(short))
    js = tmp_path / "x.jsonl"
    js.write_text('{"text": "a"}\n{oops\n')
    with pytest.raises(UsageError, match=r"x.jsonl line 2: not valid JSON"):
        list(read_records(js))


def test_data_input_lines_batches_a_file_and_keeps_blank_lines(tmp_path):
    f = tmp_path / "in.txt"
    f.write_bytes(b"\xef\xbb\xbfone\r\n\r\ntwo\nthree")
    batches = list(InputLines(str(f)).batches(max_batch=2))
    assert batches == [["one", ""], ["two", "three"]]
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(UsageError, match="empty"):
        list(InputLines(str(empty)).batches())


def test_data_input_lines_batches_stop_at_max_chars(tmp_path):
    f = tmp_path / "in.txt"
    f.write_text("aaaa\nbb\ncc\nd\n" + "e" * 10 + "\nf\n")
    batches = list(InputLines(str(f)).batches(max_batch=100, max_chars=5))
    # a batch closes once it holds 5 characters (the line that crosses the bound is in it)
    assert batches == [["aaaa", "bb"], ["cc", "d", "e" * 10], ["f"]]


# -- metrics -----------------------------------------------------------------------------------------------
def test_metrics_classification_by_hand():
    gold = [0, 0, 0, 1, 1, 2]
    pred = [0, 0, 1, 1, 2, 2]
    m = classification_metrics(gold, pred, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["per_class"]["a"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "support": 3,
    }
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def test_api_inference_precision_autocasts_only_when_asked(monkeypatch, capsys):
    from types import SimpleNamespace

    from lstmtext import device as train
    from lstmtext.api import inference_precision

    cpu = SimpleNamespace(device=torch.device("cpu"), task="sentiment")
    lin, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    with inference_precision(cpu, "bf16"):
        assert lin(x).dtype == torch.bfloat16
    for p in ("auto", "fp32"):  # auto is fp32 on CPU, as in training
        with inference_precision(cpu, p):
            assert lin(x).dtype == torch.float32
    with pytest.raises(UsageError, match="--precision fp8: expected one of auto, fp32, bf16, fp16, int8"):
        inference_precision(cpu, "fp8")
    # bf16 asked for on a CPU that would emulate it: it runs, and one line says it will be slow
    for native, said in ((False, True), (True, False)):
        monkeypatch.setattr(train, "native_bf16", lambda native=native: native)
        capsys.readouterr()
        with inference_precision(cpu, "bf16"):
            assert lin(x).dtype == torch.bfloat16
        assert ("no bf16 instructions" in capsys.readouterr().err) == said
    # training takes no int8: the recipe refuses it as it is read
    with pytest.raises(UsageError, match="train.precision"):
        _recipe(overrides=["train.precision=int8"])


def test_api_int8_quantizes_the_lstms_and_keeps_their_outputs():
    from types import SimpleNamespace

    from lstmtext.api import quantize_int8

    torch.manual_seed(0)
    enc = Encoder(300, embed_dim=32, hidden_dim=48).eval()
    tokens = torch.randint(5, 300, (3, 9))
    lengths = torch.tensor([9, 6, 2])
    with torch.inference_mode():
        ref = enc(tokens, lengths)  # (B, T, 2H)
    quantize_int8(SimpleNamespace(task="ner", device=torch.device("cpu"), model=enc))
    assert "quantized" in type(enc.fwd).__module__ and "quantized" in type(enc.bwd).__module__
    with torch.inference_mode():
        got = enc(tokens, lengths)
    mask = torch.arange(9).unsqueeze(0) < lengths.unsqueeze(1)  # (B, T): padding is not compared
    err = (got - ref)[mask].abs()
    assert err.max() < 0.05 and err.mean() < 0.01, (err.max(), err.mean())
    assert not torch.equal(got[mask], ref[mask])  # int8 really ran
    for task, device, msg in (("lm", "cpu", "this is a lm model"), ("ner", "cuda", "runs on the CPU")):
        with pytest.raises(UsageError, match=msg):
            quantize_int8(SimpleNamespace(task=task, device=torch.device(device), model=enc))
