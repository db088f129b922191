"""``lstmtext benchmark speed``: rows per (precision, threads), unit counts, the confidence interval, refusals."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from lstmtext import speed
from tests.conftest import assert_usage_error, run_cli

LINES = ["a truly riveting film .", "the plot was dull", "", "   ", "one"]  # 5 + 4 + 1 words, 3 inputs


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "in.txt"
    path.write_text("\n".join(LINES) + "\n")
    return path


def test_t_quantiles_and_the_interval_match_known_values():
    assert speed.t95(1) == 12.706 and speed.t95(4) == 2.776 and speed.t95(30) == 2.042 and speed.t95(100) == 1.96
    lo, hi = speed.ci95([1.0, 2.0, 3.0])  # mean 2, sd 1, t(2) = 4.303: 2 -/+ 4.303 / sqrt(3)
    assert lo == pytest.approx(2 - 4.303 / math.sqrt(3)) and hi == pytest.approx(2 + 4.303 / math.sqrt(3))
    with pytest.raises(ValueError):
        speed.t95(0)


def test_inputs_and_units(tmp_path, data):
    texts = speed.read_inputs(str(data))
    assert texts == ["a truly riveting film .", "the plot was dull", "one"]
    assert speed.count_units("words", texts, [None] * 3, None) == 10
    assert speed.count_units("sentences", texts, [None] * 3, None) == 3
    conll = tmp_path / "x.conll"
    conll.write_text("-DOCSTART- O\n\nJohn B-PER\nlives O\n\nParis B-LOC\n.\tO\n")
    assert speed.read_inputs(str(conll)) == ["John lives", "Paris ."]


def test_json_has_one_row_per_precision_and_thread_count(sentiment_ckpt, data):
    proc = run_cli(
        "benchmark", "speed", sentiment_ckpt, data, "--precision", "fp32,int8", "--threads", "1,2",
        "--repeats", "3", "--warmup", "0", "--format", "json", "--end-to-end",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["machine"]["threads"] == [1, 2] and out["machine"]["cpu"] and out["machine"]["torch"]
    timed = [r for r in out["rows"] if not r.get("end_to_end")]
    assert [(r["precision"], r["threads"]) for r in timed] == [("fp32", 1), ("fp32", 2), ("int8", 1), ("int8", 2)]
    for r in timed:
        assert r["unit"] == "words" and r["units"] == 10 and r["passes"] == 3 and len(r["per_pass"]) == 3
        assert all(v > 0 for v in r["per_pass"])
        assert r["mean"] == pytest.approx(statistics.fmean(r["per_pass"]))
        assert r["median"] == pytest.approx(statistics.median(r["per_pass"]))
        half = 4.303 * statistics.stdev(r["per_pass"]) / math.sqrt(3)
        assert r["ci95"] == pytest.approx([r["mean"] - half, r["mean"] + half])
        assert r["ci95"][0] <= r["mean"] <= r["ci95"][1]
    (e2e,) = [r for r in out["rows"] if r.get("end_to_end")]
    assert (e2e["precision"], e2e["threads"], e2e["unit"], e2e["units"]) == ("fp32", 1, "lines", 3)
    assert len(e2e["per_pass"]) == 3 and e2e["best_seconds"] > 0 and e2e["mean"] > 0


def test_table_goes_to_stderr(sentiment_ckpt, data):
    proc = run_cli("benchmark", "speed", sentiment_ckpt, data, "--repeats", "2", "--end-to-end")
    assert proc.returncode == 0 and proc.stdout == ""
    assert "lines/s (end to end, best " in proc.stderr
    assert "words/s" in proc.stderr and "fp32" in proc.stderr and "95 % CI" in proc.stderr


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--repeats", "1"], ["--repeats 1", "at least 2"]),
        (["--precision", "fp32,fp8"], ["--precision fp8", "expected one of", "int8"]),
        (["--precision", ","], ["--precision", "comma-separated"]),
        (["--threads", "0"], ["--threads 0", "positive whole numbers"]),
    ],
)
def test_refusals(sentiment_ckpt, data, args, fragments):
    assert_usage_error(run_cli("benchmark", "speed", sentiment_ckpt, data, *args), *fragments)


def test_refuses_a_missing_checkpoint_and_empty_data(sentiment_ckpt, tmp_path, data):
    assert_usage_error(run_cli("benchmark", "speed", tmp_path / "none.ckpt", data), "none.ckpt", "not found")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    assert_usage_error(run_cli("benchmark", "speed", sentiment_ckpt, empty), "empty.txt", "no input lines")


def test_int8_is_refused_for_a_task_without_it(monkeypatch, sentiment_ckpt, data):
    from lstmtext.tasks import sentiment

    monkeypatch.setattr(sentiment, "PRECISIONS", ("auto", "fp32", "bf16", "fp16"))
    proc = run_cli("benchmark", "speed", sentiment_ckpt, data, "--precision", "int8", "--repeats", "2")
    assert_usage_error(proc, "--precision int8", "a sentiment model runs in auto, fp32, bf16, fp16")


def test_pieces_are_counted_from_the_generated_continuations():
    class Tok:
        def encode_one(self, text):
            return list(text)  # one piece per character

    results = [{"continuation": "abc"}, None, {"continuation": ""}, {"continuation": "de"}]
    assert speed.count_units("pieces", ["p", "", "q", "r"], results, Tok()) == 5
