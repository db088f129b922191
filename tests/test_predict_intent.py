"""``predict`` without a checkpoint picks the model the user means, and notes print once under torchrun."""

from __future__ import annotations

import os
import shutil

from conftest import assert_usage_error, run_cli

REVIEW = "what a truly wonderful film !\n"


def _trained(home, sentiment_ckpt, *tasks: str) -> None:
    """Default models in ``home`` as ``lstmtext train TASK`` leaves them: the sentiment one is real; the others
    are only looked at, never loaded, so any file stands in for them."""
    models = home / "models"
    models.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        shutil.copy(sentiment_ckpt, models / f"{task}.ckpt")


def test_predict_without_checkpoint_uses_the_one_trained_task(sentiment_ckpt, lstmtext_home):
    _trained(lstmtext_home, sentiment_ckpt, "sentiment")
    expected = run_cli("predict", sentiment_ckpt, input=REVIEW)
    assert expected.returncode == 0, expected.stderr
    proc = run_cli("predict", input=REVIEW)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected.stdout and proc.stdout.strip() in ("negative", "positive")
    assert proc.stderr.strip() == f"using {lstmtext_home / 'models' / 'sentiment.ckpt'}"


def test_predict_without_checkpoint_refuses_to_guess_between_tasks(sentiment_ckpt, lstmtext_home):
    _trained(lstmtext_home, sentiment_ckpt, "sentiment", "translate")
    newest = lstmtext_home / "models" / "translate.ckpt"
    os.utime(newest, (newest.stat().st_atime, newest.stat().st_mtime + 60))  # the newest is not the one meant
    proc = run_cli("predict", input=REVIEW)
    assert_usage_error(proc, "sentiment, translate", "pass -m CKPT or --task sentiment")
    assert proc.stdout == ""


def test_predict_task_option_picks_that_tasks_model(sentiment_ckpt, lstmtext_home):
    _trained(lstmtext_home, sentiment_ckpt, "sentiment", "translate")
    expected = run_cli("predict", sentiment_ckpt, input=REVIEW).stdout
    proc = run_cli("predict", "--task", "sentiment", input=REVIEW)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected and expected.strip() in ("negative", "positive")
    assert proc.stderr.strip() == f"using {lstmtext_home / 'models' / 'sentiment.ckpt'}"


def test_predict_task_option_without_that_model_is_one_line(sentiment_ckpt, lstmtext_home):
    _trained(lstmtext_home, sentiment_ckpt, "sentiment")
    proc = run_cli("predict", "--task", "ner", input=REVIEW)
    assert_usage_error(proc, str(lstmtext_home / "models" / "ner.ckpt"), "run 'lstmtext train ner' or pass -m CKPT")
    empty = lstmtext_home / "other"
    none = run_cli("predict", input=REVIEW, LSTMTEXT_HOME=str(empty))
    assert_usage_error(none, f"none trained yet in {empty / 'models'}", "pass a checkpoint")


def test_predict_task_option_with_a_checkpoint_checks_its_task(sentiment_ckpt):
    proc = run_cli("predict", "-m", sentiment_ckpt, "--task", "ner", input=REVIEW)
    assert_usage_error(proc, "is a 'sentiment' model", "'lstmtext predict --task ner' needs a 'ner' model")
    ok = run_cli("predict", sentiment_ckpt, "--task", "sentiment", input=REVIEW)
    assert ok.returncode == 0 and ok.stdout.strip() in ("negative", "positive"), ok.stderr


def test_predict_unknown_task_choice_is_a_usage_error():
    proc = run_cli("predict", "--task", "parsing", input=REVIEW)
    assert_usage_error(proc, "--task", "sentiment")


# -- rank 0 alone prints ------------------------------------------------------------------------------------
def test_notes_and_progress_print_on_rank_zero_only(monkeypatch, capsys):
    from lstmtext import progress

    progress.note("on rank 0")
    assert capsys.readouterr().err == "on rank 0\n"
    monkeypatch.setenv("RANK", "1")
    progress.note("on rank 1")
    bar = progress.TrainProgress(10, interval=0)
    bar.update(1, 0.1, "loss 1.0", 9)
    bar.print("an evaluation line")
    assert not bar.enabled and capsys.readouterr().err == ""
    # the rank the process group gives beats the variable, both ways
    progress.set_rank(0)
    try:
        progress.note("rank 0 by setup")
        assert capsys.readouterr().err == "rank 0 by setup\n"
        monkeypatch.setenv("RANK", "0")
        progress.set_rank(1)
        progress.note("rank 1 by setup")
        assert capsys.readouterr().err == ""
    finally:
        progress.set_rank(None)
    progress.note("back to RANK")
    assert capsys.readouterr().err == "back to RANK\n"


def test_predict_note_is_silent_on_rank_one(sentiment_ckpt, lstmtext_home):
    _trained(lstmtext_home, sentiment_ckpt, "sentiment")
    proc = run_cli("predict", input=REVIEW, RANK="1")
    assert proc.returncode == 0 and proc.stdout.strip() in ("negative", "positive")
    assert proc.stderr == ""
