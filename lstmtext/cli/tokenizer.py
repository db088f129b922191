"""``lstmtext tokenizer train|encode|decode``: a SentencePiece model on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from lstmtext.cli.common import choice, looks_like_checkpoint, value
from lstmtext.errors import UsageError

app = typer.Typer(help="Train, encode and decode with a SentencePiece model.", no_args_is_help=True)


def load_tokenizer(model: str):
    from lstmtext.api import read_meta
    from lstmtext.checkpoint import tokenizer_proto
    from lstmtext.data import check_file
    from lstmtext.tokenizer import Tokenizer

    check_file(model)
    if looks_like_checkpoint(model):
        return Tokenizer(tokenizer_proto(read_meta(model)))
    return Tokenizer(Path(model).read_bytes())


@app.command("train")
def tokenizer_train(
    inputs: list[str] = typer.Argument(..., help="Plain-text files, one sentence or paragraph per line."),
    output: Path = typer.Option(..., "--output", "-o", help="The SentencePiece .model file to write."),
    vocab_size: int = typer.Option(8000, "--vocab-size"),
    model_type: choice("ModelType", ("unigram", "bpe")) = typer.Option(
        "unigram", "--model-type", help="unigram | bpe."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output."),
) -> None:
    """Train a SentencePiece model (byte fallback on) from text files.

    Example: lstmtext tokenizer train corpus.txt -o tok.model --vocab-size 8000
    """
    from lstmtext.checkpoint import atomic_write
    from lstmtext.data import read_lines
    from lstmtext.progress import note
    from lstmtext.tokenizer import Tokenizer

    if output.exists() and not force:
        raise UsageError(f"output {output} exists; pass --force to overwrite it")
    texts = (line for path in inputs for _, line in read_lines(path))
    tok = Tokenizer.train(texts, vocab_size=vocab_size, model_type=value(model_type))
    atomic_write(output, lambda tmp: Path(tmp).write_bytes(tok.model_proto))
    note(f"wrote {output}: {len(tok)} pieces")


@app.command("encode")
def tokenizer_encode(
    source: Optional[str] = typer.Argument(None, help="Text file, or - / nothing for stdin."),
    model: str = typer.Option(..., "--model", "-m", help="A .model file or a checkpoint."),
    pieces: bool = typer.Option(False, "--pieces", help="Write pieces instead of ids."),
) -> None:
    """Encode each input line to space-separated ids (or pieces).

    Example: echo 'hello world' | lstmtext tokenizer encode -m sst2.ckpt --pieces
    """
    from lstmtext.data import InputLines, write_line

    tok = load_tokenizer(model)
    for lines in InputLines(source).batches():
        for line in lines:
            write_line(" ".join(tok.pieces(line)) if pieces else " ".join(map(str, tok.encode_one(line))))


@app.command("decode")
def tokenizer_decode(
    source: Optional[str] = typer.Argument(None, help="File of space-separated ids, or - / nothing for stdin."),
    model: str = typer.Option(..., "--model", "-m", help="A .model file or a checkpoint."),
) -> None:
    """Decode each line of space-separated ids back to text.

    Example: lstmtext tokenizer encode -m tok.model in.txt | lstmtext tokenizer decode -m tok.model
    """
    from lstmtext.data import InputLines, write_line

    tok = load_tokenizer(model)
    reader = InputLines(source)
    for lines in reader.batches():
        for _i, line in enumerate(lines):
            try:
                ids = [int(x) for x in line.split()]
            except ValueError:
                raise UsageError(f"{reader.name}: expected space-separated integer ids, got {line[:40]!r}") from None
            bad = [x for x in ids if not 0 <= x < len(tok)]
            if bad:
                raise UsageError(f"{reader.name}: id {bad[0]} is outside the vocabulary (0..{len(tok) - 1})")
            write_line(tok.decode(ids))
