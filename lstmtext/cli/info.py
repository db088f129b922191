"""``lstmtext info``: a checkpoint's model card."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from lstmtext.cli.common import report_choice, value


def info(
    checkpoint: str = typer.Argument(..., help="A checkpoint (or an ONNX file of lstmtext export)."),
    fmt: report_choice() = typer.Option("table", "--format", "-f", help="table (stderr) | json (stdout)."),
) -> None:
    """Show a checkpoint's model card: task, labels, recipe, metrics, provenance.

    Example: lstmtext info sst2.ckpt
    """
    from lstmtext.api import read_meta

    fmt = value(fmt)
    meta = read_meta(checkpoint)
    meta = {k: v for k, v in meta.items() if k != "tokenizer"}
    if fmt == "json":
        sys.stdout.write(json.dumps(meta) + "\n")
        return
    from rich.table import Table

    from lstmtext.progress import console

    size = Path(checkpoint).stat().st_size
    t = Table(title=f"{checkpoint} ({size / 1e6:.1f} MB)", show_header=False)
    t.add_column(style="bold")
    t.add_column()
    t.add_row("task", str(meta.get("task")))
    t.add_row("format version", str(meta.get("format_version")))
    if meta.get("export"):  # an ONNX file of lstmtext export
        t.add_row("export", ", ".join(f"{k}={v}" for k, v in meta["export"].items()))
    if meta.get("labels"):
        t.add_row("labels", ", ".join(meta["labels"]))
    for k, v in (meta.get("metrics") or {}).items():
        t.add_row(f"dev {k}", f"{v:.4f}" if isinstance(v, float) else str(v))
    recipe = meta.get("recipe", {})
    if "data" in recipe:
        t.add_row("dev data", dev_data(recipe["data"]))
    for section in ("encoder", "tokenizer", "train", "init", recipe.get("task")):
        if section and section in recipe and (section != "init" or any(recipe[section].values())):
            t.add_row(section, ", ".join(f"{k}={v}" for k, v in recipe[section].items()))
    for i, part in enumerate((meta.get("ensemble") or {}).get("parts") or [], 1):  # lstmtext ensemble
        t.add_row(f"member {i}", member_line(part))
    for k, v in (meta.get("provenance") or {}).items():
        if k == "data":
            for src in v:
                if "token_stream" in src:  # a streamed task's tokenized text (tokenstream.py), keyed by its content
                    t.add_row("token stream", f"{src['token_stream'][:12]} ({src.get('pieces', 0):,} pieces)")
                else:
                    t.add_row("data", f"{src.get('source')} sha256={src.get('sha256', '-')[:12]}")
        elif k == "lineage":
            for i, entry in enumerate(v, 1):
                t.add_row(f"lineage {i}", lineage_line(entry))
        else:
            t.add_row(k, str(v))
    console.print(t)


def dev_data(data: dict) -> str:
    """What the dev metrics above were measured on, from the recipe's [data] (a recipe stored before
    data.valid_by existed held out by example)."""
    if data.get("dev"):
        return str(data["dev"])
    if not data.get("train"):
        return "the embedded sample's dev split"
    if data.get("valid_fraction", 0) <= 0:
        return "none (the last checkpoint was kept)"
    by = data.get("valid_by", "example")
    cap = f"{data.get('valid_max')} sentences" if by == "sentence" else data.get("valid_max")  # lines, if streamed
    return f"a seeded {100 * data['valid_fraction']:g} % slice of train, by {by} (at most {cap})"


def lineage_line(entry: dict) -> str:
    """One ancestor: 'wikitext2-bilm (lm, key 0123abcd…) 1:00:12, dev ppl_word=215.3; data wikitext2:train;
    CHECKPOINT'. A checkpoint that was not built as a stage has no recipe or key."""
    from lstmtext.progress import fmt_seconds

    name = entry.get("name") or "--init-from"
    key = f", key {entry['key'][:16]}" if entry.get("key") else ""
    metrics = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in (entry.get("metrics") or {}).items()
    )
    data = ", ".join(str(src.get("source")) for src in entry.get("data") or [])
    return (
        f"{name} ({entry.get('task')}{key}) {fmt_seconds(entry.get('train_seconds') or 0)}"
        + (f", dev {metrics}" if metrics else "")
        + (f"; data {data}" if data else "")
        + f"; {entry.get('checkpoint')}"
    )


def member_line(part: dict) -> str:
    """One member of an ensemble: its file, seed and the dev metrics it was selected on."""
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in (part.get("metrics") or {}).items() if isinstance(v, float))
    seed = f"seed {part['seed']}, " if part.get("seed") is not None else ""
    return f"{part.get('path')} sha256={str(part.get('sha256', '-'))[:12]} ({seed}dev {metrics or 'unknown'})"
