"""The token cache of a language model's training text (corpus.py, tokenstream.py, training/streamed.py): the
windows equal the in-memory chunks, the cache is reused and invalidated by content, held-out lines, several
inputs, resume from the middle of a shard, disjoint ranks, bad text found at its line."""

from __future__ import annotations

import gzip
import json
import random
import re

import numpy as np
import pytest
import torch
from conftest import REPO, TINY, assert_usage_error, run_cli
from safetensors.torch import load_file

from lstmtext import corpus as C
from lstmtext import tokenstream as TS
from lstmtext.config import build_recipe
from lstmtext.data import bucket_batches
from lstmtext.errors import UsageError
from lstmtext.progress import ByteProgress
from lstmtext.tasks import lm
from lstmtext.tokenizer import EOS, Tokenizer
from lstmtext.training.distributed import rank_batches

SAMPLE = REPO / "data" / "lm" / "train.txt"
SETTINGS = [a for a in TINY if a != "--set"]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:300]
    return Tokenizer.train((l for l in lines if l.strip()), vocab_size=400)


def _corpus(*paths) -> C.Corpus:
    return C.Corpus([str(p) for p in paths], lambda src: lm.stream_lines(src, lm.Options(), "train"))


def _open(corpus, tok, holdout=None) -> TS.TokenStream:
    return TS.open_stream(corpus, tok.model_proto, len(tok), holdout, ByteProgress("t", None, enabled=False))


def _texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    words = ["the", "river", "ö", "12", "town", ",", ".", "Ångström", "naïve", "x" * 30]
    return [" ".join(rng.choice(words) for _ in range(rng.randrange(0, 12))) for _ in range(n)]


