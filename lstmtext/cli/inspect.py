"""``lstmtext inspect``: the cell state and gates of chosen encoder units over a text, and the units that
follow a feature of it (lstmtext/inspect.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from lstmtext.cli.common import device_choice, report_choice, value
from lstmtext.errors import UsageError

DEFAULT_TOP = 6


def parse_units(units: Optional[str]) -> list[int] | None:
    if units is None:
        return None
    try:
        out = [int(u) for u in units.split(",") if u.strip()]
    except ValueError:
        raise UsageError(f"--units {units}: expected unit numbers separated by commas, such as 0,5,17") from None
    if not out or min(out) < 0:
        raise UsageError(f"--units {units}: expected unit numbers (0 or more) separated by commas, such as 0,5,17")
    return out


def check_arguments(text, source, units, top, rank_by, plot) -> None:
    if text is None and source is None:
        raise UsageError("inspect: pass --text TEXT (the cell view), or --input FILE with --rank-by")
    if source is not None and rank_by is None:
        raise UsageError("--input: ranks units over a file's lines and needs --rank-by (the cell view needs --text)")
    if units is not None and top is not None:
        raise UsageError("--units and --top: pass one (the units to show, or how many of the strongest)")
    if top is not None and top < 1:
        raise UsageError(f"--top {top}: expected 1 or more")
    if text is None and (plot is not None or units is not None):
        raise UsageError("--plot and --units show the states over --text; pass --text too")


def inspect(
    checkpoint: str = typer.Argument(..., help="A checkpoint written by 'lstmtext train' (an LSTM encoder)."),
    text: Optional[str] = typer.Option(None, "--text", "-t", help="The text whose states are shown."),
    source: Optional[str] = typer.Option(
        None, "--input", "-i", help="With --rank-by: rank units over every line of this file (- for stdin)."
    ),
    units: Optional[str] = typer.Option(None, "--units", help="Units to show, such as 0,5,17 (in each direction)."),
    top: Optional[int] = typer.Option(
        None,
        "--top",
        help=f"Show the N units that follow --rank-by's feature most strongly (without it: whose cell varies "
        f"most over the text). Default: {DEFAULT_TOP}.",
    ),
    layer: Optional[int] = typer.Option(None, "--layer", help="Encoder layer, 0 the first. Default: the last."),
    rank_by: Optional[str] = typer.Option(
        None,
        "--rank-by",
        help='Rank units by the correlation of their cell state with: quote (inside a "..." span), '
        "position (index in the line), entity (inside a predicted entity; NER models) or regex:PATTERN.",
    ),
    fmt: report_choice() = typer.Option(
        "table", "--format", "-f", help="table (on stderr, for people) | json (on stdout)."
    ),
    plot: Optional[str] = typer.Option(
        None, "--plot", metavar="PNG", help="Write a heatmap: rows the units' cell, i, f, o; columns the pieces."
    ),
    device: device_choice() = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
) -> None:
    """Show what the encoder's LSTM units do over a text: cell state and gates, forward and backward.

    Example: lstmtext inspect ner.ckpt --text 'He said "go to Paris" twice.' --rank-by quote --plot cells.png
    """
    fmt, device = value(fmt), value(device)
    unit_list = parse_units(units)
    check_arguments(text, source, unit_list, top, rank_by, plot)
    from lstmtext import inspect as core
    from lstmtext.api import load

    predictor = load(checkpoint, device=device)
    encoder = core.encoder_of(predictor)
    core.check_layer(encoder, layer)
    if unit_list is not None and max(unit_list) >= encoder.hidden_dim:
        raise UsageError(
            f"--units {units}: this encoder has {encoder.hidden_dim} units per direction (0 to {encoder.hidden_dim - 1})"
        )
    ranking = None
    if rank_by is not None:
        core.check_feature(rank_by, predictor)
        ranking = rank(core, predictor, rank_by, [text] if source is None else lines_of(source), layer)
    report: dict = {}
    if text is not None:
        tr = core.trace(predictor, text, layer)
        chosen = choose_units(core, tr, unit_list, ranking, top or DEFAULT_TOP)
        report = core.dump(tr, chosen)
        if plot is not None:
            from lstmtext.viz.cells import plot_cells

            plot_cells(
                tr,
                chosen,
                plot,
                title=f"{Path(checkpoint).name}: encoder layer {tr.layer}"
                + (f", the units that follow {rank_by} most" if ranking is not None and unit_list is None else ""),
            )
    if ranking is not None:
        report["rank_by"] = rank_by
        report["ranking"] = ranking[: top or DEFAULT_TOP]
    if fmt == "json":
        sys.stdout.write(json.dumps(report, ensure_ascii=False) + "\n")
    else:
        show(report, ranking is not None)


def choose_units(core, tr, unit_list, ranking, n: int) -> list[tuple[str, int]]:
    """--units in every direction; else the n that follow --rank-by's feature most; else the n most active."""
    if unit_list is not None:
        return [(d, u) for d in tr.states for u in unit_list]
    if ranking is not None:
        return [(row["direction"], row["unit"]) for row in ranking[:n]]
    return core.most_active(tr, n)


def lines_of(source: str):
    from lstmtext.data import InputLines

    for batch in InputLines(None if source == "-" else source).batches(256):
        yield from batch


def rank(core, predictor, rank_by: str, texts, layer) -> list[dict]:
    corr = core.Correlation()
    for line in texts:
        if line.strip():
            tr = core.trace(predictor, line, layer)
            corr.add(tr, core.feature_values(rank_by, line, tr.spans, predictor))
    return corr.ranking(rank_by)


def show(report: dict, ranked: bool) -> None:
    """People's view on stderr: each unit's cell state over the pieces, a piece's colour its value (red
    positive, blue negative, relative to the unit's largest), then the ranking."""
    from rich.table import Table
    from rich.text import Text

    from lstmtext.progress import console

    if "pieces" in report:
        t = Table(title=f"cell state, layer {report['layer']} (red > 0 > blue)")
        for c in ("direction", "unit", "pieces", "min", "max"):
            t.add_column(c, justify="right" if c in ("unit", "min", "max") else "left")
        for direction, units in report["directions"].items():
            for unit, series in units.items():
                cell = series["cell"]
                scale = max(1e-6, max(abs(v) for v in cell))
                line, text, end = Text(), report["text"], 0
                for (s, e), v in zip(report["spans"], cell):
                    shade = int(255 * (1 - min(1.0, abs(v) / scale)))
                    colour = f"rgb(255,{shade},{shade})" if v > 0 else f"rgb({shade},{shade},255)"
                    line.append(text[end:s])
                    line.append(text[s:e], style=f"black on {colour}")
                    end = max(end, e)
                t.add_row(direction, unit, line, f"{min(cell):.2f}", f"{max(cell):.2f}")
        console.print(t)
    if ranked:
        t = Table(title=f"units whose cell state follows {report['rank_by']} (Pearson r)")
        for c in ("rank", "direction", "unit", "r"):
            t.add_column(c, justify="left" if c == "direction" else "right")
        for k, row in enumerate(report["ranking"], 1):
            t.add_row(str(k), row["direction"], str(row["unit"]), f"{row['r']:+.3f}")
        console.print(t)
