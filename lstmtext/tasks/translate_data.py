"""Translation's reading helpers: line-aligned file pairs (a PREFIX, either file, or a folder of splits) and
records with source and target columns or a ``translation`` object; and its attention output (JSONL, PNG)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lstmtext.data import pick_column, read_lines, shorten
from lstmtext.errors import UsageError

SPLIT_NAMES = {  # file stems tried for each split when the data argument is a folder
    "train": ("train",),
    "validation": ("val", "valid", "validation", "dev"),
    "test": ("test", "test_2016_flickr", "newstest"),
}


def lang_suffix(path: Path, opts: Any) -> str | None:
    name = path.name.removesuffix(".gz")
    for lang in (opts.source_lang, opts.target_lang):
        if name.endswith("." + lang):
            return lang
    return None


def parallel_paths(source: str, opts: Any, split: str) -> tuple[Path, Path]:
    """(source file, target file) for a PREFIX, one of the two files, or a folder holding SPLIT.LANG."""
    src, tgt = opts.source_lang, opts.target_lang
    p = Path(source)
    if p.is_dir():
        for stem in SPLIT_NAMES.get(split, (split,)):
            if (p / f"{stem}.{src}").exists():
                return p / f"{stem}.{src}", p / f"{stem}.{tgt}"
        raise UsageError(
            f"{source}: a folder without {'/'.join(f'{s}.{src}' for s in SPLIT_NAMES.get(split, (split,)))}; "
            f"pass a PREFIX such as {source.rstrip('/')}/{SPLIT_NAMES.get(split, (split,))[0]} (files PREFIX.{src} + PREFIX.{tgt})"
        )
    gz = ".gz" if p.name.endswith(".gz") else ""
    lang = lang_suffix(p, opts) if p.is_file() else None
    prefix = str(p)[: -len(f".{lang}{gz}")] if lang else str(p)
    src_path, tgt_path = Path(f"{prefix}.{src}{gz}"), Path(f"{prefix}.{tgt}{gz}")
    for q in (src_path, tgt_path):
        if not q.is_file():
            found = sorted(x.name for x in Path(prefix).parent.glob(Path(prefix).name + ".*")) if prefix else []
            hint = f" (found: {', '.join(found)}; set --source-lang/--target-lang)" if found else ""
            if p.is_file() and not lang:
                raise UsageError(
                    f"{source}: expected a .tsv/.csv/.jsonl file with source and target columns, or line-aligned "
                    f"files PREFIX.{src} + PREFIX.{tgt}"
                )
            raise UsageError(f"{q}: file not found; expected line-aligned files {prefix}.{src} + {prefix}.{tgt}{hint}")
    return src_path, tgt_path


def read_parallel(src_path: Path, tgt_path: Path) -> Iterator[dict]:
    """Pairs from two line-aligned files, read together. Where one file ends first, the other's next line is
    refused (a shifted file ruins training), and the rest of the longer file is never read."""
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    n = 0
    while True:
        s, t = next(src, None), next(tgt, None)
        if s is None and t is None:
            return
        if s is None or t is None:
            longer, shorter, (lineno, _) = (tgt_path, src_path, t) if s is None else (src_path, tgt_path, s)
            raise UsageError(
                f"{longer} line {lineno}: no such line in {shorter}, which has {n} lines; expected line-aligned "
                "files (line i of one is the translation of line i of the other)"
            )
        n += 1
        yield {"source": s[1].strip(), "target": t[1].strip(), "where": f"{src_path} line {n}"}


def columns(available, opts: Any, where: str) -> tuple[str, str]:
    return (
        pick_column(available, opts.source_column, ("source", "src", opts.source_lang), "source", where),
        pick_column(available, opts.target_column, ("target", "tgt", opts.target_lang), "target", where),
    )


def from_record(rec: dict, opts: Any, cols, where: str) -> dict:
    if isinstance(rec.get("translation"), dict) and not (opts.source_column or opts.target_column):
        pair = rec["translation"]
        s, t = pair.get(opts.source_lang), pair.get(opts.target_lang)
        if s is None or t is None:
            raise UsageError(
                f"{where}: the translation object has languages {shorten(', '.join(map(str, pair)))}; expected "
                f"'{opts.source_lang}' and '{opts.target_lang}' (set --source-lang/--target-lang)"
            )
    else:
        s, t = rec.get(cols[0]), rec.get(cols[1])
        if s is None or t is None:
            raise UsageError(f"{where}: expected fields '{cols[0]}' and '{cols[1]}'")
    return {"source": str(s).strip(), "target": str(t).strip(), "where": where}


# -- attention output --------------------------------------------------------------------------------------
EOS_PIECE = "</s>"  # the label of the last target row: the weights of the step that ended the sentence


def attention_record(tok, src_ids: list[int], ids: list[int], weights) -> dict:
    """{"source": pieces, "target": pieces + ["</s>"], "weights"}: one row per target piece and one for EOS
    (len(target) rows), one column per source piece, each row summing to 1 (4 decimals)."""
    return {
        "source": [tok.sp.IdToPiece(i) for i in src_ids],
        "target": [tok.sp.IdToPiece(i) for i in ids] + [EOS_PIECE],
        "weights": [[round(w, 4) for w in row] for row in weights.tolist()],
    }


def plot_attention(folder: Path, line: int, source: str, record: dict) -> None:
    """DIR/NNNN.png for input line ``line``: the record's heatmap, titled with the source sentence."""
    from lstmtext.viz.attention import heatmap, picture_name

    heatmap(picture_name(folder, line), record["source"], record["target"], record["weights"], f"{line}: {source}")
