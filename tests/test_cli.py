"""The command line's contract: one stderr line and exit 2 for every usage error, the exit codes of failures,
typed options reaching the library typed, choices read from the task modules, and a start-up without torch."""

from __future__ import annotations

import ast
import resource
import subprocess
import sys
import time
import types

import pytest
from conftest import REPO, assert_usage_error, cli_env, run_cli, run_process

import lstmtext
from lstmtext.errors import OutputClosed, TrainingStopped, UsageError


# -- usage errors: one line, exit 2 --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, fragments",
    [
        (["nosuch"], ["No such command 'nosuch'"]),
        (["trian", "sentiment"], ["No such command 'trian'", "Did you mean 'train'?"]),
        (["train", "sentiment", "--epoch", "3"], ["No such option: --epoch", "--epochs"]),
        (["evaluate", "model.ckpt"], ["Missing argument"]),
        (["train"], ["Missing argument"]),
        (["train", "sentimentt"], ["'sentimentt' is not one of 'sentiment', 'translate', 'lm', 'ner'"]),
        (["predict", "--format", "xml"], ["'--format'", "'xml' is not one of 'text', 'jsonl', 'conll', 'inline'"]),
        (["tag", "--format", "text"], ["'--format'", "'text' is not one of 'conll', 'jsonl', 'inline'"]),
        (["translate", "--format", "conll"], ["'--format'", "'conll' is not one of 'text', 'jsonl'"]),
        (["evaluate", "m.ckpt", "d.tsv", "--format", "csv"], ["'--format'", "'csv' is not one of 'table', 'json'"]),
        (["predict", "--device", "gpu"], ["'--device'", "'gpu' is not one of 'auto', 'cpu', 'cuda'"]),
        (["train", "lm", "--device", "tpu"], ["'--device'", "'tpu' is not one of 'auto', 'cpu', 'cuda'"]),
        (
            ["evaluate", "m.ckpt", "d.tsv", "--precision", "fp8"],
            ["'--precision'", "'fp8' is not one of 'auto', 'fp32'"],
        ),
        (["train", "sentiment", "--epochs", "three"], ["Invalid value for '--epochs'"]),
        (["translate", "--beam", "wide"], ["Invalid value for '--beam'"]),
        (
            ["tokenizer", "train", "in.txt", "-o", "t.model", "--model-type", "bpee"],
            ["'bpee' is not one of 'unigram', 'bpe'"],
        ),
        (["tokenizer", "nosuch"], ["No such command 'nosuch'"]),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, fragments):
    assert_usage_error(run_cli(*args), *fragments)


def test_usage_error_in_a_real_process_is_one_line_and_exit_2_before_torch_loads():
    proc = run_process("train", "sentiment", "--epoch", "3", "--device", "cpu")
    assert_usage_error(proc, "No such option: --epoch", "--epochs")
    assert proc.stdout == ""


def test_a_library_usage_error_is_one_line_and_exit_2(tmp_path):
    missing = tmp_path / "none.ckpt"
    proc = run_cli("info", missing)
    assert_usage_error(proc, str(missing))


def test_no_arguments_prints_the_help_on_stderr_and_exits_2():
    for args in ([], ["tokenizer"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, proc.stderr
        assert proc.stdout == ""
        assert "Usage: lstmtext" in proc.stderr
        assert "Commands" in proc.stderr


# -- version, help, completion -------------------------------------------------------------------------------
def test_version():
    proc = run_cli("--version")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, f"lstmtext {lstmtext.__version__}\n", "")


def test_help_lists_every_command_and_completion_and_each_command_has_an_example():
    proc = run_cli("--help")
    assert proc.returncode == 0 and proc.stderr == ""
    for name in (
        "train",
        "evaluate",
        "predict",
        "info",
        "average",
        "tag",
        "generate",
        "translate",
        "tokenizer",
        "tune",
        "--install-completion",
        "--show-completion",
        "--version",
    ):
        assert name in proc.stdout, name
    for command in (
        ["train"],
        ["evaluate"],
        ["predict"],
        ["info"],
        ["average"],
        ["tag"],
        ["generate"],
        ["translate"],
        ["inspect"],
        ["tune"],
        ["tokenizer", "train"],
        ["tokenizer", "encode"],
        ["tokenizer", "decode"],
        ["benchmark", "speed"],
    ):
        text = " ".join(run_cli(*command, "--help").stdout.split())
        assert "Example: " in text and f"lstmtext {' '.join(command)} " in text, command


def test_help_shows_the_choices_and_precision_help_comes_from_the_task_modules():
    train = run_cli("train", "--help").stdout
    assert "sentiment|translate|lm|ner" in train
    assert "--data-dir" in train
    predict = " ".join(run_cli("predict", "--help").stdout.split())
    assert "text | jsonl (sentiment, translate, lm)" in predict
    assert "conll | jsonl | inline | html (ner)" in predict
    from lstmtext.cli.common import all_precisions, precision_help

    text = precision_help()
    assert text.startswith("auto (bf16 on CUDA, fp32 on CPU) | fp32 | ")
    assert [part.split(" ")[0] for part in text.rstrip(".").split(" | ")] == list(all_precisions())


HELP_WITHOUT_TORCH = """
import sys
from lstmtext.cli.app import command
for args in (["--help"], ["train", "--help"], ["predict", "--help"], ["tokenizer", "--help"], ["tune", "--help"]):
    try:
        command().main(args, prog_name="lstmtext")
    except SystemExit as e:
        assert e.code == 0, (args, e.code)
heavy = sorted(m for m in ("torch", "datasets", "optuna", "lstmtext.train", "lstmtext.training",
                           "lstmtext.api", "lstmtext.model") if m in sys.modules)
print("HEAVY", heavy, file=sys.stderr)
"""


def test_help_imports_no_torch():
    proc = subprocess.run(
        [sys.executable, "-c", HELP_WITHOUT_TORCH], capture_output=True, text=True, env=cli_env(), cwd=REPO, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stderr


def test_help_starts_fast():
    """CPU time is the bound that holds on a busy machine; the wall-clock bound is the best of three runs."""
    walls, cpus = [], []
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "lstmtext", "--help"], capture_output=True, env=cli_env(), cwd=REPO, timeout=60
        )
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        assert proc.returncode == 0
    assert min(cpus) < 0.75, cpus
    assert min(walls) < 3.0, walls


