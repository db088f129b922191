"""Training text larger than memory, read as a stream: its sources, their content keys, the lines held out for
validation and the tokenizer's sample. tokenstream.py turns a Corpus into ids on disk.

A task whose training data is one long stream of pieces (``tasks.contract.Streamed``: the language model) never
reads its training text into memory. ``Corpus`` reads the sources as one sequence of lines, in blocks: raw bytes
for plain text files (decoded where they are tokenized), lines from the task's reader for other kinds.

Everything derived from the text is cached under ``cache_dir()``, keyed by content. The content hash of a file is
remembered by its path, size and modification time, as build tools do, so a cache hit does not read the corpus
again.
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import os
import random
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from lstmtext.data import MAX_LINE_BYTES, check_file, decode_line, file_kind
from lstmtext.errors import UsageError
from lstmtext.paths import home
from lstmtext.sources import is_hf, resolve_source

BLOCK_BYTES = 1 << 22  # text per unit of work handed to a tokenizer process
CACHE_ENV = "LSTMTEXT_CACHE"


def cache_dir() -> Path:
    """``$LSTMTEXT_CACHE`` (``--cache-dir``), else ``$LSTMTEXT_HOME/cache``."""
    return Path(os.environ.get(CACHE_ENV) or home() / "cache")


# -- sources ---------------------------------------------------------------------------------------------------
def expand_sources(sources: Sequence[str], folders: bool) -> list[str]:
    """Each source as the readers take it: a glob pattern becomes its matches (sorted) and, with ``folders``, a
    folder its files (sorted, recursively, hidden ones skipped); files, PREFIXes and ``hf:`` sources stay as they
    are. Without ``folders`` a folder stays too (the translation reader finds SPLIT.LANG files in one)."""
    out: list[str] = []
    for src in sources:
        p = Path(src)
        if is_hf(src) or p.is_file() or (p.is_dir() and not folders):
            out.append(src)
        elif p.is_dir():
            files = sorted(
                str(f)
                for f in p.rglob("*")
                if f.is_file() and not any(part.startswith(".") for part in f.relative_to(p).parts)
            )
            if not files:
                raise UsageError(f"{src}: the folder holds no files")
            out.extend(files)
        elif glob.has_magic(src):
            found = sorted(f for f in glob.glob(src, recursive=True) if Path(f).is_file())
            if not found:
                raise UsageError(f"{src}: no file matches this pattern")
            out.extend(found)
        else:
            out.append(src)  # the reader says what is wrong with it (a PREFIX is fine, a missing file is not)
    return out


def named_sources(named: Sequence[str], folders: bool) -> list[tuple[str, str]]:
    """(the source as the user named it, a source the readers take) for each source ``named`` stands for: a
    named dataset is resolved (``conll2003:train`` → its file), then globs and folders are expanded."""
    return [(name, src) for name in named for src in expand_sources([resolve_source(name)], folders)]


def refuse_dev_in_train(dev_src: str, pairs: list[tuple[str, str]]) -> None:
    """A dev file that is also read as training text (a final recipe trains on dev; --dev names it again)
    would select checkpoints on text the run trains on. ``pairs`` are named_sources' (name, source). Only what
    names one thing either way is compared: a file (by real path) and an ``hf:`` source with its @SPLIT. A
    folder or PREFIX, or an ``hf:`` source without a split, stands for another split as dev than as train."""

    def identity(src: str) -> str | None:
        if is_hf(src):
            return src if "@" in src else None
        return os.path.realpath(src) if os.path.isfile(src) else None

    dev = identity(resolve_source(dev_src)) if dev_src else None
    for name, src in pairs if dev else []:
        if identity(src) == dev:
            raise UsageError(
                f"data.dev {dev_src} is also training data (data.train {name}): its scores would measure text "
                "the run trains on; leave it out of the training data (--train replaces the recipe's), or pass "
                "another --dev"
            )


def content_hash(path: str | Path) -> str:
    """sha256 of a file, remembered by (real path, size, mtime) under the cache so it is computed once."""
    p = Path(path)
    st = p.stat()
    stamp = f"{p.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
    memo = cache_dir() / "hashes" / hashlib.sha1(stamp.encode()).hexdigest()
    try:
        return memo.read_text().strip()
    except OSError:
        pass
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    digest = h.hexdigest()
    write_atomic(memo, digest.encode())
    return digest


def source_key(source: str) -> str:
    """What identifies a source's text: its content hash, or for ``hf:`` the name (the hub's text is trusted to
    stay what the name says; delete the cache to read it again)."""
    if is_hf(source):
        return "hf:" + hashlib.sha256(source.encode()).hexdigest()
    return content_hash(check_file(source))


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# -- the text as blocks of lines -------------------------------------------------------------------------------
@dataclass
class Block:
    """Consecutive lines: raw UTF-8 bytes of a plain text file (decoded where they are tokenized) or str lines."""

    payload: bytes | list[str]
    name: str  # the file, for messages
    first: int  # the line number (1-based, in its file) of the block's first line
    index: int  # the index of the first line in the whole corpus (0-based)
    count: int  # lines in the block


def decode_block(block: Block) -> list[str]:
    """The block's lines, checked as ``data.read_lines`` checks each line (UTF-8, no NUL, BOM and CR dropped)."""
    if isinstance(block.payload, list):
        return block.payload
    raw = block.payload[:-1] if block.payload.endswith(b"\n") else block.payload
    try:
        text = raw.decode("utf-8")
        ok = "\x00" not in text
    except UnicodeDecodeError:
        ok = False
    if not ok:  # find and name the first bad line
        for i, line in enumerate(raw.split(b"\n")):
            decode_line(line, block.name, block.first + i)
        raise UsageError(f"{block.name} line {block.first}: not UTF-8 text")  # not reached: a line fails above
    lines = text.split("\n")
    if block.first == 1 and lines[0].startswith("\ufeff"):
        lines[0] = lines[0][1:]
    return [line.rstrip("\r") for line in lines]


