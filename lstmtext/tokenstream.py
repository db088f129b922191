"""The token stream of a Corpus: written to disk once, read back a window at a time.

``open_stream`` tokenizes a corpus (in worker processes when the text is large) into shards of ids, uint16 where
the vocabulary fits and uint32 otherwise; ``TokenStream`` and ``Windows`` read fixed windows of it from the files
(``os.pread``), so resident memory does not grow with the corpus. The stream is what the in-memory path builds: one EOS,
then each line's pieces followed by EOS. Streams are cached under ``corpus.cache_dir()``, keyed by the content of
the text, the tokenizer and the lines held out for validation, so a second run on the same text opens them at
once.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import deque
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from lstmtext.corpus import Block, Corpus, Holdout, cache_dir, decode_block
from lstmtext.errors import UsageError
from lstmtext.tokenizer import EOS

FORMAT = 1  # bump when the layout of a stream changes: older caches are then rebuilt, never misread
SHARD_PIECES = 1 << 25  # ids per shard file; every shard but the last holds exactly this many
POOL_MIN_BYTES = 16 << 20  # below this much text, tokenizer processes cost more to start than they save
WORKERS_ENV = "LSTMTEXT_WORKERS"


# -- tokenizing into shards ------------------------------------------------------------------------------------
_WORKER_TOK = None


def _init_worker(proto: bytes) -> None:
    global _WORKER_TOK
    from lstmtext.tokenizer import Tokenizer

    _WORKER_TOK = Tokenizer(proto)


def _encode(args: tuple[Block, tuple[int, ...], str]) -> tuple[np.ndarray, list[str], int, int]:
    """A block's ids (each line's pieces, then EOS), the held-out lines' text, the block's text bytes and the
    number of lines encoded."""
    block, held, dtype = args
    lines = decode_block(block)
    dev = [lines[i - block.index] for i in held]
    if held:
        skip = {i - block.index for i in held}
        lines = [t for j, t in enumerate(lines) if j not in skip]
    ids = _WORKER_TOK.sp.Encode(lines, out_type=int, num_threads=1)
    n = sum(map(len, ids)) + len(ids)
    flat = np.fromiter((i for seq in ids for i in (*seq, EOS)), dtype=dtype, count=n)
    size = len(block.payload) if isinstance(block.payload, bytes) else sum(len(t) for t in lines)
    return flat, dev, size, len(lines)


def _encoded(corpus: Corpus, proto: bytes, held: Sequence[int], dtype: str, workers: int) -> Iterator[tuple]:
    """``_encode`` of every block in order; in ``workers`` processes with a few blocks in flight (bounded memory)."""
    held_sorted = list(held)

    def jobs() -> Iterator[tuple]:
        j = 0
        for block in corpus.blocks():
            end = block.index + block.count
            mine = []
            while j < len(held_sorted) and held_sorted[j] < end:
                mine.append(held_sorted[j])
                j += 1
            yield block, tuple(mine), dtype

    if workers <= 1:
        _init_worker(proto)
        yield from map(_encode, jobs())
        return
    import multiprocessing

    # spawn, not fork: the parent has torch's thread pools, which a forked child must not inherit
    with multiprocessing.get_context("spawn").Pool(workers, _init_worker, (proto,)) as pool:
        pending: deque = deque()
        for job in jobs():
            pending.append(pool.apply_async(_encode, (job,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


class _ShardWriter:
    def __init__(self, folder: Path, dtype: str, per: int):
        self.folder, self.dtype, self.per = folder, dtype, per
        self.pieces = 0

    def write(self, ids: np.ndarray) -> None:
        while len(ids):
            room = self.per - self.pieces % self.per
            with open(self.folder / f"shard-{self.pieces // self.per:05d}.bin", "ab") as f:
                f.write(ids[:room].tobytes())
            self.pieces += min(room, len(ids))
            ids = ids[room:]


def workers_for(corpus: Corpus) -> int:
    """``$LSTMTEXT_WORKERS`` processes when set (1 = tokenize in this process); else one per core, or none for a
    small text."""
    if os.environ.get(WORKERS_ENV, "").strip():
        try:
            return max(1, int(os.environ[WORKERS_ENV]))
        except ValueError:
            raise UsageError(f"${WORKERS_ENV}={os.environ[WORKERS_ENV]!r}: expected a number of processes") from None
    size = corpus.total_bytes()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return 1 if (size is not None and size < POOL_MIN_BYTES) or cores < 2 else min(cores, 8)


def write_stream(
    folder: Path, corpus: Corpus, proto: bytes, vocab: int, held: Sequence[int], progress
) -> tuple[dict, int, float]:
    """Tokenize the corpus into ``folder`` (its shards and dev.jsonl); returns the index, the bytes of text read
    and the seconds it took."""
    dtype = "uint16" if vocab <= 1 << 16 else "uint32"
    writer = _ShardWriter(folder, dtype, SHARD_PIECES)
    writer.write(np.array([EOS], dtype=dtype))
    dev: list[str] = []
    t0, done, lines = time.perf_counter(), 0, 0
    for ids, dev_lines, size, n_lines in _encoded(corpus, proto, held, dtype, workers_for(corpus)):
        writer.write(ids)
        dev.extend(dev_lines)
        done, lines = done + size, lines + n_lines
        progress.advance(size, writer.pieces)
    (folder / "dev.jsonl").write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in dev), "utf-8")
    seconds = time.perf_counter() - t0
    index = {"format": FORMAT, "pieces": writer.pieces, "shard_pieces": SHARD_PIECES, "dtype": dtype, "lines": lines}
    return index, done, seconds


# -- reading ---------------------------------------------------------------------------------------------------
class TokenStream:
    """The ids of a stream folder. Windows are read with ``os.pread`` from the shard files rather than through a
    memory map: a map's pages, with the kernel's read-around at each fault, count as this process's resident
    memory and grow with the corpus, while a read costs only the bytes asked for (the page cache still holds the
    file for every process)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.index = json.loads((folder / "index.json").read_text("utf-8"))
        if self.index.get("format") != FORMAT:
            raise UsageError(f"{folder}: a token stream of another format; delete it to rebuild it")
        self.pieces, self.per = self.index["pieces"], self.index["shard_pieces"]
        self.dtype = np.dtype(self.index["dtype"])
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return self.pieces

    def _fd(self, k: int) -> int:
        if k not in self._fds:
            self._fds[k] = os.open(self.folder / f"shard-{k:05d}.bin", os.O_RDONLY)
        return self._fds[k]

    def read(self, start: int, end: int) -> np.ndarray:
        """Ids [start, end) as int64."""
        parts = []
        size = self.dtype.itemsize
        while start < end:
            k, off = divmod(start, self.per)
            take = min(end - start, self.per - off)
            parts.append(np.frombuffer(os.pread(self._fd(k), take * size, off * size), dtype=self.dtype))
            start += take
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    def __del__(self) -> None:
        for fd in getattr(self, "_fds", {}).values():
            os.close(fd)

    def dev_lines(self) -> list[str]:
        with open(self.folder / "dev.jsonl", encoding="utf-8") as f:
            return [json.loads(line) for line in f]