# -- layering ------------------------------------------------------------------------------------------------
def _top_level_lstmtext_imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:  # module level only: command bodies import what they run
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lstmtext"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("lstmtext"))
    return names


def test_cli_modules_import_downward_only():
    cli = REPO / "lstmtext" / "cli"
    commands = {
        "train",
        "evaluate",
        "predict",
        "info",
        "average",
        "ensemble",
        "tag",
        "generate",
        "translate",
        "tokenizer",
        "inspect",
        "plot",
        "benchmark",
        "export",
        "tune",
    }
    assert {p.stem for p in cli.glob("*.py")} == commands | {"__init__", "app", "common"}
    assert _top_level_lstmtext_imports(cli / "common.py") <= {"lstmtext.errors"}
    for name in commands:
        assert _top_level_lstmtext_imports(cli / f"{name}.py") <= {"lstmtext.cli.common", "lstmtext.errors"}, name
    assert _top_level_lstmtext_imports(cli / "app.py") == {"lstmtext.cli", "lstmtext.cli.common", "lstmtext.errors"}
    assert _top_level_lstmtext_imports(cli / "__init__.py") == {"lstmtext.cli.app"}
    assert not [
        name
        for name in ("cli.py", "cli_ner.py", "cli_lm.py", "cli_translate.py")
        if (REPO / "lstmtext" / name).exists()
    ]


# -- failures: exit codes and one line -----------------------------------------------------------------------
@pytest.mark.parametrize(
    "error, code, line",
    [
        (UsageError("bad input: x.tsv line 3"), 2, "lstmtext: error: bad input: x.tsv line 3\n"),
        (TrainingStopped("loss is NaN at step 7"), 2, "lstmtext: error: loss is NaN at step 7\n"),
        (KeyboardInterrupt(), 130, "lstmtext: error: interrupted\n"),
        (BrokenPipeError(), 0, ""),
        (OutputClosed(), 0, ""),
        (
            RuntimeError("boom\nsecond line"),
            1,
            "lstmtext: error: RuntimeError: boom (set LSTMTEXT_DEBUG=1 for the traceback)\n",
        ),
    ],
)
def test_failures_give_one_line_and_their_exit_code(monkeypatch, error, code, line):
    import lstmtext.api

    def average(*args):
        raise error

    monkeypatch.setattr(lstmtext.api, "average", average)
    proc = run_cli("average", "a.ckpt", "b.ckpt", "-o", "soup.ckpt")
    assert (proc.returncode, proc.stderr, proc.stdout) == (code, line, "")


def test_debug_raises_the_exception_with_its_traceback(monkeypatch):
    import lstmtext.api

    def average(*args):
        raise RuntimeError("boom")

    monkeypatch.setattr(lstmtext.api, "average", average)
    with pytest.raises(RuntimeError, match="boom"):
        run_cli("average", "a.ckpt", "b.ckpt", "-o", "soup.ckpt", LSTMTEXT_DEBUG="1")


def test_training_interrupted_exits_130_with_its_message(monkeypatch):
    import lstmtext.training as training

    def train(*args, **kwargs):
        raise training.Interrupted("interrupted: resume with --resume")

    monkeypatch.setattr(training, "train", train)
    proc = run_cli("train", "sentiment", "-q")
    assert (proc.returncode, proc.stderr) == (130, "lstmtext: error: interrupted: resume with --resume\n")


