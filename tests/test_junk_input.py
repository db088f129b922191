"""Junk input (issue 22): every reader of the sentiment, NER and translation tasks, in ``train`` and in
``evaluate`` (and the streaming input of predict/tag/translate), fails on the first bad line of a 64 MB junk
file: exit 2, one error line naming the file and that line, and memory that does not grow with the file.

Memory is measured in one fresh child process that runs every command twice through the CLI: first on a tiny
version of each junk file (the baseline: the same imports, model and code path), then on the 64 MB one. Its
peak RSS (ru_maxrss, which only rises) after each large run, less the peak after all the tiny runs, is an upper
bound on what that run added for the junk, and must stay well under the file's size."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, cli_env
from test_refusals import make_model

from lstmtext import data
from lstmtext.errors import UsageError

MB = 1 << 20
LARGE = 64 * MB
SMALL = 4096
GROWTH_BOUND_KB = 32 * 1024  # half the junk file; read_lines holds at most MAX_LINE_BYTES (16 MB) of a line
# InputLines (predict, tag, translate) grows one buffer in place, so a refused line is held once there too
STREAM_GROWTH_BOUND_KB = 32 * 1024

SENTIMENT_HEAD = b"sentence\tlabel\na fine film\tpositive\n"
TRANSLATE_HEAD = b"source\ttarget\nEin Hund.\tA dog.\n"
PLAIN = b"this is not json at all\n"  # four columns for CoNLL, its last one no tag
LONG = b"\t" + b"y" * 1000 + b"\n"  # an empty text (source) and a long label (target)

# (id, task, data as passed, the file and line named (None: a check at the end), what the error says)
READS = [
    ("blob", "sentiment", "blob.tsv", ("blob.tsv", 1), "longer than 16 MB; is it a text file?"),
    ("one-column", "sentiment", "one-column.tsv", ("one-column.tsv", 3), "expected 2 fields (sentence, label)"),
    ("not-json", "sentiment", "plain.jsonl", ("plain.jsonl", 1), "not valid JSON"),
    ("empty-texts", "sentiment", "empty.tsv", None, "no examples found"),
    ("blob", "ner", "blob.conll", ("blob.conll", 1), "longer than 16 MB; is it a text file?"),
    ("one-column", "ner", "one-column.conll", ("one-column.conll", 4), "expected 'TOKEN ... TAG'"),
    ("bad-tag", "ner", "plain.conll", ("plain.conll", 1), "tag 'all' is not O or B-/I-/E-/S-TYPE"),
    ("not-json", "ner", "plain.jsonl", ("plain.jsonl", 1), "not valid JSON"),
    ("blob", "translate", "blob", ("blob.de", 1), "longer than 16 MB; is it a text file?"),
    ("mismatch", "translate", "pair", ("pair.de", 3), "no such line in {dir}/pair.en, which has 2 lines"),
    ("one-column", "translate", "one-column-pairs.tsv", ("one-column-pairs.tsv", 3), "expected 2 fields"),
    ("empty-pairs", "translate", "empty-pairs.tsv", None, "no sentence pairs found"),
]
STREAMS = [("predict", "sentiment", "blob.tsv"), ("tag", "ner", "blob.conll"), ("translate", "translate", "blob.de")]


def _write_junk(folder: Path, size: int) -> None:
    """Every junk file at about SIZE bytes, in FOLDER: the large and the tiny set have the same names."""
    folder.mkdir()

    def lines(name: str, head: bytes, line: bytes) -> None:
        (folder / name).write_bytes(head + line * max(1, (size - len(head)) // len(line)))

    (folder / "blob.bin").write_bytes(os.urandom(size).replace(b"\n", b"\xff"))  # no line end anywhere
    for name in ("blob.tsv", "blob.conll", "blob.de", "blob.en"):
        (folder / name).symlink_to("blob.bin")
    lines("one-column.tsv", SENTIMENT_HEAD, b"one column of junk\n")
    lines("plain.jsonl", b"", PLAIN)
    (folder / "plain.conll").symlink_to("plain.jsonl")
    (folder / "pair.de").symlink_to("plain.jsonl")
    (folder / "pair.en").write_bytes(b"A dog.\nTwo cats.\n")
    lines("empty.tsv", b"sentence\tlabel\n", LONG)
    lines("one-column.conll", b"EU B-ORG\nrejects O\n\n", b"junk\n")
    lines("one-column-pairs.tsv", TRANSLATE_HEAD, b"one column of junk\n")
    lines("empty-pairs.tsv", b"source\ttarget\n", LONG)


def _commands(folder: Path, models: dict, out: Path) -> dict[str, list[str]]:
    cmds = {}
    for rid, task, name, _, _ in READS:
        cmds[f"{task}-train-{rid}"] = ["train", task, "--train", str(folder / name), "-o", str(out), "-q"]
        cmds[f"{task}-evaluate-{rid}"] = ["evaluate", str(models[task]), str(folder / name)]
    for verb, task, name in STREAMS:
        cmds[f"{task}-{verb}-blob"] = [verb, "-m", str(models[task]), str(folder / name)]
    return cmds


# The child imports what the commands need, then forks once per run: each run starts from the same fresh state
# (no memory freed by an earlier run to reuse), goes through conftest.run_cli (in process: the app's own error
# handling) and reports its peak RSS.
CHILD = """
import json, os, resource, sys
sys.path.insert(0, sys.argv[1])
from conftest import run_cli
import torch, lstmtext.api, lstmtext.cli.app, lstmtext.training
from lstmtext.tasks import get_task
for task in ("sentiment", "ner", "translate"):
    get_task(task)
