"""The command line: a thin Typer app over library functions of the same names, one module per command.

torch, datasets and the task implementations are imported inside command bodies only, so ``lstmtext --help``
starts fast. ``app`` is the Typer app; ``main`` is the console script's entry point.
"""

from lstmtext.cli.app import app, main

__all__ = ["app", "main"]
