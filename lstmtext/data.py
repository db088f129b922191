"""Reading data (local files, stdin, ``hf:NAME[:CONFIG]``, named datasets such as ``conll2003:train``) and
cutting it into length-bucketed batches.

Every reader names the file and line of what it cannot read. Text is UTF-8; a BOM and CRLF line ends are
accepted silently; other bytes are an error rather than a silent replacement.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import random
import select
import sys
import zlib
from collections.abc import Iterable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from lstmtext.errors import OutputClosed, UsageError
from lstmtext.sources import is_hf, load_hf, resolve_source  # noqa: F401  (callers import them from here)

if TYPE_CHECKING:
    import numpy as np

MAX_LINE_BYTES = 16 * 1024 * 1024  # a line longer than this is refused rather than read into memory


# -- files shipped with lstmtext: the embedded samples and the recipes --------------------------------------
def _shipped(package: str, folder: str) -> Path:
    """The folder of the package ``lstmtext.PACKAGE`` (installed from the repository's FOLDER). Code run from a
    source checkout (a pyproject.toml beside the package) reads the checkout's own FOLDER: used through
    PYTHONPATH it has no such package, or, where another checkout is installed in editable mode, that one's."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / folder).is_dir():
        return root / folder
    try:
        return Path(str(resources.files(f"lstmtext.{package}")))
    except ModuleNotFoundError:
        return root / folder


def sample_path(task: str, split: str) -> Path:
    """The embedded sample for a task (data/TASK/SPLIT.*), the default data for ``lstmtext train TASK``."""
    folder = _shipped("samples", "data") / task
    found = sorted(folder.glob(f"{split}.*"))
    if not found:
        raise UsageError(f"no embedded sample for task '{task}' in {folder}; pass --train FILE")
    return found[0]


def recipe_names() -> list[str]:
    """The names of the shipped recipes (``--recipe NAME``)."""
    return sorted(p.stem for p in _shipped("recipes", "recipes").glob("*.toml"))


def recipe_path(recipe: str) -> Path:
    """A recipe file: a path, or the name of a shipped recipe (``sst2`` or ``sst2.toml``)."""
    path = Path(recipe)
    if path.is_file():
        return path
    if path.is_dir():
        raise UsageError(f"{recipe}: is a folder, expected a recipe file (.toml)")
    name = recipe[:-5] if recipe.endswith(".toml") else recipe
    named = _shipped("recipes", "recipes") / f"{name}.toml"
    if "/" not in name and "\\" not in name and named.is_file():
        return named
    raise UsageError(
        f"{recipe}: no such recipe file and no shipped recipe of that name (shipped: {', '.join(recipe_names())})"
    )


# -- local text files --------------------------------------------------------------------------------------
def _decode(raw: bytes, name: str, lineno: int) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(
            f"{name} line {lineno}: not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
            "convert the file to UTF-8, e.g. with iconv"
        ) from None
    if "\x00" in text:
        # SentencePiece would take it as a byte piece, but no text holds NUL: the file is binary or UTF-16.
        raise UsageError(
            f"{name} line {lineno}: a NUL byte at column {text.index(chr(0)) + 1}; expected UTF-8 text "
            "(is it a binary or UTF-16 file?)"
        )
    if lineno == 1 and text.startswith("\ufeff"):
        text = text[1:]
    return text.rstrip("\r\n")


decode_line = _decode  # the check of one line, for readers that split text themselves (corpus.py)


def check_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{path}: file not found")
    if p.is_dir():
        raise UsageError(f"{path}: is a folder, expected a file")
    return p


def read_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """(line number, text) for each line of a UTF-8 file (``.gz`` is opened transparently). A line longer than
    MAX_LINE_BYTES is refused once that much of it is read: a binary file or a file without line ends is never
    read whole into memory."""
    p = check_file(path)
    opener = gzip.open if p.suffix == ".gz" else open
    lineno = 0
    try:
        with opener(p, "rb") as f:
            while raw := _read_line(f, str(path), lineno + 1):
                lineno += 1
                yield lineno, _decode(raw, str(path), lineno)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise UsageError(f"{path} line {lineno + 1}: not a readable gzip file ({e or type(e).__name__})") from None


_CHUNK_BYTES = 1 << 20  # a long line is read in pieces, so a refused one costs the cap and no copy of it


def _read_line(f, name: str, lineno: int) -> bytes:
    """The next line with its end (b"" at the end of the file). One longer than MAX_LINE_BYTES (its "\\n" not
    counted) is refused after reading MAX_LINE_BYTES + 1 bytes of it."""
    parts: list[bytes] = []
    size = 0
    while size <= MAX_LINE_BYTES:
        part = f.readline(min(_CHUNK_BYTES, MAX_LINE_BYTES + 1 - size))
        if not part:
            break
        parts.append(part)
        size += len(part)
        if part.endswith(b"\n"):
            break
    if size > MAX_LINE_BYTES and not parts[-1].endswith(b"\n"):
        raise UsageError(f"{name} line {lineno}: longer than {_size(MAX_LINE_BYTES)}; is it a text file?")
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _size(n: int) -> str:
    return f"{n >> 20} MB" if n >= 1 << 20 else f"{n} bytes"


def file_kind(path: str | Path) -> str:
    """tsv | csv | jsonl | txt, from the extension (``.gz`` looked through)."""
    name = Path(path).name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    for ext, kind in ((".tsv", "tsv"), (".csv", "csv"), (".jsonl", "jsonl"), (".json", "jsonl"), (".ndjson", "jsonl")):
        if name.endswith(ext):
            return kind
    return "txt"


def read_records(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, record) from a TSV/CSV file with a header row or a JSONL file."""
    kind = file_kind(path)
    if kind == "jsonl":
        for lineno, line in read_lines(path):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise UsageError(f"{path} line {lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict):
                raise UsageError(f"{path} line {lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec
        return
    if kind not in ("tsv", "csv"):
        raise UsageError(f"{path}: unknown file type; expected .tsv, .csv or .jsonl (optionally .gz)")
    lines = read_lines(path)
    header_line = next(lines, None)
    if header_line is None:
        raise UsageError(f"{path}: file is empty; expected a header row and then one example per line")
    if kind == "tsv":
        header = [h.strip() for h in header_line[1].split("\t")]
        rows = ((n, line.split("\t")) for n, line in lines if line.strip())
    else:
        header = [h.strip() for h in _csv_fields(header_line[1], path, 1)]
        rows = ((n, _csv_fields(line, path, n)) for n, line in lines if line.strip())
    for lineno, fields in rows:
        if len(fields) != len(header):
            raise UsageError(
                f"{path} line {lineno}: expected {len(header)} fields ({shorten(', '.join(header))}), found {len(fields)}"
            )
        yield lineno, dict(zip(header, fields))


def shorten(text: str, limit: int = 120) -> str:
    """TEXT cut to about LIMIT characters for a message (a junk line's columns could fill megabytes)."""
    return text if len(text) <= limit else text[:limit] + "…"


def header_where(path: str | Path, lineno: int) -> str:
    """Where a file's columns are named, for a message about them: the header row (line 1) of a TSV/CSV file,
    the record's own line (LINENO) in JSONL."""
    return f"{path} line {lineno if file_kind(path) == 'jsonl' else 1}"


def _csv_fields(line: str, path, lineno: int) -> list[str]:
    # a field may be as long as a line (csv's own limit, 128 KiB, would refuse a long review)
    if csv.field_size_limit() < MAX_LINE_BYTES:
        csv.field_size_limit(MAX_LINE_BYTES)
    try:
        return next(csv.reader([line]))
    except csv.Error as e:
        raise UsageError(f"{path} line {lineno}: not a valid CSV row ({e})") from None


def pick_column(available: Iterable[str], wanted: str, candidates: tuple[str, ...], what: str, where: str) -> str:
    available = list(available)
    if wanted:
        if wanted not in available:
            raise UsageError(f"{where}: no column '{wanted}' for the {what} (columns: {shorten(', '.join(available))})")
        return wanted
    for c in candidates:
        if c in available:
            return c
    raise UsageError(
        f"{where}: cannot tell which column holds the {what} (columns: {shorten(', '.join(available))}); "
        f"name it with --set {what}_column=NAME"
    )


# -- batching (the dev slice of train is holdout.py's) --------------------------------------------------------
def bucket_batches(
    lengths: Sequence[int], batch_tokens: int, max_batch_size: int, shuffle: bool = False, seed: int = 0
) -> list[np.ndarray]:
    """Index arrays whose padded size (batch × longest) stays under batch_tokens.

    Sorting by length (random tie-break when shuffling) keeps padding near zero; shuffling the order of
    the batches keeps training stochastic. The plan is numpy throughout (the sort, and batches as slices of one
    index array), so the millions of windows of a large corpus cost seconds and a few bytes each; the random
    keys are drawn one per index in index order, so a seed gives the same batches however the lengths are held.
    """
    import numpy as np

    rng = random.Random(seed)
    lens = np.asarray(lengths, dtype=np.int64).reshape(-1)
    if not len(lens):
        return []
    if shuffle:
        keys = np.fromiter((rng.random() for _ in range(len(lens))), dtype=np.float64, count=len(lens))
        order = np.lexsort((keys, lens))  # by length, then by key
    else:
        order = np.argsort(lens, kind="stable")
    batches = np.split(order, _cuts(np.maximum(lens[order], 1), batch_tokens, max_batch_size))
    if shuffle:
        rng.shuffle(batches)
    return batches


def shuffled_epoch(lengths: Sequence[int], tc, epoch: int) -> list[np.ndarray]:
    """An epoch's training batches under the recipe's [train] ``tc``: bucketed, shuffled by (train.seed, epoch)."""
    return bucket_batches(lengths, tc.batch_tokens, tc.max_batch_size, shuffle=True, seed=tc.seed * 1000 + epoch)


def _cuts(ascending: np.ndarray, batch_tokens: int, max_batch_size: int) -> list[int]:
    """Where the batches of the sorted lengths begin (the first excepted): an item joins the batch in hand while
    (items + 1) × its length ≤ batch_tokens and items < max_batch_size, else it begins the next one. Equal
    lengths come in runs, and a run fills whole batches at once."""
    import numpy as np

    runs = np.flatnonzero(np.diff(ascending)) + 1
    cuts: list[int] = []
    start = 0
    for a, b in zip([0, *runs.tolist()], [*runs.tolist(), len(ascending)]):
        cap = min(batch_tokens // int(ascending[a]), max_batch_size)  # items of this length a batch holds
        j = a
        while j < b:
            room = cap - (j - start) if j > start else max(cap, 1)  # an item alone always makes a batch
            if room <= 0:
                cuts.append(j)
                start = j
                continue
            j += min(room, b - j)
            if j < b:  # the batch is full and the run goes on
                cuts.append(j)
                start = j
    return cuts


# -- streaming input for predict/tag/translate/generate ----------------------------------------------------
class InputLines:
    """Lines from a file or stdin, handed out in batches that never wait for input that has not arrived.

    Reading a file (or a fast pipe) fills whole batches; a line typed into an interactive pipe is handed
    out alone, at once, so its answer is printed before the next line is read.
    """

    def __init__(self, source: str | None):
        self.name = "stdin" if source in (None, "-") else str(source)
        if source in (None, "-"):
            self._fd = sys.stdin.fileno() if sys.stdin is not None else None
            self._own = False
            if self._fd is None:
                raise UsageError("no input: stdin is closed; pass an input file")
        else:
            check_file(source)
            self._fd = os.open(source, os.O_RDONLY)
            self._own = True
        self._buf = bytearray()  # grown in place: a refused long line is held once, not copied at every read
        self._eof = False
        self.lineno = 0
        self.seen_any = False

    def _more_ready(self) -> bool:
        try:
            ready, _, _ = select.select([self._fd], [], [], 0)
        except (OSError, ValueError):  # select does not take this kind of file: read blocking
            return True
        return bool(ready)

    def _read(self) -> None:
        chunk = os.read(self._fd, 1 << 16)
        if not chunk:
            self._eof = True
        self._buf.extend(chunk)
        if len(self._buf) > MAX_LINE_BYTES and b"\n" not in self._buf:
            raise UsageError(f"{self.name} line {self.lineno + 1}: longer than {MAX_LINE_BYTES >> 20} MB")

    def _next_line(self, block: bool) -> str | None:
        while b"\n" not in self._buf and not self._eof:
            if not block and not self._more_ready():
                return None
            self._read()
        if not self._buf:
            return None
        raw, sep, rest = self._buf.partition(b"\n")
        self._buf = rest
        self.lineno += 1
        self.seen_any = True
        return _decode(bytes(raw), self.name, self.lineno)

    def batches(self, max_batch: int = 64, max_chars: int = 1 << 20) -> Iterator[list[str]]:
        """Up to max_batch lines, and no more lines once they hold max_chars characters (memory stays bounded
        however the lines are cut)."""
        try:
            while True:
                batch: list[str] = []
                line = self._next_line(block=True)
                if line is None:
                    break
                batch.append(line)
                chars = len(line)
                pending: UsageError | None = None
                while len(batch) < max_batch and chars < max_chars:
                    try:
                        line = self._next_line(block=False)
                    except UsageError as e:  # answer the lines before the bad one first
                        pending = e
                        break
                    if line is None:
                        break
                    batch.append(line)
                    chars += len(line)
                yield batch
                if pending is not None:
                    raise pending
        finally:
            if self._own:
                os.close(self._fd)
        if not self.seen_any:
            raise UsageError(f"no input: {self.name} is empty; expected one text per line")


def write_line(text: str) -> None:
    """Write one line of output and flush it, so a reader downstream sees it at once."""
    write_lines([text])


def write_lines(texts: list[str]) -> None:
    """Write a batch's lines with one write and one flush (a flush per line is a syscall per line)."""
    try:
        sys.stdout.write("".join(t + "\n" for t in texts))
        sys.stdout.flush()
    except BrokenPipeError:
        raise OutputClosed() from None


def sha256_file(path: str | Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
