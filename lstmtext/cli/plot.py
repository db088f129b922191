"""``lstmtext plot``: training curves from the metrics logs ``lstmtext train`` writes beside each checkpoint."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from lstmtext.cli.common import choice, report_choice, value
from lstmtext.errors import UsageError

X_AXES = ("steps", "minutes")


def x_choice():
    return choice("XAxis", X_AXES)


def plot(
    logs: list[Path] = typer.Argument(
        ..., metavar="RUN.metrics.jsonl...", help="Metrics logs of one or more runs, overlaid in one picture."
    ),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", metavar="FILE", help="Write the picture here (.png, .svg or .pdf)."
    ),
    x: x_choice() = typer.Option("steps", "--x", help="steps | minutes (of training) on the x axis."),
    fmt: Optional[report_choice()] = typer.Option(
        None,
        "--format",
        "-f",
        help="table (last and best evaluation of each run, on stderr) | json (the data behind the picture, on "
        "stdout). Default: table when there is no -o.",
    ),
) -> None:
    """Plot training curves: loss, every dev metric and tokens/s over steps or minutes, several runs overlaid.

    Example: lstmtext plot runs/a.metrics.jsonl runs/b.metrics.jsonl -o curves.png
    """
    from lstmtext.viz.curves import SUFFIXES, curves_data, draw, read_runs

    x, fmt = value(x), value(fmt)
    if output is not None and output.suffix.lower() not in SUFFIXES:
        raise UsageError(f"--output {output}: the picture's format comes from its suffix: {', '.join(SUFFIXES)}")
    if output is not None and output.is_dir():
        raise UsageError(f"--output {output} is a folder; pass a file such as {output / 'curves.png'}")
    data = curves_data(read_runs(logs), x)
    if output is not None:
        from lstmtext.progress import note

        note(f"wrote {draw(data, output)}")
    if fmt == "json":
        sys.stdout.write(json.dumps(data, allow_nan=False) + "\n")
    elif fmt == "table" or output is None:
        print_tables(data)


def print_tables(data: dict) -> None:
    """Per run, one table: a row per quantity, with its last evaluation and the one that kept the checkpoint
    side by side (rows, not columns, so that any number of dev metrics fits a terminal)."""
    from rich.table import Table

    from lstmtext.progress import console

    for run in data["runs"]:
        last, best = run["last"], run["best"] or {}
        t = Table(title=f"{run['name']}: {run['evaluations']} evaluations ({run['file']})")
        t.add_column("")
        t.add_column("last", justify="right")
        t.add_column("best (kept)", justify="right")
        for key in ("step", "epoch", "minutes", *data["series"]):
            t.add_row(key.replace("_", " "), cell(last, key), cell(best, key))
        console.print(t)


def cell(row: dict, key: str) -> str:
    v = row.get("time") / 60 if key == "minutes" and isinstance(row.get("time"), int | float) else row.get(key)
    if v is None or isinstance(v, bool):
        return "-"
    if isinstance(v, float):
        if key in ("epoch", "minutes"):
            return f"{v:.2f}".rstrip("0").rstrip(".")
        return f"{v:.4f}" if abs(v) < 1e4 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)
