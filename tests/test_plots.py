"""Pictures: ``lstmtext plot`` (training curves from metrics logs) and ``lstmtext evaluate --plot DIR`` (each
task's charts). Each picture is checked as a file (PNG signature, more than one colour) and by the data drawn
in it (the PNG's ``lstmtext-data`` chunk), which must equal what the metrics log or the evaluation says."""

from __future__ import annotations

import json
import math

import pytest
from conftest import REPO, TINY, assert_usage_error, run_cli

from lstmtext.tasks.common import length_buckets
from lstmtext.viz.charts import read_data

PNG = b"\x89PNG\r\n\x1a\n"


def small(src, dst, lines: int):
    dst.write_text("".join(src.read_text(encoding="utf-8").splitlines(keepends=True)[:lines]), encoding="utf-8")
    return dst


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Tiny NER and translation models, each trained on a slice of its sample (seconds each), with their
    metrics logs."""
    d = tmp_path_factory.mktemp("plots")
    train = {
        "ner": small(REPO / "data/ner/train.conll", d / "ner_train.conll", 800),
        "translate": small(REPO / "data/translate/train.tsv", d / "tr_train.tsv", 121),
    }
    dev = {
        "ner": small(REPO / "data/ner/dev.conll", d / "ner_dev.conll", 400),
        "translate": small(REPO / "data/translate/dev.tsv", d / "tr_dev.tsv", 21),
    }
    out = {}
    for task, epochs in (("ner", "2"), ("translate", "1")):  # two evaluations make a curve
        ckpt = d / f"{task}.ckpt"
        proc = run_cli(
            "train", task, "--train", train[task], "--dev", dev[task], "-o", ckpt, "--epochs", epochs, "-q", *TINY,
            LSTMTEXT_HOME=str(d / "home"),
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        out[task] = (ckpt, dev[task], d / f"{task}.metrics.jsonl")
    return out


def rows_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_picture(path):
    """A real PNG with more than one colour in it (not blank)."""
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == PNG
    pixels = imread(path)
    flat = pixels.reshape(-1, pixels.shape[-1])
    assert len({tuple(p) for p in flat[:: max(1, len(flat) // 20000)].tolist()}) > 10


# -- lstmtext plot -----------------------------------------------------------------------------------------
def test_plot_overlays_runs_and_its_json_is_the_logs(runs, sentiment_ckpt, tmp_path):
    logs = [runs["ner"][2], sentiment_ckpt.with_name("tiny.metrics.jsonl")]
    png = tmp_path / "out" / "curves.png"
    proc = run_cli("plot", *logs, "-o", png, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {png}" in proc.stderr
    assert_picture(png)
    data = json.loads(proc.stdout)
    assert read_data(png) == data  # the picture carries exactly the data printed
    assert data["x"] == "steps" and [r["name"] for r in data["runs"]] == ["ner", "tiny"]
    ner_rows, sentiment_rows = rows_of(logs[0]), rows_of(logs[1])
    assert (len(ner_rows), len(sentiment_rows)) == (2, 3)  # one evaluation per epoch
    dev_keys = ["dev_loss", "dev_precision", "dev_recall", "dev_f1", "dev_accuracy", "dev_macro_f1"]
    assert data["series"] == ["train_loss", *dev_keys, "tokens_per_s"]
    for run, rows in zip(data["runs"], (ner_rows, sentiment_rows)):
        assert run["evaluations"] == len(rows)
        assert run["x"] == [r["step"] for r in rows]
        for key in data["series"]:  # a metric the run does not log is None at each evaluation
            assert run["series"][key] == [r.get(key) for r in rows]
        assert run["last"] == rows[-1]
        kept = [i for i, r in enumerate(rows) if r["best"]]
        assert run["best_index"] == kept[-1] and run["best"] == rows[kept[-1]]


def test_plot_over_minutes_and_the_table_fallback(runs):
    log = runs["ner"][2]
    rows = rows_of(log)
    proc = run_cli("plot", log, "--x", "minutes", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runs"][0]["x"] == [r["time"] / 60 for r in rows]
    table = run_cli("plot", log)  # no -o: a table on stderr, nothing on stdout
    assert table.returncode == 0 and table.stdout == ""
    assert "ner: 2 evaluations" in table.stderr and "best (kept)" in table.stderr
    assert f"{rows[-1]['dev_f1']:.4f}" in table.stderr


def test_plot_refuses_what_is_not_a_metrics_log(tmp_path):
    (tmp_path / "empty.jsonl").write_text("\n")
    (tmp_path / "text.jsonl").write_text('{"step": 1}\nnot json\n')
    (tmp_path / "list.jsonl").write_text("[1, 2]\n")
    (tmp_path / "ok.jsonl").write_text('{"step": 1, "train_loss": NaN}\n')
    assert_usage_error(run_cli("plot", tmp_path / "missing.jsonl"), "missing.jsonl: no such file")
    assert_usage_error(run_cli("plot", tmp_path / "empty.jsonl"), "empty.jsonl: no evaluation rows")
    assert_usage_error(run_cli("plot", tmp_path / "text.jsonl"), "text.jsonl line 2: not JSON")
    assert_usage_error(run_cli("plot", tmp_path / "list.jsonl"), "list.jsonl line 1: not a metrics row")
    assert_usage_error(run_cli("plot", tmp_path), "is a folder")
    assert_usage_error(run_cli("plot", tmp_path / "ok.jsonl", "-o", tmp_path / "c.gif"), ".png, .svg, .pdf")
    # a NaN loss (an evaluation before any step) is JSON's null
    proc = run_cli("plot", tmp_path / "ok.jsonl", "-f", "json")
    assert json.loads(proc.stdout)["runs"][0]["series"]["train_loss"] == [None]


# -- lstmtext evaluate --plot ------------------------------------------------------------------------------
def evaluate_with_plot(ckpt, data, out):
    proc = run_cli("evaluate", ckpt, data, "--format", "json", "--plot", out)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout), proc.stderr


def test_sentiment_confusion_matrix(sentiment_ckpt, tmp_path):
    metrics, err = evaluate_with_plot(sentiment_ckpt, REPO / "data/sentiment/dev.tsv", tmp_path / "pics")
    png = tmp_path / "pics" / "confusion.png"
    assert sorted(p.name for p in (tmp_path / "pics").iterdir()) == ["confusion.png"]
    assert f"wrote {png}" in err
    assert_picture(png)
    assert read_data(png) == {"labels": metrics["labels"], "confusion": metrics["confusion"]}
    assert sum(map(sum, metrics["confusion"])) == metrics["examples"] == 200


def test_ner_per_type_bars(runs, tmp_path):
    ckpt, dev, _ = runs["ner"]
    metrics, _ = evaluate_with_plot(ckpt, dev, tmp_path)
    png = tmp_path / "per_type.png"
    assert_picture(png)
    assert read_data(png) == metrics["per_type"] and set(metrics["per_type"]) == {"LOC", "MISC", "ORG", "PER"}


def test_translation_bleu_by_source_length(runs, tmp_path):
    ckpt, dev, _ = runs["translate"]
    metrics, _ = evaluate_with_plot(ckpt, dev, tmp_path)
    png = tmp_path / "bleu_by_length.png"
    assert_picture(png)
    buckets = metrics["by_length"]
    assert read_data(png) == buckets
    sources = [line.split("\t")[0] for line in dev.read_text().splitlines()[1:]]
    assert [(b["bucket"], b["sentences"]) for b in buckets] == [
        (name, len(idx)) for name, idx in length_buckets([len(s.split()) for s in sources])
    ]
    assert sum(b["sentences"] for b in buckets) == metrics["examples"] == 20
    assert all(0.0 <= b["bleu"] <= 100.0 and math.isfinite(b["bleu"]) for b in buckets)


def test_length_buckets():
    assert length_buckets([3, 5, 6, 12, 61, 1, 200, 40]) == [
        ("1-5", [0, 1, 5]),
        ("6-10", [2]),
        ("11-15", [3]),
        ("31-40", [7]),
        ("61+", [4, 6]),
    ]
    assert length_buckets([]) == []


def test_language_model_evaluations_draw_no_picture(tmp_path, capsys):
    from lstmtext.tasks import get_task

    assert get_task("lm").plots({"ppl_word": 10.0}, tmp_path) == []
    assert list(tmp_path.iterdir()) == []
    assert "has no picture" in capsys.readouterr().err


def test_evaluate_plot_refuses_a_file(sentiment_ckpt, tmp_path):
    (tmp_path / "f.png").write_text("")
    proc = run_cli("evaluate", sentiment_ckpt, REPO / "data/sentiment/dev.tsv", "--plot", tmp_path / "f.png")
    assert_usage_error(proc, "--plot", "is a file")


def test_bleu_by_length_is_sacrebleu_on_each_bucket(monkeypatch):
    """Known answers: the decoder "outputs" fixed hypotheses; each bucket's score is sacreBLEU's corpus BLEU on
    exactly the pairs whose source has that many words."""
    import sacrebleu
    import torch

    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import translate as T
    from lstmtext.tokenizer import Tokenizer

    torch.manual_seed(0)
    recipe = resolve_recipe(
        "translate", None, ["encoder.embed_dim=16", "encoder.hidden_dim=16", "translate.hidden_dim=16"]
    )
    examples = T.read(str(REPO / "data" / "translate" / "train.tsv"), recipe.options)[:300]
    tok = Tokenizer.train(T.tokenizer_texts(examples), 400, "bpe")
    model = T.build_model(recipe, len(tok), []).eval()
    pairs = [  # (source words, reference, hypothesis)
        (3, "A dog runs .", "A dog runs ."),
        (12, "Two men are playing music on a busy street at night .", "Two men play music on a street ."),
        (4, "A cat is sleeping .", "A cat sleeps ."),
        (8, "A woman is singing on a stage .", "A woman is singing on a stage ."),
    ]
    feats = T.featurize([{"source": " ".join(["Wort"] * n), "target": r} for n, r, _ in pairs], tok, [], recipe)
    encoded = [tok.encode_one(h) for _, _, h in pairs]
    monkeypatch.setattr(T, "decode", lambda model, features, *a, **k: [[(ids, 0.0)] for ids in encoded])
    got = T.evaluate(model, feats, [], torch.device("cpu"), 4096, tok)["by_length"]

    def bleu(rows):
        return sacrebleu.corpus_bleu([pairs[i][2] for i in rows], [[pairs[i][1] for i in rows]]).score

    assert got == [
        {"bucket": "1-5", "sentences": 2, "bleu": bleu([0, 2])},
        {"bucket": "6-10", "sentences": 1, "bleu": bleu([3])},
        {"bucket": "11-15", "sentences": 1, "bleu": bleu([1])},
    ]
    assert got[1]["bleu"] == pytest.approx(100.0)
