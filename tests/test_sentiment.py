"""Sentiment end to end through the real CLI, the Python API, streaming and the bad-input rules (DESIGN §8)."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys

import pytest
from conftest import REPO, TINY, assert_usage_error, cli_env, run_cli

SAMPLE_DEV = REPO / "data" / "sentiment" / "dev.tsv"


def test_sentiment_train_evaluate_predict_info_end_to_end(sentiment_ckpt, tmp_path):
    ev = run_cli("evaluate", sentiment_ckpt, SAMPLE_DEV, "--format", "json")
    assert ev.returncode == 0, ev.stderr
    m = json.loads(ev.stdout)
    assert m["examples"] == 200 and m["labels"] == ["negative", "positive"]
    assert m["accuracy"] > 0.6  # three tiny epochs on the sample already beat chance clearly
    assert sum(map(sum, m["confusion"])) == 200 and set(m["per_class"]) == {"negative", "positive"}

    table = run_cli("evaluate", sentiment_ckpt, SAMPLE_DEV)
    assert table.returncode == 0 and table.stdout == ""  # tables are for people: stderr
    for word in ("accuracy", "macro-F1", "precision", "confusion"):
        assert word in table.stderr

    texts = ["what a truly wonderful film !", "", "the plot is tedious and lifeless ."]
    piped = run_cli("predict", sentiment_ckpt, "--format", "jsonl", input="\n".join(texts) + "\n")
    assert piped.returncode == 0, piped.stderr
    rows = [json.loads(l) for l in piped.stdout.splitlines()]
    assert [r["text"] for r in rows] == texts  # one object per input line, blank included
    assert rows[1]["label"] is None
    assert rows[0]["label"] in ("negative", "positive") and abs(sum(rows[0]["scores"].values()) - 1) < 1e-3

    infile = tmp_path / "reviews.txt"
    infile.write_text("\n".join(texts) + "\n")
    from_file = run_cli("predict", sentiment_ckpt, infile)
    assert from_file.returncode == 0
    assert from_file.stdout.splitlines() == [r["label"] or "" for r in rows]

    # --precision bf16: the same lines, scores within bf16's rounding of fp32's
    half = run_cli("predict", sentiment_ckpt, "--format", "jsonl", "--precision", "bf16", input="\n".join(texts) + "\n")
    assert half.returncode == 0, half.stderr
    hrows = [json.loads(l) for l in half.stdout.splitlines()]
    assert [r["text"] for r in hrows] == texts and hrows[1]["label"] is None
    for a, b in ((rows[0], hrows[0]), (rows[2], hrows[2])):
        assert abs(a["scores"]["positive"] - b["scores"]["positive"]) < 0.03
    hev = run_cli("evaluate", sentiment_ckpt, SAMPLE_DEV, "--format", "json", "--precision", "bf16")
    assert hev.returncode == 0 and abs(json.loads(hev.stdout)["accuracy"] - m["accuracy"]) <= 0.03, hev.stderr

    # --precision int8: the LSTMs in int8, the same lines, scores close to fp32's
    small = run_cli(
        "predict", sentiment_ckpt, "--format", "jsonl", "--precision", "int8", input="\n".join(texts) + "\n"
    )
    assert small.returncode == 0 and small.stderr == "", small.stderr
    srows = [json.loads(l) for l in small.stdout.splitlines()]
    assert [r["text"] for r in srows] == texts and srows[1]["label"] is None
    for a, b in ((rows[0], srows[0]), (rows[2], srows[2])):
        assert abs(a["scores"]["positive"] - b["scores"]["positive"]) < 0.05

    info = run_cli("info", sentiment_ckpt, "--format", "json")
    meta = json.loads(info.stdout)
    assert meta["task"] == "sentiment" and meta["labels"] == ["negative", "positive"]
    assert meta["provenance"]["seed"] == 1 and len(meta["provenance"]["data"][0]["sha256"]) == 64
    assert (meta["provenance"]["device"], meta["provenance"]["precision"]) == ("cpu", "fp32")  # what auto is on CPU
    assert meta["recipe"]["encoder"]["hidden_dim"] == 32 and "tokenizer" not in meta
    card = run_cli("info", sentiment_ckpt, COLUMNS="300").stderr
    assert "sentiment" in card and "the embedded sample's dev split" in card


def test_sentiment_python_api_matches_cli(sentiment_ckpt):
    import lstmtext

    model = lstmtext.load(sentiment_ckpt)
    out = model.predict(["what a truly wonderful film !", "", "the plot is tedious ."])
    assert out[1] is None and out[0]["label"] in model.labels
    cli = run_cli("predict", sentiment_ckpt, input="what a truly wonderful film !\n")
    assert cli.stdout.strip() == out[0]["label"]
    # one string in, its one result out (not one result per character)
    one = model.predict("what a truly wonderful film !")
    assert one == out[0] and set(one) == {"label", "score", "scores"}
    assert model.predict("   ") is None and model.predict([]) == []


def test_sentiment_api_evaluate_resolves_its_data_source(sentiment_ckpt, monkeypatch):
    """api.evaluate passes the source through data.resolve_source, where named datasets are resolved."""
    from lstmtext import api, data

    dev = str(REPO / "data" / "sentiment" / "dev.tsv")
    direct = api.evaluate(sentiment_ckpt, dev)
    seen = []
    monkeypatch.setattr(data, "resolve_source", lambda s: seen.append(s) or dev)
    assert api.evaluate(sentiment_ckpt, "sample:dev") == direct
    assert seen == ["sample:dev"]


def test_sentiment_load_sets_every_weight_from_the_checkpoint(sentiment_ckpt):
    import torch
    from safetensors.torch import load_file

    import lstmtext

    uniform = torch.nn.init.uniform_
    model = lstmtext.load(sentiment_ckpt).model
    assert torch.nn.init.uniform_ is uniform  # the random init skipped while building is back
    stored = load_file(str(sentiment_ckpt))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, stored[name], rtol=0, atol=0)


def test_sentiment_default_model_place_needs_no_path():
    train = run_cli("train", "sentiment", "--epochs", "1", "-q", *TINY)
    assert train.returncode == 0, train.stderr
    home = os.environ["LSTMTEXT_HOME"]
    assert os.path.exists(os.path.join(home, "models", "sentiment.ckpt"))
    pred = run_cli("predict", input="a gorgeous, witty film\n")
    assert pred.returncode == 0, pred.stderr
    assert pred.stdout.strip() in ("negative", "positive")


def test_sentiment_string_labels_and_csv_columns(tmp_path):
    data = tmp_path / "reviews.csv"
    rows = (
        ["review,stars"] + [f'"great film {i}",five' for i in range(30)] + [f'"awful film {i}",one' for i in range(30)]
    )
    rows += [f'"fine film {i}",three' for i in range(30)]
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "m.ckpt"
    proc = run_cli(
        "train",
        "sentiment",
        "--train",
        data,
        "--text-column",
        "review",
        "--label-column",
        "stars",
        "-o",
        out,
        "--epochs",
        "2",
        "-q",
        *TINY,
    )
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(run_cli("info", out, "--format", "json").stdout)
    assert meta["labels"] == ["five", "one", "three"]
    assert run_cli("predict", out, input="great film 3\n").stdout.strip() in meta["labels"]


def test_sentiment_interactive_pipe_answers_each_line_before_the_next(sentiment_ckpt):
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstmtext", "predict", str(sentiment_ckpt)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
        cwd=REPO,
    )
    try:
        for text in ("a wonderful film .", "a dull film ."):
            proc.stdin.write((text + "\n").encode())
            proc.stdin.flush()
            ready, _, _ = select.select([proc.stdout], [], [], 60)  # the answer comes while stdin stays open
            assert ready, "no answer before the next line was sent"
            assert proc.stdout.readline().decode().strip() in ("negative", "positive")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()


def test_sentiment_closed_pipe_downstream_exits_quietly(sentiment_ckpt, tmp_path):
    big = tmp_path / "many.txt"
    big.write_text("a wonderful film .\n" * 20000)
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'{sys.executable} -m lstmtext predict {sentiment_ckpt} {big} | head -1; echo "status=${{PIPESTATUS[0]}}"',
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=REPO,
        timeout=120,
    )
    first, status = proc.stdout.splitlines()
    assert first in ("negative", "positive")
    assert status == "status=0"  # quiet and successful: the reader chose to stop
    assert proc.stderr == ""


# -- bad input (DESIGN §8) ---------------------------------------------------------------------------------
def test_sentiment_bad_input_missing_file(sentiment_ckpt, tmp_path):
    assert_usage_error(
        run_cli("train", "sentiment", "--train", tmp_path / "nope.tsv", "-q"), "nope.tsv: file not found"
    )
    assert_usage_error(run_cli("evaluate", sentiment_ckpt, tmp_path / "nope.tsv"), "file not found")
    assert_usage_error(run_cli("predict", sentiment_ckpt, tmp_path / "nope.txt"), "file not found")
    assert_usage_error(run_cli("predict", tmp_path / "no.ckpt", "-"), "no.ckpt")


def test_sentiment_bad_input_precision(sentiment_ckpt):
    assert_usage_error(
        run_cli("predict", sentiment_ckpt, "--precision", "fp8", input="x\n"),
        "--precision",
        "'fp8' is not one of",
        "bf16",
    )
    assert_usage_error(
        run_cli("evaluate", sentiment_ckpt, SAMPLE_DEV, "--precision", "fp16"), "fp16 needs a CUDA device"
    )


def test_sentiment_bad_input_empty(sentiment_ckpt, tmp_path):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    assert_usage_error(run_cli("train", "sentiment", "--train", empty, "-q"), "empty.tsv", "empty")
    header_only = tmp_path / "header.tsv"
    header_only.write_text("sentence\tlabel\n\n\n")
    assert_usage_error(run_cli("train", "sentiment", "--train", header_only, "-q"), "no examples")
    assert_usage_error(run_cli("predict", sentiment_ckpt, input=""), "no input")


def test_sentiment_blank_lines_keep_alignment(sentiment_ckpt):
    proc = run_cli("predict", sentiment_ckpt, input="\n  \na wonderful film .\n\n")
    assert proc.returncode == 0
    lines = proc.stdout.split("\n")
    assert lines[:2] == ["", ""] and lines[2] in ("negative", "positive") and lines[3] == ""


def test_sentiment_non_utf8_input(sentiment_ckpt, tmp_path):
    proc = run_cli("predict", sentiment_ckpt, input=b"good film\nbad \xff film\n")
    assert_usage_error(proc, "stdin line 2", "UTF-8")
    assert proc.stdout.splitlines()[0] in ("negative", "positive")  # what came before the bad line was answered
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"sentence\tlabel\ngood\t1\nbad \xe9\t0\n")
    assert_usage_error(run_cli("train", "sentiment", "--train", bad, "-q"), "bad.tsv line 3", "UTF-8")


def test_sentiment_crlf_and_bom_read_like_plain_files(sentiment_ckpt, tmp_path):
    plain = SAMPLE_DEV.read_text()
    crlf = tmp_path / "dev_crlf.tsv"
    crlf.write_bytes(b"\xef\xbb\xbf" + plain.replace("\n", "\r\n").encode())
    a = json.loads(run_cli("evaluate", sentiment_ckpt, SAMPLE_DEV, "--format", "json").stdout)
    b = json.loads(run_cli("evaluate", sentiment_ckpt, crlf, "--format", "json").stdout)
    assert a["accuracy"] == b["accuracy"] and a["examples"] == b["examples"] == 200


def test_sentiment_one_megabyte_line(sentiment_ckpt):
    line = ("a wonderful film . " * 60000)[:1_000_000]
    proc = run_cli("predict", sentiment_ckpt, input=line + "\nshort\n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 2


def test_sentiment_unseen_labels_in_eval_data(sentiment_ckpt, tmp_path):
    data = tmp_path / "eval.tsv"
    data.write_text("sentence\tlabel\ngood film\tpositive\nmeh film\t2\n")
    assert_usage_error(run_cli("evaluate", sentiment_ckpt, data), "eval.tsv line 3", "label '2' was never seen")


def test_sentiment_truncated_and_foreign_checkpoints(sentiment_ckpt, tmp_path):
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(sentiment_ckpt.read_bytes()[:5000])
    assert_usage_error(run_cli("predict", cut, "-", input="good\n"), "truncated")
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    assert_usage_error(run_cli("evaluate", text, SAMPLE_DEV), "not an lstmtext checkpoint")
    assert_usage_error(run_cli("info", cut), "truncated")


def test_sentiment_output_exists_needs_force(sentiment_ckpt, tmp_path):
    out = tmp_path / "m.ckpt"
    out.write_bytes(b"precious")
    assert_usage_error(run_cli("train", "sentiment", "-o", out, "-q", *TINY), "exists", "--force")
    assert out.read_bytes() == b"precious"


def test_sentiment_unreachable_hf_dataset_is_one_line():
    proc = run_cli(
        "train", "sentiment", "--train", "hf:stanfordnlp/sst2", "-q", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"
    )
    assert_usage_error(proc, "hf:stanfordnlp/sst2", "local file")


def test_sentiment_help_is_fast_and_imports_no_torch():
    code = (
        "import sys\nfrom lstmtext import cli\nsys.argv=['lstmtext','--help']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', 'torch' in sys.modules, 'datasets' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=cli_env(), cwd=REPO)
    assert "HEAVY False False" in proc.stdout
    for command in ("train", "evaluate", "predict", "info"):
        help_text = run_cli(command, "--help").stdout
        assert "Example:" in help_text, command


def test_sentiment_hf_source_reads_class_label_names(monkeypatch):
    """The real `hf:` path down to datasets.load_dataset, with a local DatasetDict standing in for the hub."""
    import datasets

    from lstmtext.tasks import sentiment

    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["negative", "positive"])}
    )
    local = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(
                {"sentence": ["a fine film", "a dull film"], "label": [1, 0]}, features=features
            ),
            "validation": datasets.Dataset.from_dict({"sentence": ["fine"], "label": [1]}, features=features),
        }
    )
    asked = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: asked.append((name, config)) or local)
    rows = sentiment.read("hf:stanfordnlp/sst2", sentiment.Options(), "train")
    assert [(r["text"], r["label"]) for r in rows] == [("a fine film", "positive"), ("a dull film", "negative")]
    assert asked == [("stanfordnlp/sst2", None)]
    dev = sentiment.read("hf:glue:sst2@validation", sentiment.Options(), "train")
    assert [r["label"] for r in dev] == ["positive"] and asked[-1] == ("glue", "sst2")
    assert sentiment.read("hf:x", sentiment.Options(), "test")[0]["text"] == "fine"  # no test split: validation


def test_sentiment_tokenizer_commands_train_encode_decode(tmp_path, sentiment_ckpt):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"the film number {i} was good and the plot was dull .\n" for i in range(300)))
    model = tmp_path / "tok.model"
    trained = run_cli("tokenizer", "train", corpus, "-o", model, "--vocab-size", "300")
    assert trained.returncode == 0 and model.stat().st_size > 0, trained.stderr
    assert_usage_error(run_cli("tokenizer", "train", corpus, "-o", model), "exists", "--force")
    enc = run_cli("tokenizer", "encode", "-m", model, input="the plot was good ✓\n\n")
    ids = enc.stdout.splitlines()
    assert ids[0].split() and all(x.isdigit() for x in ids[0].split()) and ids[1] == ""
    dec = run_cli("tokenizer", "decode", "-m", model, input=enc.stdout)
    assert dec.stdout.splitlines() == ["the plot was good ✓", ""]
    pieces = run_cli("tokenizer", "encode", "-m", sentiment_ckpt, "--pieces", input="a wonderful film\n")
    assert "▁" in pieces.stdout  # a checkpoint's own tokenizer works too
    assert_usage_error(run_cli("tokenizer", "decode", "-m", model, input="1 2 x\n"), "integer ids")


# -- label names ---------------------------------------------------------------------------------------------
NAMES = ["--set", 'sentiment.label_names={ "0" = "negative", "1" = "positive" }']


def _with_ids(source, target):
    """The sample written as SST-2 is: 0 for negative, 1 for positive."""
    lines = source.read_text(encoding="utf-8").splitlines()
    rows = [line.rsplit("\t", 1) for line in lines[1:]]
    ids = {"negative": "0", "positive": "1"}
    target.write_text(lines[0] + "\n" + "".join(f"{text}\t{ids[label]}\n" for text, label in rows))
    return [(text, ids[label]) for text, label in rows]


def test_sentiment_label_names_name_the_ids_in_checkpoint_predictions_and_reports(tmp_path):
    train_ids, dev_ids = tmp_path / "train.tsv", tmp_path / "dev.tsv"
    _with_ids(REPO / "data" / "sentiment" / "train.tsv", train_ids)
    rows_ids = _with_ids(SAMPLE_DEV, dev_ids)
    out = tmp_path / "named.ckpt"
    train = run_cli("train", "sentiment", "--train", train_ids, "-o", out, "--epochs", "1", "-q", *TINY, *NAMES)
    assert train.returncode == 0, train.stderr
    meta = json.loads(run_cli("info", out, "--format", "json").stdout)
    assert meta["labels"] == ["negative", "positive"]
    assert meta["recipe"]["sentiment"]["label_names"] == {"0": "negative", "1": "positive"}

    texts = ["what a truly wonderful film !", "the plot is tedious and lifeless ."]
    pred = run_cli("predict", out, "--format", "jsonl", input="\n".join(texts) + "\n")
    assert pred.returncode == 0, pred.stderr
    rows = [json.loads(line) for line in pred.stdout.splitlines()]
    assert [set(r["scores"]) for r in rows] == [{"negative", "positive"}] * 2
    assert all(r["label"] in ("negative", "positive") for r in rows)

    # evaluation data with ids: the stored mapping reads them as the names the model knows
    by_id = run_cli("evaluate", out, dev_ids, "--format", "json")
    assert by_id.returncode == 0, by_id.stderr
    m = json.loads(by_id.stdout)
    gold = [label for _, label in rows_ids]
    assert m["examples"] == 200 and m["labels"] == ["negative", "positive"]
    assert {k: v["support"] for k, v in m["per_class"].items()} == {
        "negative": gold.count("0"),
        "positive": gold.count("1"),
    }
    table = run_cli("evaluate", out, dev_ids)
    assert "negative" in table.stderr and "positive" in table.stderr

    # the same data written with the names (the sample), and as JSONL with integer labels (IMDB's form)
    jsonl = tmp_path / "dev.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": int(y), "label_name": "x"}) + "\n" for t, y in rows_ids))
    for other in (SAMPLE_DEV, jsonl):
        again = run_cli("evaluate", out, other, "--format", "json")
        assert again.returncode == 0, again.stderr
        assert {k: v for k, v in json.loads(again.stdout).items() if k != "data"} == {
            k: v for k, v in m.items() if k != "data"
        }


def test_sentiment_checkpoint_without_label_names_loads_unchanged(sentiment_ckpt, tmp_path):
    """A checkpoint written before the option existed: its stored recipe has no label_names."""
    import lstmtext
    from lstmtext import checkpoint as ckpt

    meta, state = ckpt.load(sentiment_ckpt)
    del meta["recipe"]["sentiment"]["label_names"]
    old = tmp_path / "old.ckpt"
    kept = {k: v for k, v in meta.items() if k not in ("format", "format_version", "tokenizer")}
    ckpt.save(old, state, kept, ckpt.tokenizer_proto(meta))
    assert "label_names" not in ckpt.read_meta(old)["recipe"]["sentiment"]
    model = lstmtext.load(old)
    assert model.labels == ["negative", "positive"] and model.recipe.options.label_names == {}
    assert model.predict("what a truly wonderful film !")["label"] in ("negative", "positive")
    from lstmtext import api

    assert api.evaluate(old, str(SAMPLE_DEV)) == api.evaluate(sentiment_ckpt, str(SAMPLE_DEV))


def test_sentiment_label_names_in_recipes_and_on_the_command_line(tmp_path):
    from lstmtext.config import resolve_recipe
    from lstmtext.errors import UsageError

    for name in ("sst2", "imdb"):
        recipe = resolve_recipe("sentiment", REPO / "recipes" / f"{name}.toml")
        assert recipe.options.label_names == {"0": "negative", "1": "positive"}
    plain = resolve_recipe("sentiment", overrides=["sentiment.label_names=0=neg, 1 = pos"])
    assert plain.options.label_names == {"0": "neg", "1": "pos"}
    assert resolve_recipe("sentiment").options.label_names == {}

    path = tmp_path / "bad.toml"
    path.write_text('task = "sentiment"\n[sentiment]\nlabel_names = 3\n')
    with pytest.raises(UsageError) as e:
        resolve_recipe("sentiment", path)
    assert str(e.value) == (
        f'recipe {path} sentiment.label_names: expected a table such as {{ "0" = "negative", "1" = "positive" }}, got 3'
    )


def test_sentiment_label_names_of_a_wrong_type_are_one_line_errors():
    for value, fragment in (
        ('["negative", "positive"]', "sentiment.label_names: expected a table such as"),
        ("negative", "or 0=negative,1=positive, got 'negative'"),
        ('{ "0" = ["negative"] }', "sentiment.label_names.0: expected str, got ['negative']"),
        ('{ "0" = "" }', "sentiment.label_names: expected a non-empty label and name"),
    ):
        proc = run_cli("train", "sentiment", "-q", "--set", f"sentiment.label_names={value}")
        assert_usage_error(proc, fragment)
