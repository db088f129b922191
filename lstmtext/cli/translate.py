"""``lstmtext translate``: one translation per input line, streamed from a file or stdin."""

from __future__ import annotations

from typing import Optional

import typer

from lstmtext.cli.common import (
    attention_outputs,
    device_choice,
    format_choice,
    model_or_default,
    precision_choice,
    precision_help,
    value,
)


def translate(
    source: Optional[str] = typer.Argument(
        None, metavar="INPUT", help="Text file, one sentence per line; - or nothing reads stdin."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="A translate checkpoint. Default: the one 'lstmtext train translate' last wrote."
    ),
    beam: Optional[int] = typer.Option(
        None, "--beam", "-b", help="Beam size, 1 (greedy) to 64. Default: the model's translate.beam (5)."
    ),
    n_best: int = typer.Option(
        1,
        "--n-best",
        "-n",
        help="Hypotheses kept per sentence (listed in --format jsonl), at most --beam; without --beam the beam "
        "widens to hold them.",
    ),
    fmt: format_choice("translate") = typer.Option(
        "text", "--format", "-f", help="text (the best translation per line) | jsonl (source, translation, n_best)."
    ),
    attention: bool = typer.Option(
        False,
        "--attention",
        help="Add the best hypothesis' attention weights to each JSONL line: source and target pieces (the last "
        "target row is </s>) and one row of weights over the source per target piece. Needs --format jsonl.",
    ),
    plot: Optional[str] = typer.Option(
        None,
        "--plot",
        metavar="DIR",
        help="Draw each line's attention as a heatmap, DIR/0001.png for line 1 (none for an empty line); "
        "stdout is unchanged.",
    ),
    batch_size: int = typer.Option(64, "--batch-size", help="Sentences decoded together (sorted by length)."),
    device: device_choice() = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
    precision: precision_choice("translate") = typer.Option("auto", "--precision", help=precision_help("translate")),
) -> None:
    """Translate each input line; an empty line gives an empty line, so outputs stay aligned with inputs.

    Example: echo "Ein Mann fährt Fahrrad." | lstmtext translate -m de-en.ckpt --beam 5
    """
    fmt, device, precision = value(fmt), value(device), value(precision)
    from lstmtext.tasks.translate import check_decoding

    check_decoding(beam, n_best, batch_size)
    folder = attention_outputs(attention, plot, fmt)
    model = model_or_default(model, "translate")
    from lstmtext.api import inference_precision, load
    from lstmtext.data import InputLines, write_lines

    predictor = load(model, device=device, task="translate", command="translate")
    if folder is not None:
        predictor.show_attention(jsonl=False, plot_dir=folder)
    reader = InputLines(source)
    with inference_precision(predictor, precision):
        for lines in reader.batches(batch_size):
            results = predictor.translate(lines, beam, n_best, attention)
            write_lines([predictor.format(text, result, fmt) for text, result in zip(lines, results)])
