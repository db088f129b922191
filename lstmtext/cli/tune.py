"""``lstmtext tune``: ``lstmtext.tune.tune`` with train's data options; the trials' table and the best go to stderr."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from lstmtext.cli.common import device_choice, fail, task_choice, value


def tune(
    task: task_choice() = typer.Argument(..., help="The task to tune a recipe for."),
    recipe: Optional[str] = typer.Option(
        None, "--recipe", "-r", help="TOML recipe with a tune.space table: a path or a name in recipes/ (sst2)."
    ),
    trials: Optional[int] = typer.Option(
        None, "--trials", help="Trials to run now; a continued study adds them (default: tune.trials)."
    ),
    max_time: Optional[str] = typer.Option(
        None,
        "--max-time",
        help="Wall time for the trials: 2h, 90m (a recipe's stages are built first, outside it). "
        "Each trial gets tune.trial_time or less.",
    ),
    trial_time: Optional[str] = typer.Option(
        None, "--trial-time", help="Wall time of one trial, reading included: 10m (tune.trial_time)."
    ),
    study: Optional[Path] = typer.Option(
        None,
        "--study",
        metavar="FILE",
        help="The Optuna study (SQLite); run again to add trials. Default: ~/.lstmtext/tune/TASK-RECIPE.db.",
    ),
    best_out: Optional[Path] = typer.Option(
        None, "--best-out", metavar="FILE", help="Where the best trial's recipe goes. Default: STUDY.best.toml."
    ),
    train_data: Optional[str] = typer.Option(None, "--train", help="Training data (data.train)."),
    dev_data: Optional[str] = typer.Option(
        None, "--dev", help="Dev data the trials are scored on; never a test split. Default: a seeded slice of train."
    ),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", metavar="DIR", help="Where named datasets (sst2:train) are found ($LSTMTEXT_DATA)."
    ),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed of the trials and the sampler (train.seed)."),
    device: Optional[device_choice()] = typer.Option(None, "--device", help="auto | cpu | cuda (train.device)."),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a recipe value in every trial: --set train.epochs=3 (repeatable)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars, evaluation lines or table."),
) -> None:
    """Search the recipe's tune.space with Optuna: each trial trains with a time budget, is scored on dev data
    (pruned when it trails), and the best trial is written as a recipe file.

    Example: lstmtext tune sentiment --recipe sst2 --data-dir DIR --trials 20 --max-time 2h
    """
    from lstmtext.progress import set_quiet

    if data_dir is not None:
        os.environ["LSTMTEXT_DATA"] = str(data_dir)
    set_quiet(quiet)
    typed = {"data.train": train_data, "data.dev": dev_data, "train.seed": seed, "train.device": value(device)}
    typed["tune.trial_time"] = trial_time
    settings = {key: v for key, v in typed.items() if v is not None}
    from lstmtext.data import recipe_path
    from lstmtext.tune import load_optuna
    from lstmtext.tune import tune as run

    load_optuna()  # its absence is one line, before torch loads
    from lstmtext.training import Interrupted

    try:
        run(
            value(task),
            None if recipe is None else str(recipe_path(recipe)),
            trials=trials,
            max_time=max_time,
            study_path=study,
            best_out=best_out,
            settings=settings,
            overrides=list(set_),
            show_progress=not quiet,
        )
    except Interrupted as e:
        fail(str(e), 130)
