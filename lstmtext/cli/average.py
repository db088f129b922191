"""``lstmtext average``: the mean of the weights of runs that share their start (a model soup)."""

from __future__ import annotations

from pathlib import Path

import typer


def average(
    checkpoints: list[str] = typer.Argument(..., help="Two or more checkpoints of runs that share their start."),
    output: Path = typer.Option(..., "--output", "-o", help="The averaged checkpoint to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output."),
) -> None:
    """Average the weights of runs that started from the same weights (a model soup: one model, at one
    model's cost). Give the runs the same --init-from and --set train.init_seed=N, and each its own --seed.

    Example: lstmtext average run1.ckpt run2.ckpt -o soup.ckpt && lstmtext evaluate soup.ckpt test.conll
    """
    from lstmtext.api import average as run
    from lstmtext.progress import note

    run(checkpoints, output, force)
    note(f"wrote {output}: the mean of {len(checkpoints)} checkpoints (its dev score is unknown: evaluate it)")
