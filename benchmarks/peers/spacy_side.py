"""The spaCy side of benchmarks/peers/spacy_ner.py; it runs with the spaCy venv's python and imports nothing of
lstmtext's.

    python spacy_side.py docbin IN.jsonl OUT.spacy     # {"words", "tags" (BIO)} per line → a DocBin
    python spacy_side.py tags MODEL IN.jsonl           # the model's BIO tags over the given words, one JSON list
                                                       # per line (for the shared seqeval scoring)
    python spacy_side.py tag MODEL < raw.txt           # what a user runs: raw text in, one JSON line of
                                                       # entities per input line out (timed end to end)
"""

import json
import sys


def docbin(src: str, dst: str) -> None:
    import spacy
    from spacy.tokens import Doc, DocBin

    nlp = spacy.blank("en")
    db = DocBin()
    with open(src, encoding="utf-8") as f:
        for line in f:
            ex = json.loads(line)
            db.add(Doc(nlp.vocab, words=ex["words"], ents=ex["tags"]))
    db.to_disk(dst)


def tags(model: str, src: str) -> None:
    """Tags over the gold words (the model's tokenizer is bypassed, so every word gets exactly one tag)."""
    import spacy
    from spacy.tokens import Doc

    nlp = spacy.load(model)
    with open(src, encoding="utf-8") as f:
        docs = [Doc(nlp.vocab, words=json.loads(line)["words"]) for line in f]
    out = sys.stdout
    for doc in nlp.pipe(docs):
        bio = ["O" if t.ent_iob_ == "O" else f"{t.ent_iob_}-{t.ent_type_}" for t in doc]
        out.write(json.dumps(bio) + "\n")


def tag(model: str) -> None:
    import spacy

    nlp = spacy.load(model)
    lines = sys.stdin.read().splitlines()
    out = sys.stdout
    for doc in nlp.pipe(lines):
        ents = [[e.text, e.label_, e.start_char, e.end_char] for e in doc.ents]
        out.write(json.dumps(ents, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    {"docbin": docbin, "tags": tags, "tag": tag}[cmd](*args)
