"""The Typer app, the one place where failures become one stderr line and an exit code, and the entry point.

Exit codes: 0 done (also when the reader of stdout goes away, ``| head -1``); 1 a runtime failure (one line
naming the exception; LSTMTEXT_DEBUG=1 raises it with its traceback); 2 a usage error (bad option, argument or
input: ``lstmtext: error: ...``, with Click's hint where it has one); 130 Ctrl-C.

The handling lives in the group's ``main``, which the console script and an in-process run (the tests'
``run_cli``, Typer's CliRunner) both go through, so a test run in process sees what a user's shell sees.
"""

from __future__ import annotations

import difflib
import gc
import os
import sys
from collections.abc import Sequence
from contextlib import redirect_stdout
from typing import Any, Optional

import typer
from typer.core import TyperGroup

from lstmtext.cli import (
    average,
    benchmark,
    ensemble,
    evaluate,
    export,
    generate,
    info,
    inspect,
    plot,
    predict,
    tag,
    tokenizer,
    train,
    translate,
    tune,
)
from lstmtext.cli.common import error
from lstmtext.errors import OutputClosed, TrainingStopped, UsageError

# Click's errors: newer Typers carry their own copy of Click, whose errors are all TyperException; older ones
# use Click itself.
if hasattr(typer, "TyperException"):
    ClickError: type[Exception] = typer.TyperException
else:  # pragma: no cover - Typer before its copy of Click
    import click

    ClickError = click.ClickException


class Escaped(Exception):
    """Carries an exception of a command past Typer's own handling (which turns Ctrl-C and a closed pipe into
    silent exit codes) to ``Group.run``."""

    def __init__(self, original: BaseException):
        super().__init__(repr(original))
        self.original = original


class Group(TyperGroup):
    """A Typer group whose ``main`` prints every failure as one line and exits with the contract's code."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # No arguments is a usage error (Click's own convention from 8.2 on): the help, on stderr, and exit 2.
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            with redirect_stdout(sys.stderr):  # Typer's rich help prints to stdout itself
                text = ctx.get_help()
                if text:
                    typer.echo(text)
            ctx.exit(2)
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        try:
            return super().resolve_command(ctx, args)
        except ClickError as e:  # "No such command": name the near ones, as newer Typers do themselves
            matches = difflib.get_close_matches(args[0], list(self.commands)) if args else []
            if matches and "Did you mean" not in e.message:
                e.message = f"{e.message.rstrip('.')}. Did you mean {', '.join(map(repr, matches))}?"
            raise

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except (ClickError, typer.Exit, typer.Abort, Escaped, SystemExit):
            raise
        except BaseException as e:  # KeyboardInterrupt and BrokenPipeError too
            raise Escaped(e) from e

    def main(
        self,
        args: Optional[Sequence[str]] = None,
        prog_name: Optional[str] = None,
        complete_var: Optional[str] = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        sys.exit(self.run(args, prog_name, complete_var, **extra))

    def run(
        self,
        args: Optional[Sequence[str]] = None,
        prog_name: Optional[str] = None,
        complete_var: Optional[str] = None,
        **extra: Any,
    ) -> int:
        """Run a command line; return its exit code, having printed the error line if there is one."""
        try:
            rv = super().main(args, prog_name or "lstmtext", complete_var, standalone_mode=False, **extra)
        except ClickError as e:
            # One line, without the "Value error, " that Typer's validation puts before a choice's message.
            error(" ".join(e.format_message().replace(": Value error, ", ": ").split()))
            return e.exit_code
        except typer.Abort:
            error("interrupted")
            return 130
        except Escaped as e:
            return failure(e.original)
        return rv if isinstance(rv, int) else 0  # an int: the code of an Exit (--help, --version, ctx.exit)


def failure(e: BaseException) -> int:
    """The line and exit code for an exception a command raised."""
    if isinstance(e, (UsageError, TrainingStopped)):
        error(str(e))
        return 2
    if isinstance(e, (OutputClosed, BrokenPipeError)):
        # The reader downstream went away: stop quietly, and keep Python from complaining at exit when it
        # flushes stdout.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):  # a captured stdout (a test run) has no descriptor
            pass
        return 0
    if isinstance(e, KeyboardInterrupt):
        error("interrupted")
        return 130
    if os.environ.get("LSTMTEXT_DEBUG"):
        raise e
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    error(f"{type(e).__name__}: {first} (set LSTMTEXT_DEBUG=1 for the traceback)")
    return 1


def version_callback(value: bool) -> None:
    if value:
        from lstmtext import __version__

        typer.echo(f"lstmtext {__version__}")
        raise typer.Exit(0)


app = typer.Typer(
    name="lstmtext",
    cls=Group,
    help="One SentencePiece tokenizer and one BiLSTM encoder for sentiment, NER, language modelling and "
    "translation.\n\nQuick start:  lstmtext train sentiment && echo 'a gorgeous, witty film' | lstmtext predict",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass  # the root's own option; the app's help text stands for it


for command in (
    train.train,
    evaluate.evaluate,
    predict.predict,
    info.info,
    average.average,
    ensemble.ensemble,
    export.export,
    tag.tag,
    generate.generate,
    translate.translate,
    inspect.inspect,
    plot.plot,
    tune.tune,
):
    app.command()(command)
app.add_typer(tokenizer.app, name="tokenizer", cls=Group)
app.add_typer(benchmark.app, name="benchmark", cls=Group)


def command() -> Group:
    """The Click command the app builds (task choices and help are read from the task modules as it runs)."""
    return typer.main.get_command(app)  # type: ignore[return-value]


def main() -> None:
    """The console script ``lstmtext`` and ``python -m lstmtext``."""
    code = command().run(sys.argv[1:], "lstmtext")
    # Python's last collections at exit walk every object torch made, a large share of a short run's time.
    # Frozen, they are skipped (the output is written; atexit handlers still run).
    gc.freeze()
    sys.exit(code)
