"""The failures the CLI reports without a traceback: each becomes one line on stderr (or silence) and an exit code."""


class UsageError(Exception):
    """Bad usage or bad input (exit code 2). The message names the file, the line and what was expected."""


class TrainingStopped(Exception):
    """Training stopped early for a reason the user must act on (NaN loss); the last good checkpoint is kept."""


class OutputClosed(Exception):
    """The reader of stdout went away (``| head -1``). Not an OSError, so Click does not turn it into exit 1."""
