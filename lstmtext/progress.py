"""Everything people read goes to stderr: notes, the training progress bar, metric tables.

Under ``torchrun`` every rank runs the same code; only rank 0 prints notes and progress, so each shows once.
The rank is the one ``set_rank`` was given (training/distributed.py, once the process group is up), else the
``RANK`` variable torchrun sets, which already holds before then (the device note comes first)."""

from __future__ import annotations

import os
import time

from rich.console import Console

console = Console(stderr=True, highlight=False)
_quiet = False
_rank: int | None = None


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = quiet


def set_rank(rank: int | None) -> None:
    """This process's rank in a distributed run; None reads ``RANK`` again."""
    global _rank
    _rank = rank


def is_main() -> bool:
    """True outside torchrun and on its rank 0."""
    if _rank is not None:
        return _rank == 0
    try:
        return int(os.environ.get("RANK", "0") or 0) == 0
    except ValueError:  # not a rank torchrun wrote: a plain process
        return True


def note(text: str) -> None:
    if not _quiet and is_main():
        console.print(text, markup=False, soft_wrap=True)


def fmt_seconds(s: float) -> str:
    s = int(max(0, s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class TrainProgress:
    """A rich progress bar on a terminal; a plain line every ``interval`` seconds otherwise (logs, CI)."""

    def __init__(self, total_steps: int, enabled: bool = True, interval: float = 30.0):
        self.total = max(1, total_steps)
        self.enabled = enabled and not _quiet and is_main()
        self.live = self.enabled and console.is_terminal
        self.interval = interval
        self._last_line = time.monotonic()
        self._bar = None
        if self.live:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[info]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._bar.add_task("train", total=self.total, info="")
            self._bar.start()

    def update(self, step: int, fraction: float, info: str, eta: float) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=min(step, self.total), info=info)
        elif time.monotonic() - self._last_line >= self.interval:
            self._last_line = time.monotonic()
            note(f"step {step} ({100 * fraction:.0f}%) {info} eta {fmt_seconds(eta)}")

    def print(self, text: str) -> None:
        if self.enabled:
            target = self._bar.console if self._bar is not None else console
            target.print(text, markup=False, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


class ByteProgress:
    """A pass over text: MB done and MB/s, as a rich bar on a terminal and a line every ``interval`` s otherwise."""

    def __init__(self, what: str, total: int | None, enabled: bool = True, interval: float = 30.0):
        self.what, self.total = what, total
        self.enabled = enabled and not _quiet and is_main()
        self.start = self._last = time.monotonic()
        self.interval, self.done, self.pieces = interval, 0, 0
        self._bar = None
        if self.enabled and console.is_terminal:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self._bar = Progress(
                TextColumn(f"[bold]{what}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=console
            )
            self._task = self._bar.add_task(what, total=total)
            self._bar.start()

    def advance(self, n_bytes: int, pieces: int) -> None:
        self.done += n_bytes
        self.pieces = pieces
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done)
        elif self.enabled and time.monotonic() - self._last >= self.interval:
            self._last = time.monotonic()
            of = f" of {self.total / 1e6:,.0f}" if self.total else ""
            note(f"{self.what}: {self.done / 1e6:,.0f}{of} MB, {self.rate():.1f} MB/s, {pieces:,} pieces")

    def rate(self) -> float:
        return self.done / 1e6 / max(1e-9, time.monotonic() - self.start)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
