"""NER's data helpers: CoNLL, JSONL and ``hf:`` readers, tag-scheme conversion to BIO, sentences cut into
windows of pieces, word shapes, and the split of raw text into words (with character spans) that tagging runs
on."""

from __future__ import annotations

import re
from typing import Any

from lstmtext.data import load_hf, pick_column, read_lines, read_records, shorten
from lstmtext.errors import UsageError

TOKEN_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("ner_tags", "tags", "labels", "ner")
TAG_RE = re.compile(r"(?:O|[BIESLU]-\S+)")
# A word longer than this many pieces (a URL, a run of symbols) keeps only its first pieces: the tag rides on
# the first one, and one giant word must not blow a window's memory.
MAX_WORD_PIECES = 32


# -- tag schemes -------------------------------------------------------------------------------------------
def to_bio(tags: list[str]) -> list[str]:
    """Any of BIO, IOB1, BIOES/BILOU → BIO. An I- (or E-/L-) that does not continue an entity of its type
    starts one, which is exactly the IOB1 → BIO conversion and leaves valid BIO unchanged."""
    out = []
    prev = "O"
    for tag in tags:
        if tag == "O":
            out.append("O")
            prev = "O"
            continue
        prefix, kind = tag[0], tag[2:]
        if prefix in "BSU":
            new = f"B-{kind}"
        elif prev != "O" and prev[2:] == kind:
            new = f"I-{kind}"
        else:
            new = f"B-{kind}"
        out.append(new)
        # after E-/S-/L-/U- an entity has ended: the next I- of the same type starts a new one
        prev = "O" if prefix in "ESLU" else new
    return out


def detect_scheme(sentences: list[list[str]]) -> str:
    """BIOES, IOB1 or BIO, for one note when a file is read."""
    prefixes = {t[0] for tags in sentences for t in tags}
    if prefixes & set("ESLU"):
        return "BIOES"
    for tags in sentences:
        prev = "O"
        for t in tags:
            if t.startswith("I-") and (prev == "O" or prev[2:] != t[2:]):
                return "IOB1"
            prev = t
    return "BIO"


def check_tag(tag: str, where: str) -> str:
    if not TAG_RE.fullmatch(tag):
        raise UsageError(f"{where}: tag '{shorten(tag, 60)}' is not O or B-/I-/E-/S-TYPE")
    return tag


# -- data --------------------------------------------------------------------------------------------------
def read_conll(path: str) -> list[dict]:
    """Sentences from a CoNLL file: token first, tag last, any columns between."""
    examples: list[dict] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    doc = 0  # the sentences between two -DOCSTART- lines are one document (a file without them is one)

    def flush():
        nonlocal tokens, tags
        if tokens:
            # tokens are consecutive lines, so token k is on line start + k (for messages)
            where = f"{path} line {start}"
            examples.append(
                {"tokens": tokens, "tags": tags, "where": where, "path": str(path), "line": start, "doc": doc}
            )
        tokens, tags = [], []

    for lineno, line in read_lines(path):
        fields = line.split()
        if not fields:
            flush()
            continue
        if fields[0] == "-DOCSTART-":
            flush()
            doc += 1
            continue
        if len(fields) < 2:
            raise UsageError(
                f"{path} line {lineno}: expected 'TOKEN ... TAG' (two or more columns separated by spaces or "
                f"tabs, the tag last), found {line.strip()[:60]!r}"
            )
        if not tokens:
            start = lineno
        tokens.append(fields[0])
        tags.append(check_tag(fields[-1], f"{path} line {lineno}"))
    flush()
    return examples


def read_jsonl(path: str, opts: Any) -> list[dict]:
    examples = []
    cols = None
    for lineno, rec in read_records(path):
        where = f"{path} line {lineno}"
        if cols is None:
            cols = (
                pick_column(rec, opts.tokens_column, TOKEN_COLUMNS, "tokens", where),
                pick_column(rec, opts.tags_column, TAG_COLUMNS, "tags", where),
            )
        toks, tags = rec.get(cols[0]), rec.get(cols[1])
        if not isinstance(toks, list) or not isinstance(tags, list):
            raise UsageError(f"{where}: expected lists in '{cols[0]}' and '{cols[1]}'")
        if len(toks) != len(tags):
            raise UsageError(f"{where}: {len(toks)} tokens but {len(tags)} tags")
        toks = [str(t) for t in toks]
        if any(not t.strip() or len(t.split()) != 1 for t in toks):
            raise UsageError(f"{where}: a token is empty or contains spaces")
        tags = [check_tag(str(t), where) for t in tags]
        if toks:
            examples.append({"tokens": toks, "tags": tags, "where": where})
    return examples