results = {}
for key, args in json.load(sys.stdin):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        proc = run_cli(*args)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        with os.fdopen(w, "w") as out:
            json.dump({"rc": proc.returncode, "stderr": proc.stderr, "peak_kb": peak}, out)
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as got:
        results[key] = json.load(got)
    os.waitpid(pid, 0)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("junk")
    models = {
        "sentiment": make_model("sentiment", base / "s.ckpt"),
        "ner": make_model("ner", base / "ner.ckpt"),
        "translate": make_model("translate", base / "tr.ckpt", "translate.hidden_dim=16"),
    }
    _write_junk(base / "small", SMALL)
    _write_junk(base / "large", LARGE)
    # the baseline of each command and task: its run on the tiny blob (which fails at once, on line 1)
    small = {k: v for k, v in _commands(base / "small", models, base / "out.ckpt").items() if k.endswith("-blob")}
    large = _commands(base / "large", models, base / "out.ckpt")
    todo = [[f"small:{k}", v] for k, v in small.items()] + [[f"large:{k}", v] for k, v in large.items()]
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO / "tests")],
        input=json.dumps(todo).encode(),
        capture_output=True,
        cwd=REPO,
        env=cli_env(LSTMTEXT_HOME=str(base / "home")),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return base / "large", json.loads(proc.stdout)


