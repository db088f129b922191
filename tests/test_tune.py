"""``lstmtext tune``: an Optuna study over a recipe's [tune.space], on the embedded sentiment sample with a tiny
encoder. Each trial is two epochs of 18 steps, evaluated every 10 steps, so a study of a few trials takes seconds."""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import pytest

from lstmtext.errors import UsageError
from tests.conftest import assert_usage_error, run_cli

optuna = pytest.importorskip("optuna")

RECIPE = """
task = "sentiment"
[encoder]
embed_dim = 32
hidden_dim = 32
[tokenizer]
vocab_size = 400
[train]
batch_tokens = 2000
epochs = 2
eval_every = 10
[tune]
trials = 3
startup_trials = 1
[tune.space]
train.lr = { low = 1e-3, high = 1e-2, log = true }
"encoder.dropout" = { low = 0.1, high = 0.5 }
sentiment = { pooling = { choices = ["max", "mean"] } }
"""
STEPS = 36  # 2 epochs of the sample at 2000 tokens a batch: the fraction of a run is step / 36


def write_recipe(folder: Path, text: str = RECIPE) -> Path:
    path = folder / "tiny.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load(db: Path):
    return optuna.load_study(study_name="lstmtext", storage=f"sqlite:///{db}")


def reported(rows: list[dict]) -> dict[int, float]:
    """What a trial reports to Optuna: its dev accuracy at the first evaluation in each tenth of its run."""
    out: dict[int, float] = {}
    for row in rows:
        out.setdefault(min(10, int(row["step"] / STEPS * 10)), row["dev_accuracy"])
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study of 3 trials, then continued with 2 more."""
    folder = tmp_path_factory.mktemp("tune")
    recipe = write_recipe(folder)
    db = folder / "tiny.db"
    env = {"LSTMTEXT_HOME": str(folder / "home"), "LSTMTEXT_DATA": ""}  # a user's data directory stays out of it
    first = run_cli("tune", "sentiment", "-r", recipe, "--study", db, **env)
    n_first = len(load(db).trials)
    second = run_cli("tune", "sentiment", "-r", recipe, "--study", db, "--trials", "2", **env)
    return {"folder": folder, "recipe": recipe, "db": db, "first": first, "second": second, "n_first": n_first}


def test_a_study_runs_its_trials_and_a_second_run_adds_to_it(study):
    first, second = study["first"], study["second"]
    assert first.returncode == 0, first.stderr[-3000:]
    assert second.returncode == 0, second.stderr[-3000:]
    assert first.stdout == "" and second.stdout == ""  # people read stderr; stdout is for predictions
    assert study["n_first"] == 3
    trials = load(study["db"]).trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
    assert sorted(trials[0].params) == ["encoder.dropout", "sentiment.pooling", "train.lr"]
    lines = second.stderr.splitlines()
    header = next(i for i, l in enumerate(lines) if l.split()[:3] == ["trial", "state", "dev_accuracy"])
    table = [l.split()[0] for l in lines[header + 1 : header + 6]]
    assert table == ["0", "1", "2", "3", "4"]  # every trial of the study, the first run's too
    assert lines[header + 6].startswith("best: trial ")
    assert load(study["db"]).user_attrs["lstmtext"]["metric"] == "accuracy"
    # the recipe's pooling (maxmean) is no choice of the space, so no trial is the recipe's own
    assert "not a point of [tune.space] (sentiment.pooling = 'maxmean')" in first.stderr
    assert not any(t.user_attrs.get("recipe_values") for t in trials)


def test_a_new_studys_first_trial_runs_the_recipes_own_values(tmp_path):
    from lstmtext.tune import tune

    db = tmp_path / "own.db"
    recipe = write_recipe(tmp_path, RECIPE.replace('["max", "mean"]', '["max", "maxmean"]'))
    summary = tune("sentiment", recipe, trials=2, study_path=db, show_progress=False)
    first, second = load(db).trials
    assert first.params == {"train.lr": 0.002, "encoder.dropout": 0.3, "sentiment.pooling": "maxmean"}
    assert first.user_attrs["recipe"]["train"]["lr"] == 0.002  # what the trial trained with
    assert first.user_attrs["recipe_values"] and "recipe_values" not in second.user_attrs
    assert summary["trials"][0]["state"].endswith(" (recipe)") and "recipe" not in summary["trials"][1]["state"]
    tune("sentiment", recipe, trials=1, study_path=db, show_progress=False)  # a continued study samples anew
    assert "recipe_values" not in load(db).trials[2].user_attrs


def test_each_trial_reports_its_dev_scores_at_each_tenth_of_its_run(study):
    for t in load(study["db"]).trials:
        log = Path(t.user_attrs["checkpoint"]).with_suffix(".metrics.jsonl")
        rows = [json.loads(l) for l in log.read_text().splitlines()]
        assert t.intermediate_values == reported(rows), t.number
        if t.state.name == "COMPLETE":
            assert rows[-1]["step"] == STEPS and t.user_attrs["steps"] == STEPS
            assert t.value == max(r["dev_accuracy"] for r in rows)
        assert not Path(t.user_attrs["checkpoint"]).with_suffix(".resume.safetensors").exists()


def test_the_best_recipe_holds_the_best_params_and_trains_to_its_score(study, tmp_path):
    best_trial = load(study["db"]).best_trial
    best = study["db"].with_name("tiny.best.toml")
    text = best.read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0] == f"# lstmtext train sentiment --recipe {best}"
    assert lines[1].startswith(f"# score: dev accuracy {best_trial.value} (a seeded slice of train), trial ")
    doc = tomllib.loads(text)
    assert "tune" not in doc  # one point of the space: the search that found it is in the study
    for key, value in best_trial.params.items():
        section, name = key.split(".")
        assert doc[section][name] == value, key
    assert doc["train"]["max_time"] == "600s"  # the trial's budget (tune.trial_time's default of 10m)
    assert doc["encoder"]["hidden_dim"] == 32 and doc["train"]["epochs"] == 2
    out = tmp_path / "best.ckpt"
    proc = run_cli("train", "sentiment", "--recipe", best, "-o", out, "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    from lstmtext.checkpoint import read_meta

    meta = read_meta(out)
    assert meta["recipe"]["train"]["lr"] == best_trial.params["train.lr"]
    assert meta["metrics"]["accuracy"] == best_trial.value  # the same seed and steps on a CPU: the same run


def test_a_pruned_trial_is_recorded_and_leaves_no_lock_or_temp_file(tmp_path):
    from lstmtext.tune import tune

    db = tmp_path / "pruned.db"
    always = optuna.pruners.ThresholdPruner(lower=1.0)  # accuracy is below 1: pruned at the first report
    summary = tune("sentiment", write_recipe(tmp_path), trials=2, study_path=db, pruner=always, show_progress=False)
    trials = load(db).trials
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert summary["best_recipe"] is None and not db.with_name("pruned.best.toml").exists()
    for t in trials:
        log = Path(t.user_attrs["checkpoint"]).with_suffix(".metrics.jsonl")
        (row,) = [json.loads(l) for l in log.read_text().splitlines()]
        assert row["step"] == 10 and t.intermediate_values == {2: row["dev_accuracy"]}
        assert t.value == row["dev_accuracy"]
    assert sorted(p.name for p in (tmp_path / "pruned.trials").iterdir()) == [
        "trial-0000.ckpt",
        "trial-0000.metrics.jsonl",
        "trial-0001.ckpt",
        "trial-0001.metrics.jsonl",
    ]
    assert [r["state"] for r in summary["trials"]] == ["pruned at 20%", "pruned at 20%"]


def space(text: str) -> list[str]:
    return ["--set", f"tune.space={{ {text} }}"]


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--dev", "sst2:dev"], ["sst2:dev is the split sst2 scores are reported on", "seeded slice of train"]),
        (["--dev", "conll2003:test"], ["conll2003:test is the split"]),
        (["--train", "sst2:dev"], ["sst2:dev is the split sst2 scores are reported on"]),
        (["--dev", "data/sentiment/test.tsv"], ["data/sentiment/test.tsv: its name marks a test split"]),
        (
            ["--train", "data/sentiment/train.tsv", "--dev", "data/sentiment/train.tsv"],
            ["data.dev data/sentiment/train.tsv is also training data"],
        ),
        (space('"train.lrr" = { low = 0.001, high = 0.01 }'), ["[tune.space] train.lrr", "did you mean train.lr?"]),
        (space('"train.lr" = { low = 0.01, high = 0.001 }'), ["[tune.space] train.lr: low (0.01) must be below"]),
        (space('"train.lr" = { low = 0.0, high = 0.1, log = true }'), ["train.lr: a log range needs low above 0"]),
        (space('"train.lr" = { choices = [] }'), ["train.lr: choices must be a non-empty list"]),
        (
            space('"encoder.hidden_dim" = { low = 16.5, high = 64 }'),
            ["encoder.hidden_dim: low = 16.5: expected a whole"],
        ),
        (space('"encoder.cell" = { choices = ["lstm", 3] }'), ["encoder.cell: the choice 3 is not a str"]),
        (space('"encoder.dropout" = { low = 0.5, high = 1.0 }'), ["encoder.dropout: the value 1.0 makes the recipe"]),
        (space('"train.max_time" = { choices = ["1m"] }'), ["train.max_time: cannot be tuned"]),
        (space('"train.lr" = { low = 0.001, hi = 0.01 }'), ["train.lr: unknown key 'hi'"]),
        (["--set", "tune.space={}"], ["nothing to tune"]),
        (["--set", "train.lr=0.01"], ["train.lr is both tuned ([tune.space]) and set on the command line"]),
        (["--trials", "0"], ["--trials 0: expected at least 1"]),
        (["--set", "train.members=3"], ["tune trains one model per trial: leave train.members at 1"]),
        (["--max-time", "0s"], ["--max-time 0s: expected a positive duration"]),
        (["--trial-time", "soon"], ["tune.trial_time 'soon': expected a duration"]),
    ],
)
def test_refusals_are_one_line_before_any_trial(tmp_path, args, fragments):
    db = tmp_path / "s.db"
    proc = run_cli("tune", "sentiment", "-r", write_recipe(tmp_path), "--study", db, *args)
    assert_usage_error(proc, *fragments)
    assert not (tmp_path / "s.trials").exists()


def test_a_recipe_with_a_stage_builds_it_once_before_the_trials_and_each_trial_starts_from_it(tmp_path):
    from tests.test_stages import lineage, write_stage

    stage = write_stage(tmp_path)
    stage.write_text(stage.read_text().replace("hidden_dim = 32", "hidden_dim = 24"))  # not the final's 32
    init = 'task = "sentiment"\n[init]\nrecipe = "lm-stage.toml"\n'
    recipe = write_recipe(tmp_path, RECIPE.replace('task = "sentiment"\n', init))
    db, home, elsewhere = tmp_path / "s.db", tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    # what every trial shares (the stage, and the encoder's shape and tokenizer it fixes) cannot be searched:
    # refused before anything is built
    proc = run_cli("tune", "sentiment", "-r", recipe, "--study", db, *space('"init.recipe" = { choices = ["a.toml"] }'))
    assert_usage_error(proc, "[tune.space] init.recipe: cannot be tuned: every trial starts from the same checkpoint")
    for key, low, high in (("encoder.hidden_dim", 16, 64), ("tokenizer.vocab_size", 400, 800)):
        proc = run_cli(
            "tune",
            "sentiment",
            "-r",
            recipe,
            "--study",
            db,
            *space(f'"{key}" = {{ low = {low}, high = {high} }}'),
            LSTMTEXT_HOME=home,
        )
        assert_usage_error(proc, f"[tune.space] {key}: the encoder's shape and the tokenizer come from", "lm-stage")
    assert not (home / "stages").exists()

    proc = run_cli("tune", "sentiment", "-r", recipe, "--study", db, "--trials", "2", cwd=elsewhere, LSTMTEXT_HOME=home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("stage lm-stage: building") == 1 and "stage lm-stage: reused" not in proc.stderr
    (stage_ckpt,) = (home / "stages").glob("*.ckpt")
    trials = load(db).trials
    assert len(trials) == 2
    for t in trials:
        assert [(s["name"], s["checkpoint"]) for s in lineage(Path(t.user_attrs["checkpoint"]))] == [
            ("lm-stage", str(stage_ckpt))
        ]
        assert t.user_attrs["recipe"]["init"]["recipe"] == str(tmp_path / "lm-stage.toml")
        assert t.user_attrs["recipe"]["encoder"]["hidden_dim"] == 24  # the shape the trial trained: the stage's
    # the best recipe names its stage absolutely, so it trains from another folder, from the same stage
    best = db.with_name("s.best.toml")
    assert tomllib.loads(best.read_text(encoding="utf-8"))["encoder"]["hidden_dim"] == 24
    proc = run_cli(
        "train", "sentiment", "--recipe", best, "-o", elsewhere / "b.ckpt", cwd=elsewhere, LSTMTEXT_HOME=home
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"stage lm-stage: reused {stage_ckpt}" in proc.stderr
    from lstmtext.checkpoint import read_meta

    assert read_meta(elsewhere / "b.ckpt")["metrics"]["accuracy"] == load(db).best_trial.value
    # another stage (its recipe changed) makes other scores: the study refuses it before building anything
    stage.write_text(stage.read_text().replace("seed = 1", "seed = 2"))
    proc = run_cli("tune", "sentiment", "-r", recipe, "--study", db, "--trials", "1", LSTMTEXT_HOME=home)
    assert_usage_error(proc, f"--study {db} was run with [init] starting checkpoint = 'stage lm-stage ")
    assert list((home / "stages").glob("*.ckpt")) == [stage_ckpt] and len(load(db).trials) == 2


def test_a_study_of_another_task_or_recipe_or_no_study_at_all_is_refused(study, tmp_path):
    db, recipe = study["db"], study["recipe"]
    lm = run_cli("tune", "lm", "--study", db, *space('"train.lr" = { low = 0.001, high = 0.01 }'))
    assert_usage_error(lm, f"--study {db} tunes sentiment for maximize accuracy, not lm for minimize ppl_word")
    other = run_cli("tune", "sentiment", "-r", recipe, "--study", db, "--set", "train.epochs=3")
    assert_usage_error(other, "was run with train.epochs = 2, this recipe has 3")
    text = tmp_path / "notes.db"
    text.write_text("not a database\n" * 100)
    assert_usage_error(run_cli("tune", "sentiment", "-r", recipe, "--study", text), "not an Optuna study file")
    assert len(load(db).trials) == 5


def test_a_study_kept_before_a_key_existed_had_its_default():
    """A study's stored recipe lacks keys added after it was kept: one in config.LATER_FIELDS compares as its
    default (data.valid_by was "example" then); any other missing key is no difference."""
    from lstmtext.tune import _check_same

    info = {"task": "sentiment", "metric": "accuracy", "direction": "maximize", "space": {}}
    stored = {**info, "recipe": {"train.lr": 0.002}}
    _check_same(Path("s.db"), stored, {**info, "recipe": {"train.lr": 0.002, "data.valid_by": "example"}})
    _check_same(Path("s.db"), stored, {**info, "recipe": {"train.lr": 0.002, "train.new_key": 1}})
    with pytest.raises(UsageError, match="run with data.valid_by = 'example', this recipe has 'sentence'"):
        _check_same(Path("s.db"), stored, {**info, "recipe": {"train.lr": 0.002, "data.valid_by": "sentence"}})
    searched = {**stored, "space": {"data.valid_by": "categorical"}}  # a study that sampled it stored no value
    _check_same(Path("s.db"), searched, {**info, "recipe": {"train.lr": 0.002, "data.valid_by": "sentence"}})


def test_the_best_recipe_says_its_slice_was_held_out_by_sentence(tmp_path):
    from lstmtext.tasks import get_task
    from lstmtext.tune_report import write_best

    held = {"task": "sentiment", "data": {"train": ["t.tsv"], "dev": "", "valid_by": "sentence"}}
    study = optuna.create_study(direction="maximize")
    study.add_trial(
        optuna.trial.create_trial(
            params={"train.lr": 0.002},
            distributions={"train.lr": optuna.distributions.FloatDistribution(0.001, 0.01)},
            value=0.85,
            user_attrs={"recipe": held, "checkpoint": "t0.ckpt"},
        )
    )
    out = tmp_path / "s.best.toml"
    write_best(study, get_task("sentiment"), tmp_path / "s.db", out, None)
    score = out.read_text(encoding="utf-8").splitlines()[1]
    assert (
        score
        == f"# score: dev accuracy 0.85 (a seeded slice of train, by sentence), trial 0 of 1 in {tmp_path / 's.db'}"
    )
    assert tomllib.loads(out.read_text(encoding="utf-8"))["data"]["valid_by"] == "sentence"


def test_without_optuna_the_command_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    proc = run_cli("tune", "sentiment", "-r", write_recipe(tmp_path))
    assert_usage_error(proc, "lstmtext tune needs Optuna: pip install 'lstmtext[tune]'")


def test_the_space_reads_dotted_keys_quoted_or_as_tables_and_the_recipe_file_reads_back():
    from lstmtext.config import resolve_recipe
    from lstmtext.searchspace import Param, parse_space, recipe_toml

    recipe = resolve_recipe("sentiment", None, ["encoder.hidden_dim=64"])
    recipe.tune.space = {
        "train": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}},
        "encoder.hidden_dim": {"low": 64, "high": 256, "step": 64},
        "train.schedule": {"choices": ["linear", "cosine"]},
    }
    assert parse_space(recipe) == [
        Param("train.lr", "float", 1e-4, 1e-2, log=True),
        Param("encoder.hidden_dim", "int", 64, 256, step=64),
        Param("train.schedule", "choice", choices=("linear", "cosine")),
    ]
    lr, width, schedule = parse_space(recipe)
    assert [lr.holds(v) for v in (1e-4, 2e-3, 1e-2, 1.1e-2, 0, True, "0.01")] == [1, 1, 1, 0, 0, 0, 0]
    assert [width.holds(v) for v in (64, 128, 256, 100, 320)] == [1, 1, 1, 0, 0]  # on the step only
    assert [schedule.holds(v) for v in ("cosine", "constant")] == [1, 0]
    d = recipe.to_dict()
    del d["tune"]
    d["sentiment"]["label_names"] = {"0": 'neg "x"\\', "1": "pos\tré"}
    d["train"]["lr"] = 0.1 + 0.2  # a float that needs all its digits
    assert tomllib.loads(recipe_toml(d, ["a comment", "and\nanother"])) == d


def test_reported_splits_are_named_by_dataset_file_or_name(tmp_path, monkeypatch):
    from lstmtext.sources import reported_split

    (tmp_path / "conll2003").mkdir()
    (tmp_path / "conll2003" / "eng.testb").write_text("x\n")
    (tmp_path / "conll2003" / "eng.testa").write_text("x\n")
    monkeypatch.setenv("LSTMTEXT_DATA", str(tmp_path))
    found = {
        s: reported_split(s) is not None
        for s in [
            "sst2:dev",
            "sst2:train",
            "conll2003:dev",
            "imdb:test",
            str(tmp_path / "conll2003" / "eng.testb"),
            str(tmp_path / "conll2003" / "eng.testa"),
            "multi30k/test_2016_flickr",
            "wiki.test.tokens",
            "hf:user/data@test",
            "hf:user/data@validation",
            "latest.tsv",
            "reviews/test/part1.tsv",
        ]
    }
    assert [s for s, bad in found.items() if bad] == [
        "sst2:dev",
        "imdb:test",
        str(tmp_path / "conll2003" / "eng.testb"),
        "multi30k/test_2016_flickr",
        "wiki.test.tokens",
        "hf:user/data@test",
        "reviews/test/part1.tsv",
    ]
