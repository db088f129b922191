"""The task contract (lstmtext/tasks/contract.py): every task in TASKS satisfies it, behaves the same through a
saved checkpoint as in process, and a new task needs nothing outside its own module and its TASKS line."""

from __future__ import annotations

import dataclasses
import json

import pytest
from conftest import REPO, TINY, assert_usage_error, run_cli

import lstmtext
from lstmtext.tasks import TASKS, get_task
from lstmtext.tasks.contract import PREDICTOR_CLASS_MEMBERS, PREDICTOR_MEMBERS, TASK_MEMBERS, Predictor, Task

# One blank and one whitespace-only line among real ones: their results stay in place.
INPUTS = {
    "sentiment": ["a truly riveting film .", "", "the plot was dull .", "   "],
    "ner": ["John lives in Paris .", "", "Mary works for Acme in Berlin .", "   "],
    "lm": ["The film", "", "The history of", "   "],
    "translate": ["ein mann .", "", "eine frau spielt .", "   "],
}
EXPECTED_MEMBERS = {
    "NAME",
    "MAIN_METRIC",
    "HIGHER_IS_BETTER",
    "FORMATS",
    "PRECISIONS",
    "SPEED_UNIT",
    "EVAL_OPTIONS",
    "Options",
    "DEFAULTS",
    "Predictor",
    "validate",
    "read",
    "tokenizer_texts",
    "make_labels",
    "featurize",
    "collate",
    "build_model",
    "trained_weights",
    "init_from",
    "ensemble",
    "evaluate",
    "summary",
    "report",
    "plots",
}


# -- (a) every module satisfies the protocol ---------------------------------------------------------------
def test_the_protocol_lists_every_member():
    assert set(TASK_MEMBERS) == EXPECTED_MEMBERS
    assert set(PREDICTOR_MEMBERS) == {
        "task",
        "stream_batch",
        "batch_tokens",
        "model",
        "tok",
        "labels",
        "recipe",
        "device",
        "predict",
        "format",
        "header",
        "footer",
        "explain_formats",
        "show_attention",
    }
    assert set(PREDICTOR_CLASS_MEMBERS) == {
        "task",
        "stream_batch",
        "batch_tokens",
        "predict",
        "format",
        "header",
        "footer",
        "explain_formats",
        "show_attention",
    }


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_task_module_is_a_task(name):
    mod = get_task(name)
    assert isinstance(mod, Task)
    assert name == mod.NAME and mod.Predictor.task == name
    assert all(hasattr(mod.Predictor, m) for m in PREDICTOR_CLASS_MEMBERS)
    assert isinstance(mod.HIGHER_IS_BETTER, bool) and mod.FORMATS and set(mod.PRECISIONS) >= {"auto", "fp32"}
    assert ("int8" in mod.PRECISIONS) == (name in ("sentiment", "ner"))
    assert {"sentiment": "words", "ner": "words", "lm": "pieces", "translate": "sentences"}[name] == mod.SPEED_UNIT
    mod.validate(mod.Options())  # the defaults are valid
    # what evaluate --set may change are fields of the task's own options
    assert set(mod.EVAL_OPTIONS) <= {f.name for f in dataclasses.fields(mod.Options)}


def test_get_task_names_the_missing_members(monkeypatch):
    monkeypatch.setitem(TASKS, "broken", "conftest")
    with pytest.raises(
        TypeError,
        match=r"task module conftest lacks NAME, MAIN_METRIC, .*init_from, ensemble, evaluate, summary, report, plots",
    ):
        get_task("broken")


def test_get_task_names_a_streamed_tasks_missing_members(monkeypatch):
    import sys
    import types

    from lstmtext.tasks import lm

    half = types.ModuleType("half_streamed")
    half.__dict__.update({k: v for k, v in vars(lm).items() if k != "stream_batches" and not k.startswith("__")})
    monkeypatch.setitem(sys.modules, "half_streamed", half)
    monkeypatch.setitem(TASKS, "half", "half_streamed")
    with pytest.raises(TypeError, match=r"^task module half_streamed streams but lacks stream_batches \(the Streamed"):
        get_task("half")