class Corpus:
    """The training text: its sources read in order as one sequence of lines. Plain text files are read as raw
    blocks (the cheapest way through gigabytes); other kinds go through the task's ``lines_of(source)``."""

    def __init__(self, sources: list[str], lines_of: Callable[[str], Iterator[str]]):
        self.sources, self.lines_of = sources, lines_of
        self._keys: list[str] | None = None

    def keys(self) -> list[str]:
        if self._keys is None:
            self._keys = [source_key(s) for s in self.sources]
        return self._keys

    def total_bytes(self) -> int | None:
        """The size of the text when every source is an uncompressed file (for the progress bar), else None."""
        if any(is_hf(s) or s.endswith(".gz") or file_kind(s) != "txt" for s in self.sources):
            return None
        return sum(Path(s).stat().st_size for s in self.sources)

    def blocks(self) -> Iterator[Block]:
        index = 0
        for src in self.sources:
            raw = not is_hf(src) and file_kind(src) == "txt"
            for block in _raw_blocks(src, index) if raw else _line_blocks(self.lines_of(src), src, index):
                index += block.count
                yield block

    def count_lines(self) -> int:
        return sum(b.count for b in self.blocks())

    def lines_at(self, wanted: Sequence[int]) -> dict[int, str]:
        """The lines at the given corpus indices (one pass, keeping only those)."""
        want = sorted(set(wanted))
        out: dict[int, str] = {}
        j = 0
        for block in self.blocks():
            end = block.index + block.count
            if j < len(want) and want[j] < end:
                lines = decode_block(block)
                while j < len(want) and want[j] < end:
                    out[want[j]] = lines[want[j] - block.index]
                    j += 1
        return out


def _raw_blocks(src: str, index: int) -> Iterator[Block]:
    path = check_file(src)
    opener = gzip.open if path.suffix == ".gz" else open
    line = 1
    try:
        with opener(path, "rb") as f:
            while data := f.read(BLOCK_BYTES):
                if not data.endswith(b"\n"):
                    rest = f.readline(MAX_LINE_BYTES + 1)
                    if len(rest) > MAX_LINE_BYTES:
                        at = line + data.count(b"\n")
                        raise UsageError(f"{src} line {at}: longer than {MAX_LINE_BYTES >> 20} MB; is it a text file?")
                    data += rest
                count = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
                yield Block(data, src, line, index, count)
                line, index = line + count, index + count
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise UsageError(f"{src} line {line}: not a readable gzip file ({e or type(e).__name__})") from None


def _line_blocks(lines: Iterator[str], src: str, index: int) -> Iterator[Block]:
    batch: list[str] = []
    size, line = 0, 1
    for text in lines:
        batch.append(text)
        size += len(text)
        if size >= BLOCK_BYTES:
            yield Block(batch, src, line, index, len(batch))
            line, index, batch, size = line + len(batch), index + len(batch), [], 0
    if batch:
        yield Block(batch, src, line, index, len(batch))


# -- held-out lines and the tokenizer's sample -----------------------------------------------------------------
@dataclass(frozen=True)
class Holdout:
    """A seeded slice of the training lines kept for validation (``data.valid_fraction``, ``data.valid_max``)."""

    seed: int
    fraction: float
    cap: int

    def pick(self, n_lines: int) -> list[int]:
        if self.fraction <= 0 or n_lines < 2:
            return []
        k = min(self.cap, max(1, int(n_lines * self.fraction)))
        return sorted(random.Random(self.seed).sample(range(n_lines), k))


def sample_lines(corpus: Corpus, n_lines: int, held: Sequence[int], k: int, seed: int) -> list[str]:
    """A seeded sample of ``k`` training lines (all of them, in order, when there are no more), for SentencePiece:
    its memory is bounded by ``k``, whatever the size of the text."""
    held_set = set(held)
    if n_lines - len(held_set) <= k:
        chosen = [i for i in range(n_lines) if i not in held_set]
    else:
        pool = random.Random(seed).sample(range(n_lines), min(n_lines, k + len(held_set)))
        chosen = [i for i in pool if i not in held_set][:k]
    found = corpus.lines_at(chosen)
    return [found[i] for i in sorted(found)]
