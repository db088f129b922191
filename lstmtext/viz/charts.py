"""The pictures ``lstmtext evaluate --plot`` draws: a confusion matrix, per-type precision/recall/F1 bars and
BLEU by source length. Each function draws exactly the numbers it is given (the task module picks them out of
its metrics) and writes them into the PNG beside the picture (the text chunk ``lstmtext-data``, JSON), so a
program reads what a person sees. matplotlib is imported inside the functions; no pyplot state is kept.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

DATA_KEY = "lstmtext-data"  # the PNG text chunk that holds the data behind a picture
DPI = 110


def figure(width: float, height: float):
    """A matplotlib Figure drawn by the Agg backend (no display needed, no pyplot global state)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save(fig, path: str | Path, data: Any) -> Path:
    """Write ``fig`` to ``path`` (its suffix picks the format); a PNG also carries ``data`` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"Software": "lstmtext"}
    if path.suffix.lower() == ".png":
        meta[DATA_KEY] = json.dumps(clean(data), allow_nan=False)
    else:
        meta = {}
    fig.savefig(path, metadata=meta)
    return path


def clean(value: Any) -> Any:
    """``value`` with every NaN or infinity turned into None (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def read_data(path: str | Path) -> Any:
    """The data a PNG written by ``save`` carries."""
    from PIL import Image

    with Image.open(path) as im:
        return json.loads(im.text[DATA_KEY])


def confusion(matrix: list[list[int]], labels: list[str], path: str | Path, title: str = "") -> Path:
    """Counts in the cells; colour is each row's share (the recall of that gold label), so a rare class's row
    reads as clearly as a common one's."""
    n = len(labels)
    shares = [[c / max(1, sum(row)) for c in row] for row in matrix]
    side = max(3.6, 0.7 * n + 2.2)
    fig = figure(side + 0.9, side)
    ax = fig.add_subplot()
    im = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            dark = shares[i][j] > 0.55
            colour = "white" if dark else "black"
            ax.text(j, i, f"{count}\n{100 * shares[i][j]:.0f}%", ha="center", va="center", fontsize=9, color=colour)
    turn = n * max(map(len, labels), default=0) > 40  # long names would overlap side by side
    ax.set_xticks(range(n), labels, rotation=30 if turn else 0, ha="right" if turn else "center")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted label")
    ax.set_ylabel("gold label")
    ax.set_title(title or "Confusion matrix", fontsize=11)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the gold label's examples")
    return save(fig, path, {"labels": labels, "confusion": matrix})


def per_type(scores: dict[str, dict], path: str | Path, title: str = "") -> Path:
    """Grouped bars: precision, recall and F1 (in %) for each type, its support under its name."""
    kinds = list(scores)
    names = ("precision", "recall", "f1")
    fig = figure(max(5.0, 1.3 * len(kinds) + 2.5), 4.0)
    ax = fig.add_subplot()
    width = 0.26
    for k, (name, colour) in enumerate(zip(names, ("#4C72B0", "#DD8452", "#55A868"))):
        xs = [i + (k - 1) * width for i in range(len(kinds))]
        values = [100 * scores[t][name] for t in kinds]
        bars = ax.bar(xs, values, width, label="F1" if name == "f1" else name, color=colour)
        ax.bar_label(bars, fmt="%.0f", fontsize=8, padding=1)
    ax.set_xticks(range(len(kinds)), [f"{t}\n({scores[t]['support']})" for t in kinds])
    ax.set_ylim(0, 110)
    ax.set_ylabel("score (%)")
    ax.set_xlabel("entity type (gold entities)")
    ax.set_title(title or "Precision, recall and F1 per entity type", fontsize=11)
    ax.legend(loc="upper center", ncols=3, frameon=False, bbox_to_anchor=(0.5, -0.2))
    ax.grid(axis="y", alpha=0.3)
    data = {t: {n: scores[t][n] for n in (*names, "support")} for t in kinds}
    return save(fig, path, data)


def by_length(buckets: list[dict], path: str | Path, title: str = "") -> Path:
    """BLEU per source-length bucket as bars, with each bucket's sentence count above its bar."""
    fig = figure(max(5.0, 0.8 * len(buckets) + 2.5), 4.0)
    ax = fig.add_subplot()
    bars = ax.bar(range(len(buckets)), [b["bleu"] for b in buckets], color="#4C72B0")
    ax.bar_label(bars, [f"{b['bleu']:.1f}\n{b['sentences']} sent." for b in buckets], fontsize=8, padding=2)
    ax.set_xticks(range(len(buckets)), [b["bucket"] for b in buckets])
    top = max((b["bleu"] for b in buckets), default=0.0)
    ax.set_ylim(0, max(10.0, top * 1.3))
    ax.set_xlabel("source length (words)")
    ax.set_ylabel("sacreBLEU")
    ax.set_title(title or "BLEU by source sentence length", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, path, buckets)
