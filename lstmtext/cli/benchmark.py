"""``lstmtext benchmark speed``: units per second of a checkpoint's predictions (lstmtext/speed.py)."""

from __future__ import annotations

import json
import sys

import typer

from lstmtext.cli.common import choice, value
from lstmtext.errors import UsageError

app = typer.Typer(help="Measure a checkpoint: how fast it predicts.", no_args_is_help=True)


@app.command("speed")
def speed(
    checkpoint: str = typer.Argument(..., help="The checkpoint to time."),
    data: str = typer.Argument(..., help="Plain text, one input per line (a .conll file: one per sentence)."),
    precision: str = typer.Option(
        "auto",
        "--precision",
        help="Comma list of precisions, e.g. fp32,int8,bf16 (auto: fp32 on a CPU; an ONNX export's own).",
    ),
    threads: str = typer.Option(
        "1",
        "--threads",
        help="Comma list of thread counts, e.g. 1,2,4 (torch's threads; for an ONNX export, batches run side by side).",
    ),
    warmup: int = typer.Option(1, "--warmup", help="Untimed passes before the timed ones."),
    repeats: int = typer.Option(5, "--repeats", help="Timed passes (at least 2, for the confidence interval)."),
    fmt: choice("SpeedFormat", ("table", "json")) = typer.Option(
        "table", "--format", "-f", help="table (on stderr) | json (on stdout)."
    ),
    end_to_end: bool = typer.Option(
        False,
        "--end-to-end",
        help="Also time the real 'lstmtext predict' as a process, start-up included (lines per second).",
    ),
) -> None:
    """Time predictions over DATA: units per second (words, generated pieces or sentences, by task) per
    precision and thread count, with the mean, median and a 95 % confidence interval over the timed passes.

    Example: lstmtext benchmark speed ner.ckpt test.txt --precision fp32,int8 --threads 1,2
    """
    from lstmtext.config import INFERENCE_PRECISIONS
    from lstmtext.data import check_file
    from lstmtext.speed import end_to_end as time_process
    from lstmtext.speed import machine, parse_list, read_inputs
    from lstmtext.speed import speed as time_passes

    if repeats < 2:
        raise UsageError(f"--repeats {repeats}: a confidence interval needs at least 2 timed passes")
    if warmup < 0:
        raise UsageError(f"--warmup {warmup}: expected 0 or more passes")
    precisions = parse_list(precision, "--precision", INFERENCE_PRECISIONS)
    counts = parse_list(threads, "--threads", numbers=True)
    check_file(checkpoint)
    read_inputs(data)  # an empty or missing DATA is refused before any model loads
    rows = time_passes(checkpoint, data, precisions, counts, warmup, repeats)
    if end_to_end:
        # labelled as the first in-process row, where --precision auto was resolved
        rows.append(
            {**time_process(checkpoint, data, precisions[0], counts[0], repeats), "precision": rows[0]["precision"]}
        )
    if value(fmt) == "json":
        sys.stdout.write(json.dumps({"machine": machine(counts, checkpoint), "rows": rows}) + "\n")
    else:
        show(rows)


def show(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="prediction speed: mean, median and 95 % CI of the mean over the timed passes")
    for name in ("precision", "threads", "mean", "median", "95 % CI", "unit", "passes"):
        table.add_column(name, justify="left" if name in ("precision", "unit") else "right", no_wrap=True)
    for r in rows:
        lo, hi = r["ci95"]
        table.add_row(
            r["precision"],
            str(r["threads"]),
            f"{r['mean']:,.0f}",
            f"{r['median']:,.0f}",
            f"{lo:,.0f}-{hi:,.0f}",
            f"{r['unit']}/s" + (f" (end to end, best {r['best_seconds']:.2f} s)" if r.get("end_to_end") else ""),
            str(r["passes"]),
        )
    console = Console(stderr=True)
    if not console.is_terminal:  # a log file or pipe: keep each row on one line rather than 80 columns
        console.width = 120
    console.print(table)
