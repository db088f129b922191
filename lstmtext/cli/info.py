"""``lstmtext info``: a checkpoint's model card."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from lstmtext.cli.common import report_choice, value


def info(
    checkpoint: str = typer.Argument(..., help="A checkpoint."),
    fmt: report_choice() = typer.Option("table", "--format", "-f", help="table (stderr) | json (stdout)."),
) -> None:
    """Show a checkpoint's model card: task, labels, recipe, metrics, provenance.

    Example: lstmtext info sst2.ckpt
    """
    from lstmtext.checkpoint import read_meta

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
    if meta.get("labels"):
        t.add_row("labels", ", ".join(meta["labels"]))
    for k, v in (meta.get("metrics") or {}).items():
        t.add_row(f"dev {k}", f"{v:.4f}" if isinstance(v, float) else str(v))
    recipe = meta.get("recipe", {})
    for section in ("encoder", "tokenizer", "train", recipe.get("task")):
        if section and section in recipe:
            t.add_row(section, ", ".join(f"{k}={v}" for k, v in recipe[section].items()))
    for k, v in (meta.get("provenance") or {}).items():
        if k == "data":
            for src in v:
                t.add_row("data", f"{src.get('source')} sha256={src.get('sha256', '-')[:12]}")
        else:
            t.add_row(k, str(v))
    console.print(t)
