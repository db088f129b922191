"""How much a random dev slice of SST-2's train overlaps the rest of train, beside SST-2 dev's overlap.

    python benchmarks/sst2_slice_overlap.py [--size 3000] [--seed 0] [--record]

GLUE's SST-2 train holds phrases cut from the treebank's training sentences, so a random slice of it (what the
sst2 recipe selects on: data.valid_fraction, at most valid_max) is mostly text that also occurs, verbatim, inside
another training phrase. A phrase counts as inside when it occurs as whole words in a longer (or equal) phrase of
the rest. SST-2 dev holds whole sentences of other documents.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, cpu, record  # noqa: E402


def texts(path: Path) -> list[str]:
    return [line.split("\t")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()[1:]]


def inside(phrases: list[str], corpus: list[str]) -> int:
    """How many of ``phrases`` occur as whole words inside some line of ``corpus``."""
    joined = "\n".join(f" {c} " for c in corpus)
    return sum(f" {p} " in joined for p in phrases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=3000, help="the slice's size (the recipe's valid_max)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--record", action="store_true", help="append a row to BENCHMARKS.md")
    a = ap.parse_args()
    train, dev = texts(SHARED / "sst2" / "train.tsv"), texts(SHARED / "sst2" / "dev.tsv")
    order = list(range(len(train)))
    random.Random(a.seed).shuffle(order)
    held = set(order[: a.size])
    slice_ = [train[i] for i in order[: a.size]]
    rest = [t for i, t in enumerate(train) if i not in held]
    pct_slice = round(100 * inside(slice_, rest) / len(slice_), 1)
    pct_dev = round(100 * inside(dev, train) / len(dev), 1)
    words = statistics.median(len(t.split()) for t in slice_), statistics.median(len(t.split()) for t in dev)
    print(
        f"slice of {len(slice_)} (seed {a.seed}): {pct_slice} % inside a phrase of the rest of train; "
        f"SST-2 dev: {pct_dev} % inside a train phrase; median words {words[0]} against {words[1]}"
    )
    if a.record:
        record(
            f"sst2-slice-overlap [{cpu()}]",
            f"SST-2 train, a random {len(slice_)}-phrase slice (seed {a.seed}); beside it SST-2 dev",
            f"% of the slice's phrases found verbatim inside the rest of train (SST-2 dev in train: {pct_dev} %; "
            f"median words {words[0]} against {words[1]})",
            pct_slice,
            None,
            None,
            f"python benchmarks/sst2_slice_overlap.py --size {a.size} --seed {a.seed} --record",
        )


if __name__ == "__main__":
    main()