def _check(runs, task: str, verb: str, rid: str, where: tuple[str, int] | None, says: str, bound_kb: int) -> None:
    folder, results = runs
    small, large = results[f"small:{task}-{verb}-blob"], results[f"large:{task}-{verb}-{rid}"]
    assert small["rc"] == 2, small["stderr"][-2000:]  # the baseline stops on the tiny blob's line 1
    assert large["rc"] == 2, large["stderr"][-2000:]
    lines = [line for line in large["stderr"].splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in large["stderr"], large["stderr"][-2000:]
    start = f"lstmtext: error: {folder / where[0]} line {where[1]}: " if where else "lstmtext: error: "
    assert lines[0].startswith(start), (start, lines[0][:300])
    assert says.format(dir=folder) in lines[0], lines[0][:300]
    assert len(lines[0]) < 400  # the junk itself is not echoed
    growth = large["peak_kb"] - small["peak_kb"]
    assert growth < bound_kb, f"peak RSS {large['peak_kb']} KiB, {growth} KiB over the tiny file's"


@pytest.mark.parametrize("verb", ["train", "evaluate"])
@pytest.mark.parametrize("rid, task, name, where, says", READS, ids=[f"{r[1]}-{r[0]}" for r in READS])
def test_junk_data_fails_on_its_first_bad_line_in_bounded_memory(runs, verb, rid, task, name, where, says):
    _check(runs, task, verb, rid, where, says, GROWTH_BOUND_KB)


@pytest.mark.parametrize("verb, task, name", STREAMS, ids=[s[0] for s in STREAMS])
def test_streamed_input_without_line_ends_fails_on_line_1_in_bounded_memory(runs, verb, task, name):
    _check(runs, task, verb, "blob", (name, 1), "longer than 16 MB", STREAM_GROWTH_BOUND_KB)


# -- read_lines' cap ---------------------------------------------------------------------------------------
def test_read_lines_refuses_a_line_over_the_cap_after_reading_the_cap_only(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "MAX_LINE_BYTES", 10)
    ok = tmp_path / "ok.txt"
    ok.write_bytes(b"\xef\xbb\xbf0123\r\n0123456789\n\n0123456789")  # the "\n" is not counted
    assert list(data.read_lines(ok)) == [(1, "0123"), (2, "0123456789"), (3, ""), (4, "0123456789")]
    long = tmp_path / "long.txt"
    long.write_bytes(b"short\n0123456789\n01234567890\n" + b"x" * 1000)
    with pytest.raises(UsageError, match=r"^.*long.txt line 3: longer than 10 bytes; is it a text file\?$"):
        list(data.read_lines(long))
    f = io.BytesIO(b"0123456789abcdef" * 1000)
    with pytest.raises(UsageError, match="x line 7: longer than 10 bytes"):
        data._read_line(f, "x", 7)
    assert f.tell() == 11  # the cap and one byte: the rest of the line is never read


def test_read_lines_cap_and_errors_in_gzip_files(tmp_path, monkeypatch):
    import gzip

    monkeypatch.setattr(data, "MAX_LINE_BYTES", 10)
    gz = tmp_path / "a.txt.gz"
    gz.write_bytes(gzip.compress(b"one\r\ntwo\n" + b"x" * 100_000))
    lines = data.read_lines(gz)
    assert next(lines) == (1, "one") and next(lines) == (2, "two")
    with pytest.raises(UsageError, match=r"a.txt.gz line 3: longer than 10 bytes"):
        next(lines)
    fake = tmp_path / "fake.tsv.gz"
    fake.write_bytes(b"sentence\tlabel\n")
    with pytest.raises(UsageError, match=r"fake.tsv.gz line 1: not a readable gzip file"):
        list(data.read_records(fake))
    cut = tmp_path / "cut.txt.gz"
    cut.write_bytes(gzip.compress(b"one\ntwo\n" * 1000)[:-20])
    with pytest.raises(UsageError, match=r"cut.txt.gz line \d+: not a readable gzip file"):
        list(data.read_lines(cut))


def test_csv_rows_with_long_fields_read_and_broken_ones_name_their_line(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text('text,label\n"' + "w " * 100_000 + '",pos\n', encoding="utf-8")
    assert [(n, len(r["text"]), r["label"]) for n, r in data.read_records(f)] == [(2, 200_000, "pos")]
    f.write_text("text,label\ngood,pos\nbad\rworse,neg\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"a.csv line 3: not a valid CSV row \(new-line character seen"):
        list(data.read_records(f))


def test_column_errors_name_the_header_line_and_do_not_echo_a_junk_header(tmp_path):
    from lstmtext.tasks import sentiment, translate

    junk = tmp_path / "junk.tsv"
    junk.write_text("x" * 100_000 + "\tlabel\n" + "a\tb\n" * 3, encoding="utf-8")
    with pytest.raises(UsageError, match=r"junk.tsv line 1: cannot tell which column holds the text") as e:
        sentiment.read(str(junk), sentiment.Options())
    assert len(str(e.value)) < 300
    js = tmp_path / "x.jsonl"
    js.write_text('\n\n{"de": "Ein Hund.", "fr": "Un chien."}\n', encoding="utf-8")
    with pytest.raises(UsageError, match=r"x.jsonl line 3: cannot tell which column holds the target"):
        translate.read(str(js), translate.Options())
