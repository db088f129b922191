"""``lstmtext tag``: named entities in raw text, one result per input line, streamed to stdout."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from lstmtext.cli.common import (
    default_model,
    device_choice,
    format_choice,
    precision_choice,
    precision_help,
    stream_predictions,
    value,
)


def tag(
    source: Optional[str] = typer.Argument(
        None, help="Text file, one sentence (or paragraph) per line; - or nothing for stdin."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="An NER checkpoint. Default: the one 'lstmtext train ner' last wrote."
    ),
    fmt: format_choice("ner") = typer.Option(
        "conll",
        "--format",
        "-f",
        help="conll (token<TAB>tag, blank line after each sentence) | jsonl | inline (coloured on a terminal) | "
        "html (a page, entities highlighted by type).",
    ),
    pretokenized: bool = typer.Option(
        False, "--pretokenized", help="Split words on whitespace only (the input is already tokenized)."
    ),
    context: bool = typer.Option(
        False,
        "--context",
        help="Read each line after the earlier lines of its paragraph "
        "(a blank line starts one); for a model trained with ner.context. Default: each line alone.",
    ),
    device: device_choice() = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
    precision: precision_choice("ner") = typer.Option("auto", "--precision", help=precision_help("ner")),
    explain: bool = typer.Option(
        False,
        "--explain",
        help="Attribute each entity to the words of its sentence (Integrated Gradients of the entity's share of "
        'the CRF path score, from an all-PAD baseline): jsonl adds "attributions" [[word, score], ...] and '
        '"ig" to each entity; inline adds a line per entity, words shaded green (+) / red (-) on a terminal, '
        "word(+0.123) when piped. Not with conll or --context.",
    ),
    explain_steps: int = typer.Option(50, "--explain-steps", help="Integration steps of --explain (1-1000)."),
) -> None:
    """Tag named entities (PER, LOC, ORG, …) in raw text.

    Example: echo "Angela Merkel met Emmanuel Macron in Paris." | lstmtext tag --format inline
    """
    fmt, device, precision = value(fmt), value(device), value(precision)
    from lstmtext.api import inference_precision, load

    predictor = load(model or str(default_model("ner")), device=device, task="ner", command="tag")
    predictor.pretokenized = pretokenized
    predictor.context = context
    if explain:
        _explain(predictor, fmt, context, explain_steps, precision)
    if context and predictor.recipe.options.context <= 0:
        from lstmtext.progress import note

        note("--context: this model was trained without ner.context, so each line is read alone")
    with inference_precision(predictor, precision):
        stream_predictions(predictor, source, fmt)


def _explain(predictor, fmt: str, context: bool, steps: int, precision: str) -> None:
    from lstmtext.errors import UsageError
    from lstmtext.explain import configure

    if context:
        raise UsageError("--explain reads each line alone; leave out --context")
    configure(predictor, steps, sys.stdout.isatty(), precision, fmt)