class Windows(Sequence):
    """Features {"ids", "length", "start"} for windows of ``length`` ids starting every ``step`` ids of a stream;
    built when indexed, so a corpus of any size costs memory only for the windows of the batch in hand."""

    def __init__(self, stream: TokenStream, length: int, step: int):
        self.stream, self.length = stream, length
        n = len(stream)
        self.starts = range(0, max(1, n - 1), step)
        self.lengths = np.minimum(length, n - np.arange(self.starts.start, self.starts.stop, step))

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, i):  # an int: Sequence's slicing is not needed by the loop
        s = self.starts[i]
        t = min(s + self.length, len(self.stream))
        return {"ids": self.stream.read(s, t), "length": t - s, "start": s}


# -- the cache -------------------------------------------------------------------------------------------------
def stream_key(source_keys: list[str], proto: bytes, holdout: Holdout | None) -> str:
    spec = {
        "format": FORMAT,
        "sources": source_keys,
        "tokenizer": hashlib.sha256(proto).hexdigest(),
        "holdout": None if holdout is None else [holdout.seed, holdout.fraction, holdout.cap],
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


def open_stream(corpus: Corpus, proto: bytes, vocab: int, holdout: Holdout | None, progress) -> TokenStream:
    """The corpus's token stream from the cache, written first if it is not there."""
    key = stream_key(corpus.keys(), proto, holdout)
    folder = cache_dir() / "streams" / key[:24]
    if (folder / "index.json").is_file():
        return TokenStream(folder)
    held = holdout.pick(corpus.count_lines()) if holdout else []
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        index, size, seconds = write_stream(tmp, corpus, proto, vocab, held, progress)
        index.update(key=key, sources=corpus.sources, bytes=size, seconds=round(seconds, 3), held_out=len(held))
        (tmp / "index.json").write_text(json.dumps(index, indent=1), "utf-8")
        try:
            os.rename(tmp, folder)
        except OSError:  # another run wrote the same stream meanwhile: theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return TokenStream(folder)
