"""Training curves from the metrics logs ``lstmtext train`` writes (``RUN.metrics.jsonl``: one JSON object per
evaluation with step, epoch, time, lr, train_loss, tokens_per_s, best and the dev_* metrics): read and check
the logs, the data behind the picture, and the picture (``lstmtext plot``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from lstmtext.errors import UsageError

MAX_LINE = 1 << 20  # a metrics row is a few hundred bytes; a longer line means the file is something else
XS = ("steps", "minutes")
SUFFIXES = (".png", ".svg", ".pdf")


def run_name(path: Path) -> str:
    """``runs/sst2.metrics.jsonl`` → ``sst2``: the name of the checkpoint the log belongs to."""
    name = path.name
    for suffix in (".metrics.jsonl", ".jsonl"):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return path.stem or name


def read_rows(path: Path) -> list[dict]:
    """The evaluation rows of one metrics log; UsageError naming the file (and line) when it is not one."""
    if path.is_dir():
        raise UsageError(f"{path} is a folder; pass a metrics log such as RUN.metrics.jsonl")
    if not path.is_file():
        raise UsageError(
            f"{path}: no such file; pass the RUN.metrics.jsonl that 'lstmtext train' wrote beside RUN.ckpt"
        )
    rows = []
    want = "one JSON object per line with a numeric 'step', as 'lstmtext train' writes"
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(iter(lambda: f.readline(MAX_LINE + 1), ""), 1):
                if len(line) > MAX_LINE:
                    raise UsageError(f"{path} line {lineno}: not a metrics log (a line over {MAX_LINE} characters)")
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    raise UsageError(f"{path} line {lineno}: not JSON; a metrics log has {want}") from None
                step = row.get("step") if isinstance(row, dict) else None
                if not isinstance(step, int | float) or isinstance(step, bool):
                    raise UsageError(f"{path} line {lineno}: not a metrics row; expected {want}")
                rows.append(row)
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); expected {want}") from None
    if not rows:
        raise UsageError(f"{path}: no evaluation rows; expected {want}")
    return rows


def read_runs(paths: list[str | Path]) -> list[dict]:
    """[{"name", "file", "rows"}] for each log, named by its file (by its path where two names clash)."""
    runs = [{"name": run_name(Path(p)), "file": str(p), "rows": read_rows(Path(p))} for p in paths]
    names = [r["name"] for r in runs]
    for r in runs:
        if names.count(r["name"]) > 1:
            r["name"] = r["file"]
    return runs


def series_keys(runs: list[dict]) -> list[str]:
    """train_loss, every dev_* metric any run logged (in the order first met), tokens_per_s."""
    dev: dict[str, None] = {}
    for r in runs:
        for row in r["rows"]:
            dev.update(dict.fromkeys(k for k in row if k.startswith("dev_")))
    return ["train_loss", *dev, "tokens_per_s"]


def _number(v) -> float | None:
    """A plotted value: a finite number, else None (a NaN train loss before any step, a missing metric)."""
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return v


def curves_data(runs: list[dict], x: str = "steps") -> dict:
    """The data behind the picture: per run its x values (steps, or minutes of training), each series, and
    its last and best rows (best: the last evaluation that kept the checkpoint, at best_index; None if none
    did)."""
    from lstmtext.viz.charts import clean

    keys = series_keys(runs)
    out = []
    for r in runs:
        rows = r["rows"]
        xs = [row.get("step") if x == "steps" else _number(row.get("time")) for row in rows]
        if x == "minutes":
            xs = [None if v is None else v / 60 for v in xs]
        kept = [i for i, row in enumerate(rows) if row.get("best") is True]
        out.append(
            {
                "name": r["name"],
                "file": r["file"],
                "evaluations": len(rows),
                "x": xs,
                "series": {k: [_number(row.get(k)) for row in rows] for k in keys},
                "last": clean(rows[-1]),
                "best": clean(rows[kept[-1]]) if kept else None,
                "best_index": kept[-1] if kept else None,
            }
        )
    return {"x": x, "series": keys, "runs": out}


NAMES = {  # how the panels name the metrics the tasks log
    "f1": "F1",
    "macro_f1": "macro-F1",
    "bleu": "BLEU",
    "chrf": "chrF",
    "bleu_lc": "BLEU (lowercased)",
    "ppl_word": "perplexity per word",
    "ppl_piece": "perplexity per piece",
    "ppl_piece_bwd": "backward perplexity per piece",
    "bpc": "bits per character",
}


def panel_title(key: str) -> str:
    if key == "train_loss":
        return "loss (solid: train, dashed: dev)"
    if key == "tokens_per_s":
        return "training speed (tokens/s)"
    name = key.removeprefix("dev_")
    return f"dev {NAMES.get(name, name.replace('_', ' '))}"


def draw(data: dict, path: str | Path) -> Path:
    """One panel per series (dev_loss shares the train loss's panel), the runs overlaid, each run's kept
    evaluation starred on the dev panels."""
    from lstmtext.viz.charts import figure, save

    keys = [k for k in data["series"] if k != "dev_loss"]
    cols = 2 if len(keys) <= 4 else 3
    rows = -(-len(keys) // cols)
    fig = figure(4.2 * cols, 2.9 * rows + 0.5)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    colours = [f"C{i % 10}" for i in range(len(data["runs"]))]
    xlabel = "training step" if data["x"] == "steps" else "training time (minutes)"
    for ax, key in zip(axes, keys):
        for run, colour in zip(data["runs"], colours):
            _plot_series(ax, run, key, colour)
            if key == "train_loss" and "dev_loss" in data["series"]:
                _plot_series(ax, run, "dev_loss", colour, dashed=True)
        title = panel_title(key) if key != "train_loss" or "dev_loss" in data["series"] else "train loss"
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(xlabel, fontsize=9)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
        if key.startswith("dev_ppl"):
            ax.set_yscale("log")  # perplexities fall by orders of magnitude early in training
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color=c, marker="o", markersize=3, label=r["name"]) for r, c in zip(data["runs"], colours)
    ]
    if any(k.startswith("dev_") for k in keys):  # the stars sit on the dev panels
        handles.append(Line2D([], [], ls="", marker="*", color="black", markersize=9, label="kept checkpoint"))
    fig.legend(handles=handles, loc="outside upper center", ncols=min(len(handles), 4), frameon=False, fontsize=9)
    return save(fig, path, data)


def _plot_series(ax, run: dict, key: str, colour: str, dashed: bool = False) -> None:
    nan = float("nan")
    xs = [nan if v is None else v for v in run["x"]]
    ys = [nan if v is None else v for v in run["series"].get(key, [])]
    ax.plot(xs, ys, color=colour, ls="--" if dashed else "-", marker="o", markersize=3, lw=1.5)
    i = run["best_index"]
    if key.startswith("dev_") and i is not None and i < len(ys):
        ax.plot([xs[i]], [ys[i]], ls="", marker="*", color=colour, markersize=11, mec="black", mew=0.5)
