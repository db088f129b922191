"""``lstmtext ensemble``: several trained models as one checkpoint that combines their predictions."""

from __future__ import annotations

from pathlib import Path

import typer


def ensemble(
    checkpoints: list[str] = typer.Argument(..., help="Two or more checkpoints of one recipe (sentiment or ner)."),
    output: Path = typer.Option(..., "--output", "-o", help="The ensemble checkpoint to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output."),
) -> None:
    """Combine trained models into one checkpoint that predicts with all of them: a classifier averages its
    members' class probabilities, a tagger their CRF scores. Members may differ in seed and start; they share the
    tokenizer, labels and model shape. It costs one forward pass per member; evaluate, predict, tag and
    benchmark speed take it as any checkpoint.

    Example: lstmtext ensemble s1.ckpt s2.ckpt s3.ckpt -o ens.ckpt && lstmtext evaluate ens.ckpt conll2003:test
    """
    from lstmtext.ensemble import write
    from lstmtext.progress import note

    write(checkpoints, output, force)
    note(f"wrote {output}: an ensemble of {len(checkpoints)} models (its dev score is unknown: evaluate it)")