def read_hf(source: str, opts: Any, split: str) -> list[dict]:
    ds = load_hf(source, split)
    tok_col = pick_column(ds.column_names, opts.tokens_column, TOKEN_COLUMNS, "tokens", source)
    tag_col = pick_column(ds.column_names, opts.tags_column, TAG_COLUMNS, "tags", source)
    feature = ds.features[tag_col]
    inner = feature[0] if isinstance(feature, list) else getattr(feature, "feature", None)
    names = getattr(inner, "names", None)  # Sequence(ClassLabel) → its names
    examples = []
    for i, row in enumerate(ds):
        where = f"{source} row {i}"
        tags = [names[t] if names is not None and isinstance(t, int) else str(t) for t in row[tag_col]]
        toks = [str(t) for t in row[tok_col]]
        if len(toks) != len(tags):
            raise UsageError(f"{where}: {len(toks)} tokens but {len(tags)} tags")
        if toks:
            examples.append({"tokens": toks, "tags": [check_tag(t, where) for t in tags], "where": where})
    return examples


# -- pieces and windows -------------------------------------------------------------------------------------
def word_shape(word: str) -> int:
    """A word's shape class, 1 … NUM_SHAPES-1 (0 is padding): lower, Capitalised, ALL CAPS, miXed, digits,
    digits with punctuation (1,000 · 2-1), punctuation, letters with digits (1st · B52)."""
    letters = [c for c in word if c.isalpha()]
    digits = any(c.isdigit() for c in word)
    if not letters:
        return 5 if word.isdigit() else 6 if digits else 7
    if digits:
        return 8
    if all(c.islower() for c in letters):
        return 1
    if letters[0].isupper() and all(c.islower() for c in letters[1:]):
        return 2  # a single capital letter ("I", "A") lands here too
    return 3 if all(c.isupper() for c in letters) else 4


MAX_WORD_BYTES = 32  # a longer word keeps its first and last 16 bytes: prefix and suffix carry the cues


def word_bytes(word: str) -> list[int]:
    """A word's UTF-8 bytes as ids 1 … 256 (0 is padding), for the character BiLSTM (heads/tag.py): a fixed
    alphabet, so no character vocabulary is learned or stored, and no character is unknown."""
    b = word.encode("utf-8")
    if len(b) > MAX_WORD_BYTES:
        half = MAX_WORD_BYTES // 2
        b = b[:half] + b[-half:]
    return [x + 1 for x in b] or [1]  # an empty token (hf data may hold one) reads as one zero byte


def word_features(words: list[str], shapes: bool, chars: bool) -> dict:
    """What a tagger with ner.shape_dim / ner.char_dim reads of each word beside its pieces."""
    out = {}
    if shapes:
        out["shape"] = [word_shape(w) for w in words]
    if chars:
        out["chars"] = [word_bytes(w) for w in words]
    return out


def pad_chars(rows: list[list[list[int]]]):
    """Each row's words' byte ids → one (B, W, C) int64 array, zero-padded (C: the longest word's bytes)."""
    import numpy as np

    W = max(1, max(map(len, rows), default=1))
    C = max(1, max((len(w) for words in rows for w in words), default=1))
    out = np.zeros((len(rows), W, C), dtype=np.int64)
    for i, words in enumerate(rows):
        for j, w in enumerate(words):
            out[i, j, : len(w)] = w
    return out


def windows(ids: list[int], first: list[int], max_length: int) -> list[tuple[int, int, list[int], list[int]]]:
    """Cut one sentence's pieces into windows of at most max_length pieces, at word boundaries.

    Returns (first word, number of words, piece ids, first-piece index of each word within the window).
    """
    cap = max(1, min(MAX_WORD_PIECES, max_length))
    bounds = first + [len(ids)]
    out = []
    w_start, cur_ids, cur_first = 0, [], []
    for w in range(len(first)):
        piece = ids[bounds[w] : min(bounds[w + 1], bounds[w] + cap)]
        if cur_ids and len(cur_ids) + len(piece) > max_length:
            out.append((w_start, len(cur_first), cur_ids, cur_first))
            w_start, cur_ids, cur_first = w, [], []
        cur_first.append(len(cur_ids))
        cur_ids.extend(piece)
    if cur_first:
        out.append((w_start, len(cur_first), cur_ids, cur_first))
    return out


