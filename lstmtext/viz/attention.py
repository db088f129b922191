"""Attention pictures: a translation's source × target heatmap, a classifier's weights over its pieces.

Both take plain lists (what the JSONL holds), so a picture shows exactly the data a program reads. SentencePiece
marks a word start with "▁"; the labels keep it, so a reader sees where words begin.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from lstmtext.errors import UsageError


def plot_dir(path: str | Path) -> Path:
    """The folder --plot writes into, made if missing; a file in its place is refused in one line."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"--plot {path}: is a file; expected a folder for the pictures (made if missing)")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"--plot {path}: cannot create the folder ({e.strerror or e})") from None
    return p


def picture_name(folder: Path, line: int) -> Path:
    """DIR/0001.png for input line 1: names sort in input order."""
    return folder / f"{line:04d}.png"


def _short(text: str, most: int = 90) -> str:
    return text if len(text) <= most else text[: most - 1] + "…"


def heatmap(path: Path, source: list[str], target: list[str], weights: list[list[float]], title: str = "") -> None:
    with warnings.catch_warnings():  # a control character in a title has no glyph: a stray warning per line
        warnings.simplefilter("ignore", UserWarning)
        _heatmap(path, source, target, weights, title)


def strip(path: Path, pieces: list[str], weights: list[float], title: str = "") -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _strip(path, pieces, weights, title)


def _heatmap(path: Path, source: list[str], target: list[str], weights: list[list[float]], title: str) -> None:
    """Source pieces on x, target pieces on y (first at the top), one cell per weight, and a colour bar.

    The colours run from 0 to the largest weight of the picture, so a spread-out attention still shows its
    shape; the colour bar says what the brightest cell is worth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols, rows = max(1, len(source)), max(1, len(target))
    width = min(24.0, 2.2 + 0.36 * cols)
    height = min(24.0, 1.8 + 0.32 * rows)
    fig, ax = plt.subplots(figsize=(width, height), dpi=100, layout="constrained")
    top = max((w for row in weights for w in row), default=0.0) or 1.0
    data = weights if source and target else [[0.0]]  # a line of no source pieces: one empty cell
    image = ax.imshow(data, cmap="viridis", vmin=0.0, vmax=top, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(source)), source, rotation=60, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_yticks(range(len(target)), target, fontsize=9)
    ax.set_xlabel("source pieces")
    ax.set_ylabel("target pieces (decoded top to bottom)")
    ax.set_xticks([x - 0.5 for x in range(1, cols)], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, rows)], minor=True)
    ax.grid(which="minor", color="white", linewidth=0.5)
    ax.tick_params(which="minor", length=0)
    if title:
        ax.set_title(_short(title), fontsize=10)
    fig.colorbar(image, ax=ax, label="attention weight", shrink=0.9)
    fig.savefig(path)
    plt.close(fig)


def _strip(path: Path, pieces: list[str], weights: list[float], title: str) -> None:
    """A classifier's attention pooling: one bar per piece, labelled with the piece, and a dashed line at the
    uniform weight 1/n, so the pieces the model singles out stand above it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = max(1, len(pieces))
    fig, ax = plt.subplots(figsize=(min(24.0, 2.0 + 0.38 * n), 3.2), dpi=100, layout="constrained")
    top = max(weights, default=0.0) or 1.0
    uniform = 1.0 / n
    colors = ["tab:orange" if w > uniform else "tab:blue" for w in weights]
    ax.bar(range(len(pieces)), weights, color=colors, edgecolor="0.3", linewidth=0.4)
    ax.axhline(uniform, color="0.35", linestyle="--", linewidth=1, label=f"uniform (1/{n} = {uniform:.3f})")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    ax.set_xticks(range(len(pieces)), pieces, rotation=60, ha="right", rotation_mode="anchor", fontsize=9)
    ax.set_xlim(-0.6, n - 0.4)
    ax.set_ylim(0, max(top, uniform) * 1.25)
    ax.set_xlabel("pieces")
    ax.set_ylabel("attention weight")
    ax.spines[["top", "right"]].set_visible(False)
    if title:
        ax.set_title(_short(title), fontsize=10)
    fig.savefig(path)
    plt.close(fig)
