"""A streamed task's data (tasks.contract.Streamed, the language model): the training text goes through the token
cache on disk (lstmtext/corpus.py) instead of into memory; the dev text is read as examples, as for any task.

The order of work keeps the cost of a large corpus to what it must be: hashing the sources (remembered across
runs), then, only when the cache does not already hold them, one counting pass (for the held-out lines), one pass
for the tokenizer's sample and one tokenizing pass. A second run on the same text and settings reads nothing but
the shard files."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict
from pathlib import Path

from lstmtext import checkpoint as ckpt
from lstmtext.corpus import (
    Corpus,
    Holdout,
    cache_dir,
    named_sources,
    refuse_dev_in_train,
    sample_lines,
    write_atomic,
)
from lstmtext.data import resolve_source, sample_path
from lstmtext.errors import UsageError
from lstmtext.holdout import dev_note
from lstmtext.progress import ByteProgress, note
from lstmtext.tokenizer import Tokenizer
from lstmtext.tokenstream import FORMAT, TokenStream, open_stream
from lstmtext.training.distributed import Dist, broadcast_bytes

NO_TEXT = "no text found; expected plain text, one paragraph per line"


def prepare_streamed(mod, recipe, d: Dist, clock, stored_meta: dict | None, init_meta: dict | None, show: bool):
    """(tokenizer, training windows, dev features, the sources read as (name, path), the token stream's index) of a
    streamed task; training/prepare.py makes them its Prepared."""
    task, tc, dc = recipe.task, recipe.train, recipe.data
    named = dc.train or [str(sample_path(task, "train"))]
    dev_src = dc.dev or ("" if dc.train else str(sample_path(task, "dev")))
    if not dev_src and dc.valid_by != "example":
        raise UsageError(f'data.valid_by = "{dc.valid_by}": a streamed corpus is held out by line; use "example"')
    with clock.phase("read"):
        pairs = named_sources(named, folders=True)
        refuse_dev_in_train(dev_src, pairs)
        corpus = Corpus([src for _, src in pairs], lambda src: mod.stream_lines(src, recipe.options, "train"))
        corpus.keys()  # hash (or recall) every source now, so a missing file fails before any work
    holdout = (
        None
        if dev_src or dc.valid_fraction <= 0
        else Holdout(dc.split_seed or tc.seed, dc.valid_fraction, dc.valid_max)
    )
    with clock.phase("tokenizer"):
        tok = _tokenizer(corpus, recipe, holdout, d, stored_meta or init_meta)
    with clock.phase("featurize"):
        stream = _stream(corpus, tok, holdout, d, show)
        train_feats = mod.stream_windows(stream, recipe)
        if dev_src:
            dev_examples = mod.read(resolve_source(dev_src), recipe.options, "validation")
        else:
            dev_examples = [
                {"text": t, "where": f"held-out line {i}", "split": "validation"}
                for i, t in enumerate(stream.dev_lines(), 1)
            ]
        dev_feats = mod.featurize(dev_examples, tok, [], recipe) if dev_examples else []
    index = stream.index
    held = "" if dev_src else " (a seeded slice of train)"
    note(
        f"{task}: {index['pieces']:,} training pieces from {index['bytes'] / 1e6:,.1f} MB of text "
        f"({len(train_feats):,} windows), {dev_note(len(dev_feats), held)}, vocabulary {len(tok)}; token stream {stream.folder}"
    )
    read = [*pairs, (dev_src, resolve_source(dev_src))] if dev_src else pairs
    return tok, train_feats, dev_feats, read, index


def _tokenizer(corpus: Corpus, recipe, holdout: Holdout | None, d: Dist, meta: dict | None) -> Tokenizer:
    """The resumed or --init-from tokenizer; else the one trained on this text with these settings before (the
    cache); else one trained now, on a seeded sample of ``tokenizer.max_sentences`` lines (``tokenizer.max_chars``
    characters at most)."""
    if meta:
        return Tokenizer(ckpt.tokenizer_proto(meta))
    proto = None
    if d.main:
        tk, seed = recipe.tokenizer, recipe.data.split_seed or recipe.train.init_seed or recipe.train.seed
        spec = {"format": FORMAT, "sources": corpus.keys(), "holdout": _spec(holdout), "tokenizer": asdict(tk)}
        spec["seed"] = seed
        path = cache_dir() / "tokenizers" / (hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:24] + ".model")
        if path.is_file():
            proto = path.read_bytes()
            note(f"tokenizer: the one trained on this text before ({path})")
        else:
            t0 = time.perf_counter()
            n = corpus.count_lines()
            held = holdout.pick(n) if holdout else []
            lines = sample_lines(corpus, n, held, tk.max_sentences, seed)
            if not any(line.strip() for line in lines):
                raise UsageError(f"{', '.join(corpus.sources)}: {NO_TEXT}")
            proto = Tokenizer.train(
                lines, tk.vocab_size, tk.model_type, tk.character_coverage, tk.max_sentences, seed, tk.max_chars
            ).model_proto
            write_atomic(path, proto)
            note(f"tokenizer: trained on {len(lines):,} sampled lines in {time.perf_counter() - t0:.1f}s")
    return Tokenizer(broadcast_bytes(proto, d))


def _spec(holdout: Holdout | None) -> list | None:
    return None if holdout is None else [holdout.seed, holdout.fraction, holdout.cap]


def _stream(corpus: Corpus, tok: Tokenizer, holdout: Holdout | None, d: Dist, show: bool) -> TokenStream:
    """Rank 0 opens (or writes) the stream; the other ranks wait for its folder, then map the same files."""
    folder = None
    if d.main:
        progress = ByteProgress("tokenizing", corpus.total_bytes(), enabled=show)
        try:
            stream = open_stream(corpus, tok.model_proto, len(tok), holdout, progress)
        finally:
            progress.close()
        if progress.done:
            index = stream.index
            note(
                f"token stream: {index['bytes'] / 1e6:,.1f} MB of text → {index['pieces']:,} pieces in "
                f"{index['seconds']:.1f}s ({index['bytes'] / 1e6 / max(index['seconds'], 1e-9):.1f} MB/s)"
            )
        else:
            note(f"token stream: reused {stream.folder}")
        if stream.index["pieces"] <= stream.index["lines"] + 1:  # nothing but the EOS of each line
            raise UsageError(f"{', '.join(corpus.sources)}: {NO_TEXT}")
        folder = str(stream.folder).encode()
    return TokenStream(Path(broadcast_bytes(folder, d).decode()))