# -- (b) one contract run over every task ------------------------------------------------------------------
@pytest.fixture(scope="module", params=sorted(TASKS))
def trained(request, tmp_path_factory):
    name = request.param
    out = tmp_path_factory.mktemp(name) / f"{name}.ckpt"
    proc = run_cli("train", name, "-o", out, "--epochs", "1", "-q", *TINY, LSTMTEXT_HOME=str(out.parent / "home"))
    assert proc.returncode == 0, proc.stderr
    return name, out


def test_a_saved_model_predicts_as_the_cli_does(trained, tmp_path):
    name, ckpt = trained
    p = lstmtext.load(ckpt)
    assert isinstance(p, Predictor) and p.task == name
    lines = INPUTS[name]
    results = p.predict(lines)
    assert len(results) == len(lines)
    for i in (1, 3):  # blank lines: None, or an empty result (NER's tokens and tags)
        assert results[i] is None or (results[i]["tokens"] == [] and results[i]["entities"] == []), results[i]
    assert results[0] is not None and results[2] is not None
    assert p.predict(lines[0]) == results[0]  # one string in, its one result out
    fmt = get_task(name).FORMATS[0]
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = run_cli("predict", ckpt, src, "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "".join(p.format(t, r, fmt) + "\n" for t, r in zip(lines, results))


def test_a_bad_data_file_is_one_usage_error(trained, tmp_path):
    _, ckpt = trained
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    assert_usage_error(run_cli("evaluate", ckpt, empty), str(empty))


# -- (c) a new task is one module and one TASKS line -------------------------------------------------------
def test_a_toy_task_runs_through_the_real_cli(monkeypatch, tmp_path):
    """A new task is a module, a TASKS line, a recipe and a sample in data/. This exercises the first three with
    no other change to lstmtext: the module (tests/toy_task.py), its TASKS line (monkeypatched in) and a recipe
    (written here, read by --recipe) train, evaluate and predict through the CLI app. For the fourth, --train
    points at the sentiment sample, whose text the toy reads, where its own data/toy/train.tsv would be the
    default."""
    from typer.testing import CliRunner

    from lstmtext.cli import app

    monkeypatch.setitem(TASKS, "toy", "toy_task")
    assert isinstance(get_task("toy"), Task)
    runner = CliRunner()
    out = tmp_path / "toy.ckpt"
    sample = str(REPO / "data" / "sentiment" / "train.tsv")
    recipe = tmp_path / "toy.toml"
    recipe.write_text('task = "toy"\n[toy]\nscale = 8.0\n[train]\nepochs = 2\n', encoding="utf-8")
    res = runner.invoke(app, ["train", "toy", "--recipe", str(recipe), "--train", sample, "-o", str(out), "-q", *TINY])
    assert res.exit_code == 0, (res.output, res.exception)
    meta = json.loads(runner.invoke(app, ["info", str(out), "--format", "json"]).stdout)
    assert meta["task"] == "toy" and meta["recipe"]["toy"] == {"text_column": "", "scale": 8.0}
    assert meta["recipe"]["train"]["epochs"] == 2 and meta["recipe"]["train"]["lr"] == 0.01  # recipe, DEFAULTS
    res = runner.invoke(app, ["evaluate", str(out), str(REPO / "data" / "sentiment" / "dev.tsv"), "--format", "json"])
    assert res.exit_code == 0, (res.output, res.exception)
    metrics = json.loads(res.stdout)
    dev_lines = (REPO / "data" / "sentiment" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    assert metrics["examples"] == len([line for line in dev_lines if line.strip()])
    assert metrics["mae"] < 3.0  # it learned the scale: predicting 0 words is off by 7.7 on average
    src = tmp_path / "in.txt"
    src.write_text("one two three\n\nfour five six seven eight\n", encoding="utf-8")
    res = runner.invoke(app, ["predict", str(out), str(src), "--format", "jsonl"])
    assert res.exit_code == 0, (res.output, res.exception)
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["one two three", "", "four five six seven eight"]
    assert rows[1]["words"] is None and all(isinstance(rows[i]["words"], float) for i in (0, 2))
    p = lstmtext.load(out)
    assert [r["words"] for r in rows] == p.predict(["one two three", "", "four five six seven eight"])
