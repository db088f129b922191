"""``lstmtext evaluate``: a checkpoint's standard metrics on labelled data."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from lstmtext.cli.common import device_choice, precision_choice, precision_help, report_choice, value


def evaluate(
    checkpoint: str = typer.Argument(..., help="A checkpoint written by 'lstmtext train'."),
    data: str = typer.Argument(..., help="Labelled data in the task's format, or hf:NAME[:CONFIG][@SPLIT]."),
    fmt: report_choice() = typer.Option(
        "table", "--format", "-f", help="table (on stderr, for people) | json (on stdout)."
    ),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", metavar="DIR", help="Where named datasets (conll2003:test) are found ($LSTMTEXT_DATA)."
    ),
    device: device_choice() = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    precision: precision_choice() = typer.Option("auto", "--precision", help=precision_help()),
    set_: list[str] = typer.Option(
        [],
        "--set",
        metavar="KEY=VALUE",
        help="Change a scoring setting of the trained model (repeatable): --set translate.beam=10, "
        "--set lm.cache_size=2000 (a language model's continuous cache).",
    ),
    plot: Optional[Path] = typer.Option(
        None,
        "--plot",
        metavar="DIR",
        help="Also draw the task's pictures into DIR (PNG): a confusion matrix, per-type P/R/F1 bars or BLEU by "
        "source length (none for a language model).",
    ),
) -> None:
    """Score a checkpoint on labelled data with the task's standard metrics.

    Example: lstmtext evaluate sst2.ckpt sst2:dev --data-dir DIR --plot pictures/
    """
    fmt, device, precision = value(fmt), value(device), value(precision)
    if plot is not None:
        from lstmtext.viz.attention import plot_dir

        plot_dir(plot)  # refused in one line before the data are read, not after
    if data_dir is not None:
        os.environ["LSTMTEXT_DATA"] = str(data_dir)
    from lstmtext.api import evaluate as run
    from lstmtext.api import read_meta
    from lstmtext.progress import console, note
    from lstmtext.tasks import get_task

    metrics = run(checkpoint, data, device=device, precision=precision, overrides=list(set_))
    mod = get_task(read_meta(checkpoint)["task"])
    if fmt == "json":
        sys.stdout.write(json.dumps({"checkpoint": checkpoint, "data": data, **metrics}) + "\n")
    else:
        mod.report(metrics, console)
    if plot is not None:
        for path in mod.plots(metrics, plot):
            note(f"wrote {path}")
