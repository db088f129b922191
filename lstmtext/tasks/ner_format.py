"""How tagged lines look to people: an HTML page with entities highlighted by type (as displaCy draws them),
and the inline format coloured on a terminal.

Every entity is cut out of the line by its character offsets (``start``, ``end`` of the JSONL output), so the
page shows exactly the spans the other formats report.
"""

from __future__ import annotations

import html
import os
import sys
import zlib

# displaCy's colours for the CoNLL types; any other type gets one from PALETTE by a stable hash of its name
COLOURS = {"PER": "#aa9cfc", "LOC": "#ff9561", "ORG": "#7aecec", "MISC": "#bfeeb7", "GPE": "#feca74"}
PALETTE = ("#e4e7d2", "#c887fb", "#9cc9cc", "#ffeb80", "#ff8197", "#f0d0ff", "#bfe1d9", "#e4e7d2")
# ANSI background colours (256-colour codes) and the same choice rule for the terminal
ANSI = {"PER": 183, "LOC": 216, "ORG": 123, "MISC": 157, "GPE": 222}
ANSI_PALETTE = (187, 177, 152, 229, 211, 225, 194)

HEADER = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lstmtext tag</title>
<style>
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; line-height: 2.4; margin: 2em; }
.line { white-space: pre-wrap; min-height: 1.2em; border-bottom: 1px solid #eee; padding: 0.2em 0; }
mark.entity { padding: 0.25em 0.4em; margin: 0 0.15em; border-radius: 0.35em; line-height: 1; }
mark.entity .label { font-size: 0.7em; font-weight: bold; text-transform: uppercase; vertical-align: middle;
  margin-left: 0.5em; }
</style>
</head>
<body>"""
FOOTER = "</body>\n</html>"


def colour(label: str) -> str:
    return COLOURS.get(label) or PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def html_line(text: str, result: dict) -> str:
    """One ``<div class="line">`` of the page: the text, HTML-escaped, each entity a ``<mark>`` coloured by its
    type with the type's label after the entity's text."""
    parts, pos = ['<div class="line">'], 0
    for ent in result["entities"]:
        label = html.escape(ent["label"])
        parts.append(html.escape(text[pos : ent["start"]]))
        parts.append(
            f'<mark class="entity" data-label="{label}" style="background: {colour(ent["label"])}">'
            f'{html.escape(text[ent["start"] : ent["end"]])}<span class="label">{label}</span></mark>'
        )
        pos = ent["end"]
    parts.append(html.escape(text[pos:]))
    parts.append("</div>")
    return "".join(parts)


def use_colour(stream=None) -> bool:
    """Colour only for a person: stdout is a terminal and NO_COLOR (no-color.org) is not set."""
    stream = stream or sys.stdout
    return not os.environ.get("NO_COLOR") and hasattr(stream, "isatty") and stream.isatty()


def inline(text: str, result: dict, colour_on: bool = False) -> str:
    """``[PER Angela Merkel] met ...``; with colour, each entity on its type's background instead, the type
    label in bold after it."""
    parts, pos = [], 0
    for ent in result["entities"]:
        parts.append(text[pos : ent["start"]])
        if colour_on:
            code = ANSI.get(ent["label"]) or ANSI_PALETTE[zlib.crc32(ent["label"].encode()) % len(ANSI_PALETTE)]
            parts.append(f"\x1b[30;48;5;{code}m {ent['text']} \x1b[1m{ent['label']} \x1b[0m")
        else:
            parts.append(f"[{ent['label']} {ent['text']}]")
        pos = ent["end"]
    parts.append(text[pos:])
    return "".join(parts)


def report(metrics: dict, console) -> None:
    """The tables ``lstmtext evaluate`` prints for an NER model: per type, then micro, then token accuracy."""
    from rich.table import Table

    t = Table(
        title=f"{metrics['sentences']} sentences, {metrics['tokens']} tokens, {metrics['entities']} entities "
        "(seqeval, strict spans)"
    )
    for c in ("type", "precision", "recall", "F1", "support"):
        t.add_column(c, justify="left" if c == "type" else "right")
    for kind, m in metrics["per_type"].items():
        t.add_row(
            kind, f"{100 * m['precision']:.2f}", f"{100 * m['recall']:.2f}", f"{100 * m['f1']:.2f}", str(m["support"])
        )
    t.add_section()
    t.add_row(
        "micro",
        f"{100 * metrics['precision']:.2f}",
        f"{100 * metrics['recall']:.2f}",
        f"{100 * metrics['f1']:.2f}",
        str(metrics["entities"]),
        style="bold",
    )
    console.print(t)
    console.print(f"token accuracy {100 * metrics['token_accuracy']:.2f}")
