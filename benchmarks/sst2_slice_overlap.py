"""How much the sst2 recipe's dev slice of SST-2 train overlaps the rest of train, beside SST-2 dev's overlap.

    python benchmarks/sst2_slice_overlap.py [--seed 1] [--by example|sentence] [--record]

GLUE's SST-2 train holds phrases cut from the treebank's training sentences, so a slice drawn by example
(data.valid_by = "example": data.valid_fraction, at most valid_max, drawn by training's own split_valid with
train.seed) is mostly text that also occurs, verbatim, inside another training phrase; one drawn by sentence
(data.valid_by = "sentence") should have none. A phrase counts as inside when it occurs as whole words in a longer
(or equal) phrase of the rest. SST-2 dev holds whole sentences of other documents.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, record  # noqa: E402

from lstmtext.config import resolve_recipe  # noqa: E402
from lstmtext.holdout import VALID_BY, split_valid  # noqa: E402
from lstmtext.tasks import get_task  # noqa: E402


def inside(phrases: list[str], corpus: list[str]) -> int:
    """How many of ``phrases`` occur as whole words inside some line of ``corpus``."""
    joined = "\n".join(f" {c} " for c in corpus)
    return sum(f" {p} " in joined for p in phrases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1, help="train.seed, which draws the slice (the header's runs: 1-3)")
    ap.add_argument("--by", choices=VALID_BY, help="hold out by (default: the recipe's data.valid_by)")
    ap.add_argument("--record", action="store_true", help="append a row to BENCHMARKS.md")
    a = ap.parse_args()
    recipe = resolve_recipe("sentiment", REPO / "recipes" / "sst2.toml")
    by = a.by or recipe.data.valid_by
    read = get_task("sentiment").read
    train = [e["text"].strip() for e in read(str(SHARED / "sst2" / "train.tsv"), recipe.options)]
    dev = [e["text"].strip() for e in read(str(SHARED / "sst2" / "dev.tsv"), recipe.options)]
    examples = [{"text": t} for t in train]
    rest, held = split_valid(examples, recipe.data.valid_fraction, recipe.data.valid_max, a.seed, by)
    rest, slice_ = [e["text"] for e in rest], [e["text"] for e in held]
    pct_slice = round(100 * inside(slice_, rest) / len(slice_), 1)
    pct_dev = round(100 * inside(dev, train) / len(dev), 1)
    words = statistics.median(len(t.split()) for t in slice_), statistics.median(len(t.split()) for t in dev)
    print(
        f"the recipe's slice of {len(slice_)} (seed {a.seed}, by {by}): {pct_slice} % inside a phrase of the rest of train; "
        f"SST-2 dev: {pct_dev} % inside a train phrase; median words {words[0]} against {words[1]}"
    )
    if a.record:
        record(
            "sst2-slice-overlap",
            f"SST-2 train, the sst2 recipe's dev slice of {len(slice_)} {'phrases' if by == 'example' else 'sentences'} "
            f"(seed {a.seed}, by {by}); beside it SST-2 dev",
            f"% of the slice's phrases found verbatim inside the rest of train (SST-2 dev in train: {pct_dev} %; "
            f"median words {words[0]} against {words[1]})",
            pct_slice,
            None,
            None,
            f"python benchmarks/sst2_slice_overlap.py --seed {a.seed}{f' --by {a.by}' if a.by else ''} --record",
        )


if __name__ == "__main__":
    main()
