"""``lstmtext export``: a checkpoint as an ONNX file that predicts without torch."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    checkpoint: str = typer.Argument(..., help="The checkpoint to export (an NER or sentiment model)."),
    output: Path = typer.Option(..., "--output", "-o", help="The .onnx file to write."),
    precision: str = typer.Option(
        "fp32", "--precision", help="fp32 | int8 (the LSTM and projection weights quantized; LSTM models only)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output."),
) -> None:
    """Export a model to ONNX: `lstmtext tag -m model.onnx` (or predict, evaluate) then runs on onnxruntime,
    without torch, so it starts in a fraction of the time. Needs pip install 'lstmtext[onnx]'.

    Example: lstmtext export ner.ckpt -o ner.onnx --precision int8 && echo "Angela Merkel visited Paris." |
    lstmtext tag -m ner.onnx
    """
    from lstmtext.export import export as run
    from lstmtext.progress import note

    run(checkpoint, output, precision, force)
    size = output.stat().st_size / 2**20
    note(f"wrote {output} ({size:.1f} MB, {precision}): lstmtext tag -m {output}")
