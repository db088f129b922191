"""``lstmtext train``: typed options become recipe settings ({"train.epochs": 3}); only ``--set`` is parsed."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from lstmtext.cli.common import device_choice, fail, task_choice, value


def run_training(
    task: str,
    recipe: Optional[str],
    *,
    settings: dict[str, Any],
    overrides: list[str],
    out: Optional[Path],
    init_from: Optional[str],
    resume: bool,
    force: bool,
    show_progress: bool,
) -> dict:
    """``lstmtext.training.train``; Ctrl-C (its resume state saved) exits 130 with the line that says how to go on."""
    from lstmtext.data import recipe_path
    from lstmtext.training import Interrupted, train

    try:
        return train(
            task,
            None if recipe is None else str(recipe_path(recipe)),
            settings=settings,
            overrides=overrides,
            out=out,
            init_from=init_from,
            resume=resume,
            force=force,
            show_progress=show_progress,
        )
    except Interrupted as e:
        fail(str(e), 130)
    return {}  # not reached: fail() raises


def note_best(summary: dict) -> None:
    """The run's best dev score, the line people look for at the end."""
    from lstmtext.progress import note

    metric = summary.get("main_metric")
    best = (summary.get("best") or {}).get(metric)
    if best is not None:
        note(f"best validation {metric}: {best:.4f}")


def train(
    task: task_choice() = typer.Argument(..., help="The task to train a model for."),
    recipe: Optional[str] = typer.Option(
        None, "--recipe", "-r", help="TOML recipe: a path or a name in recipes/ (sst2, imdb)."
    ),
    train_data: Optional[list[str]] = typer.Option(
        None, "--train", help="Training data: a file, folder, glob, hf:NAME or DATASET:SPLIT (repeatable)."
    ),
    dev_data: Optional[str] = typer.Option(
        None, "--dev", help="Validation data for model selection. Default: a seeded slice of train."
    ),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", metavar="DIR", help="Where named datasets (conll2003:train) are found ($LSTMTEXT_DATA)."
    ),
    cache_dir: Optional[Path] = typer.Option(
        None, "--cache-dir", metavar="DIR", help="Where LM token streams are cached ($LSTMTEXT_CACHE)."
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Checkpoint to write. Default: ~/.lstmtext/models/TASK.ckpt ($LSTMTEXT_HOME)."
    ),
    init_from: Optional[str] = typer.Option(
        None, "--init-from", help="Start from this checkpoint's tokenizer and encoder (e.g. a trained LM)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the interrupted run that wrote --output, exactly where it stopped."
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the training data (train.epochs)."),
    max_time: Optional[str] = typer.Option(
        None, "--max-time", help="Stop training after this long: 90s, 20m, 1h30m (train.max_time)."
    ),
    seed: Optional[int] = typer.Option(
        None, "--seed", help="Random seed; the same seed gives the same model on CPU (train.seed)."
    ),
    device: Optional[device_choice()] = typer.Option(
        None, "--device", help="auto | cpu | cuda (mixed precision on CUDA) (train.device)."
    ),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column holding the text (sentiment)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Column holding the label (sentiment)."),
    source_lang: Optional[str] = typer.Option(
        None, "--source-lang", help="Source language suffix, e.g. de (translate)."
    ),
    target_lang: Optional[str] = typer.Option(
        None, "--target-lang", help="Target language suffix, e.g. en (translate)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a recipe value: --set train.lr=0.001 (repeatable; the value is a TOML literal)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or tables."),
) -> None:
    """Train a model and write its best checkpoint.

    Example: lstmtext train sentiment --train sst2:train --data-dir DIR -o sst2.ckpt --max-time 20m
    """
    from lstmtext.progress import set_quiet

    for env, folder in (("LSTMTEXT_DATA", data_dir), ("LSTMTEXT_CACHE", cache_dir)):
        if folder is not None:
            os.environ[env] = str(folder)
    set_quiet(quiet)
    task = value(task)
    typed = {"data.train": train_data or None, "data.dev": dev_data, "train.epochs": epochs, "train.max_time": max_time}
    typed |= {"train.seed": seed, "train.device": value(device), f"{task}.text_column": text_column}
    typed |= {f"{task}.label_column": label_column, f"{task}.source_lang": source_lang}
    typed |= {f"{task}.target_lang": target_lang}
    settings = {key: v for key, v in typed.items() if v is not None}
    note_best(
        run_training(
            task,
            recipe,
            settings=settings,
            overrides=list(set_),
            out=output,
            init_from=init_from,
            resume=resume,
            force=force,
            show_progress=not quiet,
        )
    )
