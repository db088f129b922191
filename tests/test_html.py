"""tag --format html (a page, entities highlighted by type) and --format inline (coloured on a terminal only)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pytest
from conftest import TINY, assert_usage_error, run_cli

from lstmtext.tasks import ner_format

LINES = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
    "",
    'Shares in Siemens & <Co> fell after "Lars Becker" resigned.',
    "John lives in Berlin .",
]


@pytest.fixture(scope="module")
def ner_ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("ner_html") / "tiny.ckpt"
    proc = run_cli(
        "train", "ner", "-o", out, "--epochs", "4", "-q", *TINY, "--set", "train.batch_tokens=600",
        LSTMTEXT_HOME=str(out.parent / "home"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out


class Page(HTMLParser):
    """Each div.line's text, and each mark's (label, text without its label span), per line."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []
        self.marks: list[list[tuple[str, str]]] = []
        self.where: list[str] = []  # open elements of interest: line, mark, label

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "div" and attrs.get("class") == "line":
            self.lines.append("")
            self.marks.append([])
            self.where.append("line")
        elif tag == "mark":
            self.marks[-1].append((attrs["data-label"], ""))
            self.where.append("mark")
        elif tag == "span":
            self.where.append("label")

    def handle_endtag(self, tag):
        if tag in ("div", "mark", "span") and self.where:
            self.where.pop()

    def handle_data(self, data):
        if not self.where or self.where[-1] == "label":
            return
        self.lines[-1] += data
        if self.where[-1] == "mark":
            label, text = self.marks[-1][-1]
            self.marks[-1][-1] = (label, text + data)


def test_html_spans_are_the_jsonl_entities(ner_ckpt):
    text = "\n".join(LINES) + "\n"
    jsonl = run_cli("tag", "-m", ner_ckpt, "--format", "jsonl", input=text)
    page = run_cli("tag", "-m", ner_ckpt, "--format", "html", input=text)
    assert jsonl.returncode == 0 and page.returncode == 0, page.stderr
    results = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert sum(len(r["entities"]) for r in results) >= 3  # the page has something to show
    html = page.stdout
    assert html.startswith("<!doctype html>\n<html") and html.endswith("</body>\n</html>\n")
    assert html.count("<!doctype html>") == 1 and html.count("</html>") == 1
    parsed = Page()
    parsed.feed(html)
    assert parsed.lines == LINES  # the text, unescaped, is the input line exactly
    assert parsed.marks == [[(e["label"], e["text"]) for e in r["entities"]] for r in results]
    assert "&lt;" in html and "&gt;" in html and "&amp;" in html and "<Co>" not in html


def test_html_of_one_blank_line_is_a_page_and_no_input_writes_nothing(ner_ckpt):
    proc = run_cli("tag", "-m", ner_ckpt, "--format", "html", input="\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ner_format.HEADER + '\n<div class="line"></div>\n' + ner_format.FOOTER + "\n"
    proc = run_cli("tag", "-m", ner_ckpt, "--format", "html", input="")
    assert_usage_error(proc, "no input")
    assert proc.stdout == ""


def test_inline_piped_is_plain_and_coloured_only_on_a_terminal(ner_ckpt, monkeypatch):
    import lstmtext

    text = "\n".join(LINES) + "\n"
    proc = run_cli("tag", "-m", ner_ckpt, "--format", "inline", input=text)
    assert proc.returncode == 0, proc.stderr
    p = lstmtext.load(ner_ckpt)
    results = p.predict(LINES)
    plain = []
    for line, r in zip(LINES, results):
        out, pos = [], 0
        for e in r["entities"]:
            out += [line[pos : e["start"]], f"[{e['label']} {e['text']}]"]
            pos = e["end"]
        plain.append("".join(out) + line[pos:] if r["tokens"] else "")
    assert proc.stdout == "".join(f"{s}\n" for s in plain) and "\x1b" not in proc.stdout

    p.colour = True  # what a terminal gets
    coloured = [p.format(line, r, "inline") for line, r in zip(LINES, results)]
    assert all("\x1b[" in c for c, r in zip(coloured, results) if r["entities"])
    for c, line, r in zip(coloured, LINES, results):
        # without the escape codes: each entity padded by a space, its label after it
        want, pos = [], 0
        for e in r["entities"]:
            want += [line[pos : e["start"]], f" {e['text']} {e['label']} "]
            pos = e["end"]
        assert re.sub(r"\x1b\[[0-9;]*m", "", c) == ("".join(want) + line[pos:] if r["tokens"] else "")


def test_use_colour_follows_the_terminal_and_no_color(monkeypatch):
    class Stream:
        def __init__(self, tty):
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert ner_format.use_colour(Stream(True)) is True
    assert ner_format.use_colour(Stream(False)) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert ner_format.use_colour(Stream(True)) is False


def test_every_type_gets_a_colour():
    assert ner_format.colour("PER") == "#aa9cfc"
    assert ner_format.colour("PRODUCT") == ner_format.colour("PRODUCT") in ner_format.PALETTE


def test_inspect_ranks_units_by_predicted_entities(ner_ckpt):
    proc = run_cli("inspect", ner_ckpt, "--text", LINES[0], "--rank-by", "entity", "--top", "3", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["ranking"]) == 3 and all(-1 <= row["r"] <= 1 for row in out["ranking"])