@pytest.mark.parametrize("length,per", [(4, 7), (16, 1 << 25), (5, 3), (64, 50)])
def test_windows_are_the_in_memory_chunks(tmp_path, tok, monkeypatch, length, per):
    """Shards of ``per`` ids (so windows cross shard ends): every window equals featurize's chunk of the same
    text, ids and length, in the same order."""
    monkeypatch.setattr(TS, "SHARD_PIECES", per)
    texts = _texts(length, 120)
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    recipe = build_recipe("lm", lm.Options, lm.DEFAULTS, overrides=[f"lm.chunk_length={length}"])
    feats = lm.featurize([{"text": t, "split": "train"} for t in texts], tok, [], recipe)
    windows = lm.stream_windows(_open(_corpus(tmp_path / "t.txt"), tok), recipe)
    assert len(windows) == len(feats)
    assert windows.lengths.tolist() == [f["length"] for f in feats]
    assert [w["ids"].tolist() for w in windows] == [f["ids"] for f in feats]
    assert [w["start"] for w in windows] == [i * (length - 1) for i in range(len(windows))]  # consecutive share one
    assert len(list((windows.stream.folder).glob("shard-*.bin"))) == -(-len(windows.stream) // per)


def test_a_stream_is_one_eos_then_each_line_and_its_eos(tmp_path, tok):
    text = "a town .\n\nthe river\r\n"
    (tmp_path / "t.txt").write_bytes(("\ufeff" + text).encode())
    s = _open(_corpus(tmp_path / "t.txt"), tok)
    want = [EOS]
    for line in ["a town .", "", "the river"]:
        want += tok.encode_one(line) + [EOS]
    assert s.read(0, len(s)).tolist() == want
    assert s.index["dtype"] == "uint16" and s.index["lines"] == 3


def test_the_cache_is_reused_and_invalidated_by_text_and_tokenizer(tmp_path, tok, monkeypatch):
    path = tmp_path / "t.txt"
    path.write_text("a town .\nthe river\n", encoding="utf-8")
    first = _open(_corpus(path), tok)

    def refuse(*a, **k):
        raise AssertionError("the stream was written again")

    with monkeypatch.context() as m:
        m.setattr(TS, "write_stream", refuse)
        assert _open(_corpus(path), tok).folder == first.folder  # same text, same tokenizer: reused
    path.write_text("a town .\nthe river!\n", encoding="utf-8")
    changed = _open(_corpus(path), tok)
    assert (
        changed.folder != first.folder and changed.read(0, len(changed)).tolist() != first.read(0, len(first)).tolist()
    )
    other = Tokenizer.train(["a town . the river", "the town"] * 50, vocab_size=400)
    assert _open(_corpus(path), other).folder not in (first.folder, changed.folder)
    assert _open(_corpus(path), tok, C.Holdout(1, 0.5, 10)).folder not in (first.folder, changed.folder)


def test_held_out_lines_are_the_seeded_sample_and_leave_the_stream(tmp_path, tok):
    texts = [f"line {i} of the town" for i in range(40)]
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    holdout = C.Holdout(seed=5, fraction=0.1, cap=3)
    picked = holdout.pick(40)
    assert picked == sorted(random.Random(5).sample(range(40), 3))
    s = _open(_corpus(tmp_path / "t.txt"), tok, holdout)
    assert s.dev_lines() == [texts[i] for i in picked]
    want = [EOS]
    for i, t in enumerate(texts):
        if i not in picked:
            want += tok.encode_one(t) + [EOS]
    assert s.read(0, len(s)).tolist() == want and s.index["held_out"] == 3


def test_the_tokenizer_sample_is_every_line_in_order_when_it_fits_and_bounded_when_not(tmp_path):
    texts = [f"w{i}" for i in range(50)]
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    corpus = _corpus(tmp_path / "t.txt")
    assert C.sample_lines(corpus, 50, [3, 7], 100, seed=1) == [t for i, t in enumerate(texts) if i not in (3, 7)]
    small = C.sample_lines(corpus, 50, [3, 7], 10, seed=1)
    assert len(small) == 10 and "w3" not in small and "w7" not in small
    assert small == sorted(small, key=texts.index) and small == C.sample_lines(corpus, 50, [3, 7], 10, seed=1)


def test_blocks_cut_at_line_ends_and_count_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(C, "BLOCK_BYTES", 10)
    texts = _texts(3, 57)
    (tmp_path / "t.txt").write_text("\n".join(texts), encoding="utf-8")  # no newline at the end
    with gzip.open(tmp_path / "t.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(texts) + "\n")
    for name in ("t.txt", "t.txt.gz"):
        blocks = list(_corpus(tmp_path / name).blocks())
        assert len(blocks) > 5
        assert [line for b in blocks for line in C.decode_block(b)] == texts
        assert [b.index for b in blocks] == [sum(b.count for b in blocks[:i]) for i in range(len(blocks))]


def test_bad_text_is_reported_at_its_line(tmp_path, tok, monkeypatch):
    monkeypatch.setattr(C, "BLOCK_BYTES", 64)
    good = b"a town .\n" * 30
    (tmp_path / "bad.txt").write_bytes(good + b"caf\xe9\n" + good)
    with pytest.raises(UsageError, match=r"bad.txt line 31: not valid UTF-8 \(byte 0xe9 at column 4\)"):
        _open(_corpus(tmp_path / "bad.txt"), tok)
    (tmp_path / "nul.txt").write_bytes(good + good + b"a\x00b\n")
    with pytest.raises(UsageError, match="nul.txt line 61: a NUL byte at column 2"):
        _open(_corpus(tmp_path / "nul.txt"), tok)


def test_sources_expand_folders_and_globs_and_refuse_empty_ones(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ("d/b.txt", "d/a.txt", "d/sub/c.txt", "d/.hidden.txt"):
        (tmp_path / name).write_text("x\n")
    d = str(tmp_path / "d")
    assert C.expand_sources([d], folders=True) == [f"{d}/a.txt", f"{d}/b.txt", f"{d}/sub/c.txt"]
    assert C.expand_sources([d], folders=False) == [d]
    assert C.expand_sources([f"{d}/*.txt", "hf:x"], folders=False) == [f"{d}/a.txt", f"{d}/b.txt", "hf:x"]
    with pytest.raises(UsageError, match=r"no file matches this pattern"):
        C.expand_sources([f"{d}/*.tsv"], folders=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="the folder holds no files"):
        C.expand_sources([str(tmp_path / "empty")], folders=True)


def test_ranks_read_disjoint_windows_that_cover_the_epoch():
    batches = bucket_batches([16] * 101 + [3], 64, 64, shuffle=True, seed=7)
    mine = [rank_batches(batches, r, 2) for r in (0, 1)]
    assert len(mine[0]) == len(mine[1]) == len(batches) // 2
    seen = [i for b in mine[0] + mine[1] for i in b]
    assert len(seen) == len(set(seen))
    assert set(seen) == {i for b in batches[: len(batches) // 2 * 2] for i in b}


# -- through the CLI ---------------------------------------------------------------------------------------
def _weights(path) -> dict:
    return load_file(str(path))


def test_several_inputs_train_as_their_concatenation(tmp_path):
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    (tmp_path / "a.txt").write_text("\n".join(lines[:300]) + "\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.txt.gz", "wt", encoding="utf-8") as f:
        f.write("\n".join(lines[300:600]) + "\n")
    (tmp_path / "ab.txt").write_text("\n".join(lines[:600]) + "\n", encoding="utf-8")
    common = ["--dev", REPO / "data" / "lm" / "dev.txt", "--epochs", "1", "-q", "--set", "train.max_steps=4", *TINY]
    two = run_cli(
        "train",
        "lm",
        "--train",
        tmp_path / "a.txt",
        "--train",
        tmp_path / "b.txt.gz",
        "-o",
        tmp_path / "two.ckpt",
        *common,
    )
    one = run_cli("train", "lm", "--train", tmp_path / "ab.txt", "-o", tmp_path / "one.ckpt", *common)
    assert two.returncode == 0 and one.returncode == 0, two.stderr + one.stderr
    a, b = _weights(tmp_path / "two.resume.safetensors"), _weights(tmp_path / "one.resume.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_second_run_reuses_the_tokenizer_and_the_stream(tmp_path):
    args = ["train", "lm", "--train", SAMPLE, "--epochs", "1", "--set", "train.max_steps=2", *TINY]
    first = run_cli(*args, "-o", tmp_path / "a.ckpt", "--cache-dir", tmp_path / "cache")
    second = run_cli(*args, "-o", tmp_path / "b.ckpt", "--cache-dir", tmp_path / "cache")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "tokenizer: trained on" in first.stderr and "token stream: " in first.stderr
    assert "tokenizer: the one trained on this text before" in second.stderr
    assert "token stream: reused" in second.stderr
    assert len(list((tmp_path / "cache" / "streams").iterdir())) == 1
    held = [json.loads(l) for l in next((tmp_path / "cache" / "streams").iterdir()).joinpath("dev.jsonl").open()]
    n = len(SAMPLE.read_text(encoding="utf-8").splitlines())
    assert len(held) == min(2000, int(n * 0.05))  # the default data.valid_fraction and data.valid_max


def test_the_model_card_names_the_token_stream(tmp_path):
    """A streamed run's provenance lists the token stream beside its sources; info shows it as one."""
    ckpt = tmp_path / "m.ckpt"
    proc = run_cli("train", "lm", "--train", SAMPLE, "--epochs", "1", *TINY, "-o", ckpt, "--cache-dir", tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    key = next((tmp_path / "c" / "streams").iterdir()).name
    data = json.loads(run_cli("info", ckpt, "--format", "json").stdout)["provenance"]["data"]
    assert data[-1]["token_stream"].startswith(key) and data[0]["source"] == str(SAMPLE)
    card = run_cli("info", ckpt)
    assert card.returncode == 0 and re.search(rf"token stream\s*│\s*{key[:12]} \([\d,]+ pieces\)", card.stderr)
    assert not re.search(r"data\s*│\s*None", card.stderr)  # the stream is not shown as a source


def test_resume_from_the_middle_of_a_shard_is_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(TS, "SHARD_PIECES", 1000)  # the sample's stream spans dozens of shards
    from lstmtext.training import train

    torch.set_num_threads(1)
    common = [*SETTINGS, "train.epochs=1", "lm.chunk_length=64"]
    kw = {"show_progress": False}
    train("lm", overrides=[*common, "train.max_steps=7"], out=tmp_path / "whole.ckpt", **kw)
    train("lm", overrides=[*common, "train.max_steps=3"], out=tmp_path / "part.ckpt", **kw)
    train("lm", overrides=[*common, "train.max_steps=7"], out=tmp_path / "part.ckpt", resume=True, **kw)
    a, b = _weights(tmp_path / "whole.resume.safetensors"), _weights(tmp_path / "part.resume.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_lm_training_text_that_is_empty_or_missing_is_one_error(tmp_path):
    (tmp_path / "blank.txt").write_text("\n \n\n", encoding="utf-8")
    proc = run_cli("train", "lm", "--train", tmp_path / "blank.txt", "-o", tmp_path / "m.ckpt", "-q")
    assert_usage_error(proc, "blank.txt", "no text found")
    proc = run_cli("train", "lm", "--train", tmp_path / "nope.txt", "-o", tmp_path / "m.ckpt", "-q")
    assert_usage_error(proc, "nope.txt", "file not found")


def test_hf_text_streams_from_a_local_dataset(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "train.txt").write_text("first line\nsecond line\n\nfourth\n", encoding="utf-8")
    got = list(lm.stream_lines(f"hf:{tmp_path / 'ds'}", lm.Options(), "train"))
    assert got == ["first line", "second line", "", "fourth"]
    assert np.array_equal(np.array(got), np.array([e["text"] for e in lm.read(f"hf:{tmp_path / 'ds'}", lm.Options())]))


def test_several_training_files_of_an_in_memory_task_are_read_one_after_another(tmp_path):
    rows = (REPO / "data" / "sentiment" / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, body = rows[0], [r for r in rows[1:] if r.strip()]
    (tmp_path / "a.tsv").write_text("\n".join([header, *body[:40]]) + "\n", encoding="utf-8")
    (tmp_path / "b.tsv").write_text("\n".join([header, *body[40:100]]) + "\n", encoding="utf-8")
    dev = REPO / "data" / "sentiment" / "dev.tsv"
    common = ["--dev", dev, "-o", tmp_path / "m.ckpt", "--set", "train.max_steps=1", *TINY]
    proc = run_cli("train", "sentiment", "--train", tmp_path / "a.tsv", "--train", f"{tmp_path}/b.*", *common)
    assert proc.returncode == 0, proc.stderr
    assert "sentiment: 100 training examples" in proc.stderr


def test_tokenizer_processes_write_the_same_stream(tmp_path, tok, monkeypatch):
    """The pool path (spawned processes, a few blocks in flight) equals tokenizing in this process."""
    monkeypatch.setattr(C, "BLOCK_BYTES", 2000)
    texts = _texts(11, 3000)
    (tmp_path / "t.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    corpus = _corpus(tmp_path / "t.txt")
    held = C.Holdout(2, 0.01, 20).pick(len(texts))
    one = list(TS._encoded(corpus, tok.model_proto, held, "uint16", workers=1))
    two = list(TS._encoded(corpus, tok.model_proto, held, "uint16", workers=2))
    assert len(one) == len(two) > 10
    assert all(np.array_equal(a[0], b[0]) and a[1:] == b[1:] for a, b in zip(one, two))


def test_the_cli_runs_its_tokenizer_processes_without_running_itself_again(tmp_path):
    """``python -m lstmtext`` spawns workers that import its __main__: they must not start the command again."""
    from conftest import run_process

    args = ["train", "lm", "--train", SAMPLE, "--epochs", "1", "--set", "train.max_steps=2", "-q", *TINY]
    procs = {
        n: run_process(*args, "-o", tmp_path / f"w{n}.ckpt", "--cache-dir", tmp_path / f"c{n}", LSTMTEXT_WORKERS=str(n))
        for n in (1, 2)
    }
    assert all(p.returncode == 0 for p in procs.values()), [p.stderr for p in procs.values()]
    a, b = _weights(tmp_path / "w1.resume.safetensors"), _weights(tmp_path / "w2.resume.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_cut_gzip_file_is_one_error_at_its_line(tmp_path, tok):
    data = gzip.compress(("a town .\n" * 5000).encode())
    (tmp_path / "cut.txt.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UsageError, match=r"cut.txt.gz line \d+: not a readable gzip file"):
        _open(_corpus(tmp_path / "cut.txt.gz"), tok)


@pytest.mark.parametrize("task,name,lines", [("lm", "t.txt", 600), ("sentiment", "t.tsv", 300)])
def test_resume_refuses_training_data_that_changed(tmp_path, task, name, lines):
    sample = REPO / "data" / task / ("train.txt" if task == "lm" else "train.tsv")
    text = sample.read_text(encoding="utf-8").splitlines()[:lines]
    path = tmp_path / name
    path.write_text("\n".join(text) + "\n", encoding="utf-8")
    args = ["train", task, "--train", path, "-o", tmp_path / "m.ckpt", "-q", *TINY]
    assert run_cli(*args, "--set", "train.max_steps=2").returncode == 0
    path.write_text("\n".join(text[:-1]) + "\n", encoding="utf-8")  # the last line gone
    proc = run_cli(*args, "--resume", "--set", "train.max_steps=4")
    assert_usage_error(proc, "--resume: the training data changed since this run started", only_line=False)
    path.write_text("\n".join(text) + "\n", encoding="utf-8")  # restored: the run continues
    assert run_cli(*args, "--resume", "--set", "train.max_steps=4").returncode == 0


def test_the_tokenizer_sample_is_bounded_in_characters_and_kept_in_order():
    from lstmtext.tokenizer import _within_chars

    lines = [f"{i:03d}" + "x" * (i % 7) for i in range(300)]
    assert _within_chars(lines, 0, 1) == lines and _within_chars(lines, 10**6, 1) == lines
    kept = _within_chars(lines, 500, seed=4)
    assert sum(map(len, kept)) <= 500 < sum(map(len, kept)) + 10  # filled to within one line of the bound
    assert kept == sorted(kept) and set(kept) < set(lines) and kept == _within_chars(lines, 500, seed=4)
