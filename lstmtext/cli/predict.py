"""``lstmtext predict``: any checkpoint over text, one prediction per input line, streamed to stdout."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from lstmtext.cli.common import (
    attention_outputs,
    device_choice,
    format_choice,
    formats_help,
    looks_like_checkpoint,
    model_or_default,
    precision_choice,
    precision_help,
    stream_predictions,
    task_choice,
    task_formats,
    value,
)
from lstmtext.errors import UsageError

EXPLAIN_HELP = (
    "Attribute each prediction to its words (Integrated Gradients from an all-PAD baseline, for models that "
    'offer it): jsonl adds "attributions" [[word, score], ...], "pieces" and "ig"; text adds the words '
    "after a tab, shaded green (+) / red (-) on a terminal, word(+0.123) when piped."
)


def split_arguments(args: list[str], model: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """(checkpoint, input) from ``[CHECKPOINT] [INPUT]`` and ``-m``: one argument is the checkpoint when it is one."""
    if len(args) > 2:
        raise UsageError("predict takes at most two arguments: CHECKPOINT and INPUT")
    if model is None and len(args) == 2:
        return args[0], args[1]
    if model is None and len(args) == 1 and looks_like_checkpoint(args[0]):
        return args[0], None
    if len(args) == 2:
        raise UsageError("predict: pass the checkpoint either as the first argument or with -m, not both")
    return model, args[0] if args else None


def predict(
    args: list[str] = typer.Argument(
        None, help="[CHECKPOINT] [INPUT|-]: one text per line; stdin when INPUT is - or missing."
    ),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint (instead of the first argument)."),
    task: Optional[task_choice()] = typer.Option(
        None,
        "--task",
        help="Without a checkpoint: the model 'lstmtext train TASK' last wrote. With one: the task it must be.",
    ),
    fmt: Optional[format_choice()] = typer.Option(
        None, "--format", "-f", help=f"{formats_help()}. Default: the task's first."
    ),
    attention: bool = typer.Option(
        False,
        "--attention",
        help="Add the model's attention weights to each JSONL line (models without attention refuse). "
        "Needs --format jsonl.",
    ),
    plot: Optional[str] = typer.Option(
        None,
        "--plot",
        metavar="DIR",
        help="Draw each line's attention weights, DIR/0001.png for line 1 (none for an empty line); stdout is unchanged.",
    ),
    device: device_choice() = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
    precision: precision_choice() = typer.Option("auto", "--precision", help=precision_help()),
    explain: bool = typer.Option(False, "--explain", help=EXPLAIN_HELP),
    explain_steps: int = typer.Option(50, "--explain-steps", help="Integration steps of --explain (1-1000)."),
) -> None:
    """Run any checkpoint over text, one prediction per input line, streamed to stdout.

    Without a checkpoint, the model of the one task trained in $LSTMTEXT_HOME/models (--task picks one).

    Example: cat reviews.txt | lstmtext predict sst2.ckpt --format jsonl
    """
    fmt, device, precision, task = value(fmt), value(device), value(precision), value(task)
    model, source = split_arguments(list(args or []), model)
    folder = attention_outputs(attention, plot, fmt)
    model = model_or_default(model, task)
    from lstmtext.api import inference_precision, load

    predictor = load(model, device=device, task=task, command="predict --task " + task if task else None)
    formats = task_formats(predictor.task)
    fmt = fmt or formats[0]
    if fmt not in formats:
        raise UsageError(f"--format {fmt}: a {predictor.task} model writes {' or '.join(formats)}")
    if explain:
        from lstmtext.explain import configure

        configure(predictor, explain_steps, sys.stdout.isatty(), precision, fmt)
    if attention or folder is not None:
        attention_outputs(attention, None, fmt)  # the task's default format is known now
        predictor.show_attention(jsonl=attention, plot_dir=folder)
    with inference_precision(predictor, precision):
        stream_predictions(predictor, source, fmt)
