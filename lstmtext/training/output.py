"""The files of a run: the checkpoint, its resume state and metrics log beside it, and the lock that keeps a
second training from writing them at the same time."""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from lstmtext import checkpoint as ckpt
from lstmtext.errors import UsageError
from lstmtext.paths import companion


@dataclass
class Output:
    checkpoint: Path
    resume: Path
    log: Path
    lock: Path

    @classmethod
    def at(cls, out: Path) -> Output:
        return cls(
            out,
            companion(out, "resume.safetensors"),
            companion(out, "metrics.jsonl"),
            out.with_name(out.name + ".lock"),
        )

    def check(self, resume: bool, force: bool) -> None:
        """Refuse an output that is a folder, or that exists without --force or --resume."""
        out = self.checkpoint
        if out.is_dir():
            raise UsageError(f"output {out} is a folder; pass a file path such as {out}/model.ckpt")
        if out.exists() and not (resume or force):
            raise UsageError(f"output {out} exists; pass --force to overwrite it or --resume to continue its run")

    def remove_stale_temp_files(self) -> None:
        """A killed run's half-written files (only under the lock: another run's are never half-written)."""
        for path in (self.checkpoint, self.resume):
            for tmp in ckpt.stale_temp_files(path):
                tmp.unlink(missing_ok=True)

    def start_over(self) -> None:
        """--force: the old run's checkpoint, resume state and log go, so nothing can continue or mix with it."""
        for path in (self.checkpoint, self.resume, self.log):
            path.unlink(missing_ok=True)


class OutputLock:
    """An exclusive flock on ``OUT.lock`` for the whole run; a second training of the same output is refused.
    The kernel releases it when the process dies, so a killed run never leaves a stuck lock."""

    def __init__(self, path: Path, target: Path):
        self.path, self.target, self.fd = path, target, None

    def __enter__(self) -> OutputLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode("ascii", "replace").strip() or "?"
                os.close(fd)
                raise UsageError(f"{self.target} is being written by another training (pid {holder})") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:  # else the holder removed the file between our open and our lock: take the new one
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)  # while still held, so no waiting run locks a file that is gone
        os.close(self.fd)
        self.fd = None
