"""A run's data: examples read through the task module, the dev split, the tokenizer and the features."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lstmtext import checkpoint as ckpt
from lstmtext.corpus import content_hash, named_sources, refuse_dev_in_train
from lstmtext.data import is_hf, resolve_source, sample_path
from lstmtext.holdout import dev_note, split_valid
from lstmtext.progress import note
from lstmtext.tasks.contract import Streamed
from lstmtext.tokenizer import Tokenizer
from lstmtext.training.distributed import Dist, broadcast_bytes
from lstmtext.training.state import Clock
from lstmtext.training.streamed import prepare_streamed


@dataclass
class Prepared:
    tok: Tokenizer
    labels: list[str]
    train_feats: Sequence[dict]  # a list, or corpus.Windows over the token cache of a streamed task
    dev_feats: list[dict]
    provenance: list[dict]  # the data sources, with their sizes and hashes
    train_source: str


def prepare(
    mod, recipe, d: Dist, clock: Clock, stored_meta: dict | None, init_meta: dict | None, show: bool = True
) -> Prepared:
    """Read, split, tokenize and featurize. The tokenizer is the resumed run's, else the --init-from
    checkpoint's, else one trained on this run's training text (on rank 0, then shared). A streamed task's
    training text goes through the token cache on disk instead (training/streamed.py)."""
    if isinstance(mod, Streamed):
        tok, train_feats, dev_feats, read, index = prepare_streamed(mod, recipe, d, clock, stored_meta, init_meta, show)
        provenance = [describe_source(*s) for s in read] + [{"token_stream": index["key"], "pieces": index["pieces"]}]
        return Prepared(tok, [], train_feats, dev_feats, provenance, ", ".join(recipe.data.train) or read[0])
    task = recipe.task
    with clock.phase("read"):
        named, train_srcs, dev_src, train_examples, dev_examples = read_split(mod, recipe)
    with clock.phase("tokenizer"):
        tok = _tokenizer(mod, recipe, d, stored_meta or init_meta, train_examples)
    with clock.phase("featurize"):
        labels = (stored_meta or {}).get("labels") or mod.make_labels(train_examples)
        train_feats = mod.featurize(train_examples, tok, labels, recipe)
        dev_feats = mod.featurize(dev_examples, tok, labels, recipe) if dev_examples else []
    held = f" (a seeded slice of train, by {recipe.data.valid_by})" if not dev_src else ""
    note(
        f"{task}: {len(train_feats)} training examples, {dev_note(len(dev_feats), held)}, vocabulary {len(tok)}"
        + (f", labels {', '.join(labels)}" if labels else "")
    )
    provenance = [describe_source(*s) for s in [*train_srcs, (dev_src, resolve_source(dev_src))] if s[0]]
    return Prepared(tok, labels, train_feats, dev_feats, provenance, ", ".join(named))


def read_split(mod, recipe) -> tuple[list[str], list, str, list[dict], list[dict]]:
    """(the training sources as named, as resolved, the dev source, the training and the dev examples): the dev
    split is data.dev, else a seeded slice of train (data.split_seed, else train.seed: the runs of one ensemble,
    train.members, hold out the same one)."""
    task = recipe.task
    named = recipe.data.train or [str(sample_path(task, "train"))]
    train_srcs = named_sources(named, folders=False)
    dev_src = recipe.data.dev or ("" if recipe.data.train else str(sample_path(task, "dev")))
    refuse_dev_in_train(dev_src, train_srcs)
    train_examples = [e for _, src in train_srcs for e in mod.read(src, recipe.options, "train")]
    if dev_src:
        return (
            named,
            train_srcs,
            dev_src,
            train_examples,
            mod.read(resolve_source(dev_src), recipe.options, "validation"),
        )
    d = recipe.data
    seed = d.split_seed or recipe.train.seed
    return named, train_srcs, dev_src, *split_valid(train_examples, d.valid_fraction, d.valid_max, seed, d.valid_by)


def _tokenizer(mod, recipe, d: Dist, meta: dict | None, train_examples: list[dict]) -> Tokenizer:
    if meta:
        return Tokenizer(ckpt.tokenizer_proto(meta))
    proto = None
    if d.main:
        t0 = time.perf_counter()
        tc, tk = recipe.train, recipe.tokenizer
        proto = Tokenizer.train(
            mod.tokenizer_texts(train_examples),
            tk.vocab_size,
            tk.model_type,
            tk.character_coverage,
            tk.max_sentences,
            recipe.data.split_seed or tc.init_seed or tc.seed,
            tk.max_chars,
        ).model_proto
        note(f"tokenizer: trained in {time.perf_counter() - t0:.1f}s")
    return Tokenizer(broadcast_bytes(proto, d))


def describe_source(src: str, resolved: str) -> dict:
    """The source as the user named it; where a name resolved to another path, that path; for a file, its size
    and hash too."""
    if is_hf(src):
        return {"source": src}
    out = {"source": src} if resolved == src else {"source": src, "resolved": resolved}
    p = Path(resolved)
    if not is_hf(resolved) and p.is_file():
        out.update(sha256=content_hash(p), bytes=p.stat().st_size)
    return out
