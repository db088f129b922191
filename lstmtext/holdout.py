"""The dev slice a run selects on when it has no dev data: a seeded part of train (``data.valid_fraction``, at most
``data.valid_max``), held out by example or, for phrase treebanks, by sentence (``data.valid_by``).

Why "sentence": GLUE's SST-2 train holds the treebank's phrases, cut from the same sentences, so a slice drawn by
example is mostly text that also trains, verbatim, inside a longer phrase. Selecting on it rewards recall of
training text, where the reported split holds whole sentences no phrase of which was trained on. Holding out by
sentence groups each example under the longest example whose words contain it (its sentence), holds out whole
groups, and validates on the sentences alone: no dev sentence trains (a phrase of one may, inside another
training sentence, as a phrase of a test sentence may), and dev looks like the reported split.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

from lstmtext.errors import UsageError

VALID_BY = ("example", "sentence")


def split_valid(examples: list, fraction: float, cap: int, seed: int, by: str = "example") -> tuple[list, list]:
    """(train, dev): a seeded slice for model selection, so the reported split never picks the model. ``by``
    "example" holds out ``min(cap, fraction × examples)`` examples; "sentence" holds out ``min(cap, fraction ×
    sentences)`` sentences with every example inside them, and dev holds the sentences only. Both keep the
    order examples came in."""
    if by not in VALID_BY:
        raise UsageError(f"data.valid_by {by!r}: expected one of {', '.join(VALID_BY)}")
    if fraction <= 0 or len(examples) < 2:
        return examples, []
    if by == "example":
        held = set(_draw(len(examples), fraction, cap, seed))
        return [e for i, e in enumerate(examples) if i not in held], [examples[i] for i in sorted(held)]
    group, roots = sentence_groups([_text(e) for e in examples])
    if len(roots) < 2:
        raise UsageError(
            f'data.valid_by = "sentence": all {len(examples)} examples lie inside one sentence, so holding one out '
            'would leave nothing to train on; use "example" or give --dev'
        )
    held_groups = {group[roots[k]] for k in _draw(len(roots), fraction, cap, seed)}
    dev = {roots[g] for g in held_groups}
    train = [e for i, e in enumerate(examples) if group[i] not in held_groups]
    return train, [examples[i] for i in sorted(dev)]


def _draw(n: int, fraction: float, cap: int, seed: int) -> list[int]:
    """``min(cap, fraction × n)`` (at least one) of ``range(n)``, drawn by ``seed``."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order[: min(cap, max(1, int(n * fraction)))]


def _text(example) -> str:
    if isinstance(example, dict) and isinstance(example.get("text"), str):
        return example["text"]
    keys = ", ".join(example) if isinstance(example, dict) else type(example).__name__
    raise UsageError(
        'data.valid_by = "sentence" groups examples by their text, and this task\'s examples have none '
        f'({keys}); use "example"'
    )


def sentence_groups(texts: list[str]) -> tuple[list[int], list[int]]:
    """(group of each text, the index of each group's sentence). Longest first (ties in input order), a text
    whose words occur, whole and in order, inside an earlier sentence joins the first such sentence's group;
    any other text starts a group as its sentence. Candidates come from an index of each sentence's words,
    probed by the text's rarest word, so the cost stays near linear in the corpus."""
    words = [t.split() for t in texts]
    freq = Counter(w for ws in words for w in set(ws))
    index: dict[str, list[int]] = defaultdict(list)  # word -> groups whose sentence has it
    padded: list[str] = []  # " sentence " per group, so a probe matches whole words only
    group = [0] * len(texts)
    roots: list[int] = []
    for i in sorted(range(len(texts)), key=lambda i: -len(words[i])):
        probe = f" {' '.join(words[i])} "
        found = None
        if words[i]:
            rarest = min(words[i], key=freq.__getitem__)
            found = next((g for g in index.get(rarest, ()) if probe in padded[g]), None)
        if found is None:
            found = len(roots)
            roots.append(i)
            padded.append(probe)
            for w in set(words[i]):
                index[w].append(found)
        group[i] = found
    return group, roots


def dev_note(n: int, held: str) -> str:
    """What a training run's first note says of its validation data: ``n`` examples (``held``: where from)."""
    return f"{n} for validation{held}" if n else "none held out (the last checkpoint is kept)"