def encode_sentences(tok, sentences: list[list[str]], chunk_words: int = 200_000):
    """(piece ids, first-piece index of each word) per sentence. Many sentences go to SentencePiece in one
    call (a call per sentence costs more in overhead than the encoding itself), in chunks of bounded size."""
    i = 0
    while i < len(sentences):
        j, n = i, 0
        while j < len(sentences) and (j == i or n + len(sentences[j]) <= chunk_words):
            n += len(sentences[j])
            j += 1
        ids, first = tok.encode_words([w for s in sentences[i:j] for w in s])
        first.append(len(ids))
        w = 0
        for s in sentences[i:j]:
            base = first[w]
            yield ids[base : first[w + len(s)]], [f - base for f in first[w : w + len(s)]]
            w += len(s)
        i = j


def document_streams(examples: list[dict], encoded: list[tuple[list[int], list[int]]]):
    """Each document's pieces end to end, and where each sentence begins in its document's stream."""
    streams: dict = {}
    offsets = []
    for e, (ids, _) in zip(examples, encoded):
        stream = streams.setdefault(e["doc"], [])
        offsets.append(len(stream))
        stream.extend(ids)
    return streams, offsets


# -- raw text → words --------------------------------------------------------------------------------------
# Punctuation split as in CoNLL-2003: abbreviations (U.S., Mr.) and numbers (1,000.50, 1996-08-22) stay whole,
# hyphenated and apostrophe words stay whole, every other symbol is a word of its own.
_WORD_RE = re.compile(
    r"(?:[^\W\d_]\.){2,}"  # U.S. e.g.
    r"|\b(?:Mr|Mrs|Ms|Dr|St|Jr|Sr|Inc|Corp|Ltd|Co|Gen|Col|Lt|Sgt|Capt|Sen|Rep|Gov|Prof|Mt|Ft|vs)\.(?=\s|$)"
    r"|\w+(?:[-'’]\w+)*(?:[.,:/]\d+)*"
    r"|\S"
)
_SPACE_RE = re.compile(r"\S+")


def split_words(text: str, pretokenized: bool = False) -> list[tuple[str, int, int]]:
    """(word, start, end) with text[start:end] == word; whitespace-separated only when pretokenized."""
    pattern = _SPACE_RE if pretokenized else _WORD_RE
    return [(m.group(), m.start(), m.end()) for m in pattern.finditer(text)]


def entities(tags: list[str], spans: list[tuple[int, int]], text: str) -> list[dict]:
    """BIO tags over words with character spans → [{"label", "start", "end", "text"}]."""
    out: list[dict] = []
    cur = None
    for tag, (s, e) in zip(tags, spans):
        if tag.startswith("I-") and cur is not None and cur["label"] == tag[2:]:
            cur["end"] = e
            continue
        if cur is not None:
            out.append(cur)
            cur = None
        if tag != "O":
            cur = {"label": tag[2:], "start": s, "end": e}
    if cur is not None:
        out.append(cur)
    for ent in out:
        ent["text"] = text[ent["start"] : ent["end"]]
    return out


# -- metrics ----------------------------------------------------------------------------------------------
def entity_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """seqeval entity-level P/R/F1 (strict span match, IOB2), micro and per type, plus token accuracy."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    rep = classification_report(gold, pred, mode="strict", scheme=IOB2, output_dict=True, zero_division=0)
    micro = rep.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0, "support": 0})
    per_type = {
        k: {
            "precision": float(v["precision"]),
            "recall": float(v["recall"]),
            "f1": float(v["f1-score"]),
            "support": int(v["support"]),
        }
        for k, v in rep.items()
        if not k.endswith(" avg")
    }
    tokens = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    return {
        "precision": float(micro["precision"]),
        "recall": float(micro["recall"]),
        "f1": float(micro["f1-score"]),
        "entities": int(micro["support"]),
        "sentences": len(gold),
        "tokens": tokens,
        "token_accuracy": correct / tokens if tokens else 0.0,
        "per_type": dict(sorted(per_type.items())),
    }


def assemble(features: list[dict], paths: list[list[int]], n_sents: int) -> list[list[int]]:
    """Per-window paths → one path per sentence (windows of a sentence come in word order)."""
    sents: list[list[int]] = [[] for _ in range(n_sents)]
    for f, p in sorted(zip(features, paths), key=lambda fp: (fp[0]["sent"], fp[0]["start"])):
        sents[f["sent"]].extend(p)
    return sents
