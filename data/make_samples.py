"""Writes the small samples in data/, the embedded default of ``lstmtext train TASK``.

The sentences are composed here from hand-written phrase lists (no benchmark text is copied), seeded, so
the files are reproducible: ``python data/make_samples.py``.
"""

from __future__ import annotations

import random
from pathlib import Path

HERE = Path(__file__).resolve().parent

POS_ADJ = [
    "gorgeous",
    "witty",
    "moving",
    "brilliant",
    "charming",
    "delightful",
    "gripping",
    "heartfelt",
    "funny",
    "beautiful",
    "clever",
    "touching",
    "wonderful",
    "smart",
    "tender",
    "riveting",
    "lovely",
    "inventive",
    "superb",
    "engaging",
    "warm",
    "thrilling",
    "graceful",
    "sharp",
    "luminous",
]
NEG_ADJ = [
    "dull",
    "tedious",
    "clumsy",
    "boring",
    "lifeless",
    "shallow",
    "predictable",
    "messy",
    "bland",
    "tiresome",
    "awkward",
    "flat",
    "pointless",
    "sloppy",
    "stale",
    "muddled",
    "lazy",
    "grating",
    "forgettable",
    "hollow",
    "joyless",
    "plodding",
    "silly",
    "limp",
    "overlong",
]
NOUNS = [
    "film",
    "movie",
    "story",
    "script",
    "performance",
    "cast",
    "ending",
    "soundtrack",
    "direction",
    "dialogue",
    "plot",
    "comedy",
    "drama",
    "thriller",
    "documentary",
    "lead actress",
    "lead actor",
    "first hour",
    "camera work",
    "screenplay",
]
INTENS = ["", "", "really ", "truly ", "very ", "quite ", "remarkably ", "utterly ", "rather "]
POS_VERB = ["loved", "enjoyed", "admired", "adored", "savoured", "recommend"]
NEG_VERB = ["hated", "disliked", "regretted", "endured", "resented", "could not stand"]
TEMPLATES = [
    "the {noun} is {int}{adj} .",
    "a {int}{adj} {noun} .",
    "what a {int}{adj} {noun} !",
    "i found the {noun} {int}{adj} .",
    "this {noun} feels {int}{adj} from start to finish .",
    "{adj} , {adj2} and {int}{adj3} .",
    "the {noun} was {int}{adj} , and the {noun2} was {adj2} .",
    "i {verb} this {noun} .",
    "everyone i know {verb} the {noun} .",
    "a {int}{adj} piece of work .",
]
NEGATED = [
    "the {noun} is not {adj} at all .",
    "hardly a {adj} {noun} .",
    "i would never call this {noun} {adj} .",
    "the {noun} is anything but {adj} .",
]
MIXED = [
    "the {noun} is {nadj} , but the {noun2} is {int}{padj} .",
    "despite a {nadj} {noun} , the {noun2} is {int}{padj} .",
]


SENTIMENT_NAMES = ("negative", "positive")


def sentiment_example(rng: random.Random) -> tuple[str, int]:
    r = rng.random()
    label = rng.randrange(2)
    adjs, verbs = (POS_ADJ, POS_VERB) if label else (NEG_ADJ, NEG_VERB)
    if r < 0.15:  # negation flips the polarity of the adjective it governs
        adj = rng.choice(NEG_ADJ if label else POS_ADJ)
        t = rng.choice(NEGATED)
        return t.format(noun=rng.choice(NOUNS), adj=adj), label
    if r < 0.25:  # "X but Y": the clause after "but" decides
        pos, neg = rng.choice(POS_ADJ), rng.choice(NEG_ADJ)
        t = rng.choice(MIXED)
        padj, nadj = (pos, neg) if label else (neg, pos)
        return t.format(
            noun=rng.choice(NOUNS), noun2=rng.choice(NOUNS), padj=padj, nadj=nadj, int=rng.choice(INTENS)
        ), label
    t = rng.choice(TEMPLATES)
    text = t.format(
        noun=rng.choice(NOUNS),
        noun2=rng.choice(NOUNS),
        int=rng.choice(INTENS),
        adj=rng.choice(adjs),
        adj2=rng.choice(adjs),
        adj3=rng.choice(adjs),
        verb=rng.choice(verbs),
    )
    return text, label


def write_sentiment(n_train: int = 1600, n_dev: int = 200, seed: int = 13) -> None:
    rng = random.Random(seed)
    out = HERE / "sentiment"
    out.mkdir(exist_ok=True)
    seen: set[str] = set()
    rows: list[tuple[str, int]] = []
    while len(rows) < n_train + n_dev:
        text, label = sentiment_example(rng)
        if text not in seen:
            seen.add(text)
            rows.append((text, label))
    for name, part in (("train.tsv", rows[:n_train]), ("dev.tsv", rows[n_train:])):
        with open(out / name, "w", encoding="utf-8") as f:
            f.write("sentence\tlabel\n")
            for text, label in part:  # the names, as a model trained on the sample predicts them
                f.write(f"{text}\t{SENTIMENT_NAMES[label]}\n")
    with open(out / "reviews.txt", "w", encoding="utf-8") as f:
        for text, _ in rows[n_train : n_train + 20]:
            f.write(text + "\n")


if __name__ == "__main__":
    write_sentiment()