# -- typed options travel typed ------------------------------------------------------------------------------
@pytest.fixture
def training_calls(monkeypatch):
    import os

    from lstmtext.cli import train as command

    calls = []

    def run_training(task, recipe, **kwargs):
        calls.append({"task": task, "recipe": recipe, "LSTMTEXT_DATA": os.environ.get("LSTMTEXT_DATA"), **kwargs})
        return {"best": {"accuracy": 0.75}, "main_metric": "accuracy"}

    monkeypatch.setattr(command, "run_training", run_training)
    return calls


def test_train_passes_typed_options_as_settings_and_only_set_strings_as_overrides(training_calls, tmp_path):
    proc = run_cli(
        "train",
        "sentiment",
        "--train",
        "a b.tsv",
        "--dev",
        "dev.tsv",
        "--epochs",
        "3",
        "--seed",
        "1",
        "--max-time",
        "20m",
        "--device",
        "cpu",
        "--text-column",
        "review",
        "--label-column",
        "stars",
        "--set",
        "train.lr=0.001",
        "--set",
        'data.train="x=y"',
        "-o",
        tmp_path / "m.ckpt",
        "--force",
        "--data-dir",
        tmp_path / "data",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "best validation accuracy: 0.7500\n"
    assert training_calls == [
        {
            "task": "sentiment",
            "recipe": None,
            "LSTMTEXT_DATA": str(tmp_path / "data"),
            "settings": {
                "data.train": ["a b.tsv"],
                "data.dev": "dev.tsv",
                "train.epochs": 3,
                "train.max_time": "20m",
                "train.seed": 1,
                "train.device": "cpu",
                "sentiment.text_column": "review",
                "sentiment.label_column": "stars",
            },
            "overrides": ["train.lr=0.001", 'data.train="x=y"'],
            "out": tmp_path / "m.ckpt",
            "init_from": None,
            "resume": False,
            "force": True,
            "show_progress": True,
        }
    ]


def test_train_without_options_passes_no_settings_and_a_named_recipe_becomes_its_path(training_calls):
    proc = run_cli("train", "translate", "--recipe", "nosuch-recipe", "--source-lang", "de", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # --quiet
    call = training_calls[0]
    assert (call["task"], call["recipe"], call["settings"], call["overrides"], call["show_progress"]) == (
        "translate",
        "nosuch-recipe",
        {"translate.source_lang": "de"},
        [],
        False,
    )
    assert call["LSTMTEXT_DATA"] is None or call["LSTMTEXT_DATA"] == cli_env().get("LSTMTEXT_DATA")


def test_data_dir_is_the_run_s_alone(training_calls, tmp_path):
    import os

    before = os.environ.get("LSTMTEXT_DATA")
    run_cli("train", "ner", "-q", "--data-dir", tmp_path)
    assert training_calls[0]["LSTMTEXT_DATA"] == str(tmp_path)
    assert os.environ.get("LSTMTEXT_DATA") == before  # run_cli puts the environment back


# -- choices come from lstmtext.tasks.TASKS when the command line is parsed ---------------------------------
def test_a_task_added_to_TASKS_is_a_choice_with_its_formats(monkeypatch, training_calls):
    from lstmtext import tasks
    from lstmtext.tasks import sentiment

    toy = types.ModuleType("toy_task_for_cli")
    toy.__dict__.update({k: v for k, v in vars(sentiment).items() if not k.startswith("__")})
    toy.NAME, toy.FORMATS = "toy", ("tsv", "jsonl")
    monkeypatch.setitem(sys.modules, "toy_task_for_cli", toy)
    monkeypatch.setitem(tasks.TASKS, "toy", "toy_task_for_cli")
    assert run_cli("train", "toy", "-q").returncode == 0
    assert training_calls[0]["task"] == "toy"
    assert "toy" in run_cli("train", "--help").stdout
    # tsv is a choice now; the command goes on to look for a model
    assert_usage_error(run_cli("predict", "--format", "tsv", input="x\n"), "no model given")
    monkeypatch.delitem(tasks.TASKS, "toy")
    assert_usage_error(run_cli("train", "toy"), "'toy' is not one of")


# -- predict: the loaded model's task decides the format -----------------------------------------------------
def test_predict_format_of_another_task_names_the_model_s_formats(sentiment_ckpt):
    proc = run_cli("predict", sentiment_ckpt, "--format", "conll", input="a fine film\n")
    assert_usage_error(proc, "--format conll: a sentiment model writes text or jsonl")


def test_typer_s_cli_runner_goes_through_the_same_error_handling():
    from typer.testing import CliRunner

    from lstmtext.cli import app

    try:
        runner = CliRunner(mix_stderr=False)  # Typers on Click before 8.2 mix stderr in by default
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(app, ["train", "sentiment", "--epoch", "3"])
    assert result.exit_code == 2
    assert result.stderr.startswith("lstmtext: error: No such option: --epoch ") and result.stderr.count("\n") == 1
