"""The command line: a thin Typer app over library functions of the same names.

torch, datasets and the task modules are imported inside command bodies only, so ``lstmtext --help``
starts in a fraction of a second. Errors the user can fix print one line and exit 2; runtime failures
exit 1; Ctrl-C exits 130 (after training has saved its resume state).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from lstmtext.config import PRECISION_HELP, check_precision
from lstmtext.errors import OutputClosed, TrainingStopped, UsageError

app = typer.Typer(
    name="lstmtext",
    help="One SentencePiece tokenizer and one BiLSTM encoder for sentiment, NER, language modelling and "
    "translation.\n\nQuick start:  lstmtext train sentiment && echo 'a gorgeous, witty film' | lstmtext predict",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
tokenizer_app = typer.Typer(help="Train, encode and decode with a SentencePiece model.", no_args_is_help=True)
app.add_typer(tokenizer_app, name="tokenizer")

TASK_NAMES = ("sentiment", "ner", "lm", "translate")


def _err(msg: str) -> None:
    sys.stderr.write(f"lstmtext: error: {msg}\n")
    sys.stderr.flush()


def main() -> None:
    """Entry point: run the app and turn every failure into one line and an exit code."""
    try:
        app(standalone_mode=False)
        # Python's last collections at exit walk every object torch made: 0.25 s of a 1.3 s `import torch`
        # run here. Frozen, they are skipped (the output is written; atexit handlers still run).
        gc.freeze()
    except UsageError as e:
        _err(str(e))
        sys.exit(2)
    except TrainingStopped as e:
        _err(str(e))
        sys.exit(2)
    except (OutputClosed, BrokenPipeError):
        # A reader downstream went away (| head -1): stop quietly, and keep Python from complaining at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as e:
        import click

        if isinstance(e, click.exceptions.Abort):
            _err("interrupted")
            sys.exit(130)
        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if os.environ.get("LSTMTEXT_DEBUG"):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        _err(f"{type(e).__name__}: {first} (set LSTMTEXT_DEBUG=1 for the traceback)")
        sys.exit(1)


def _resolve_recipe_path(recipe: Optional[str]) -> Optional[str]:
    """A recipe is a path, or the name of one in recipes/ (``--recipe sst2``)."""
    if recipe is None or Path(recipe).exists():
        return recipe
    from lstmtext.data import REPO_ROOT

    named = REPO_ROOT / "recipes" / f"{recipe}.toml"
    return str(named) if named.exists() else recipe


def _default_model(task: Optional[str]) -> Path:
    from lstmtext.paths import default_model_path, home

    if task:
        path = default_model_path(task)
        if not path.exists():
            raise UsageError(f"no model given and none trained yet at {path}; run 'lstmtext train {task}' or pass -m CKPT")
        return path
    models = sorted((home() / "models").glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not models:
        raise UsageError(f"no model given and none trained yet in {home() / 'models'}; run 'lstmtext train sentiment' or pass a checkpoint")
    return models[0]


def _looks_like_checkpoint(path: str) -> bool:
    from lstmtext.checkpoint import read_meta

    try:
        read_meta(path)
        return True
    except UsageError:
        return False


# -- train -------------------------------------------------------------------------------------------------
@app.command()
def train(
    task: str = typer.Argument(..., help=f"One of: {', '.join(TASK_NAMES)}."),
    recipe: Optional[str] = typer.Option(None, "--recipe", "-r", help="TOML recipe: a path or a name in recipes/ (sst2, imdb)."),
    train_data: Optional[str] = typer.Option(None, "--train", help="Training data: a file, or hf:NAME[:CONFIG]. Default: the sample in data/."),
    dev_data: Optional[str] = typer.Option(None, "--dev", help="Validation data for model selection. Default: a seeded slice of train."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Checkpoint to write. Default: ~/.lstmtext/models/TASK.ckpt ($LSTMTEXT_HOME)."),
    init_from: Optional[str] = typer.Option(None, "--init-from", help="Start from this checkpoint's tokenizer and encoder (e.g. a trained LM)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run that wrote --output, exactly where it stopped."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the training data (train.epochs)."),
    max_time: Optional[str] = typer.Option(None, "--max-time", help="Stop training after this long: 90s, 20m, 1h30m (train.max_time)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed; the same seed gives the same model on CPU (train.seed)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto | cpu | cuda (mixed precision on CUDA)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column holding the text (sentiment)."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Column holding the label (sentiment)."),
    source_lang: Optional[str] = typer.Option(None, "--source-lang", help="Source language suffix, e.g. de (translate)."),
    target_lang: Optional[str] = typer.Option(None, "--target-lang", help="Target language suffix, e.g. en (translate)."),
    set_: List[str] = typer.Option([], "--set", help="Override a recipe value: --set train.lr=0.001 (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar or tables."),
) -> None:
    """Train a model and write its best checkpoint.

    Example: lstmtext train sentiment --train ../shared/data/sst2/train.tsv -o sst2.ckpt --max-time 20m
    """
    from lstmtext.progress import set_quiet
    from lstmtext.training import Interrupted
    from lstmtext.training import train as run

    set_quiet(quiet)
    settings = {}
    for key, value in (
        ("data.train", train_data), ("data.dev", dev_data), ("train.epochs", epochs), ("train.max_time", max_time),
        ("train.seed", seed), ("train.device", device), (f"{task}.text_column", text_column),
        (f"{task}.label_column", label_column), (f"{task}.source_lang", source_lang),
        (f"{task}.target_lang", target_lang),
    ):
        if value is not None:
            settings[key] = value
    try:
        summary = run(task, _resolve_recipe_path(recipe), settings=settings, overrides=list(set_), out=output,
                      init_from=init_from, resume=resume, force=force, show_progress=not quiet)
    except Interrupted as e:
        _err(str(e))
        sys.exit(130)
    if summary.get("best"):
        from lstmtext.progress import note

        metric = summary["main_metric"]
        value = summary["best"].get(metric)
        if value is not None:
            note(f"best validation {metric}: {value:.4f}")


# -- evaluate ----------------------------------------------------------------------------------------------
@app.command()
def evaluate(
    checkpoint: str = typer.Argument(..., help="A checkpoint written by 'lstmtext train'."),
    data: str = typer.Argument(..., help="Labelled data in the task's format, or hf:NAME[:CONFIG][@SPLIT]."),
    fmt: str = typer.Option("table", "--format", "-f", help="table (on stderr, for people) | json (on stdout)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
) -> None:
    """Score a checkpoint on labelled data with the task's standard metrics.

    Example: lstmtext evaluate sst2.ckpt ../shared/data/sst2/dev.tsv
    """
    if fmt not in ("table", "json"):
        raise UsageError(f"--format {fmt}: expected table or json")
    from lstmtext.api import evaluate as run
    from lstmtext.checkpoint import read_meta
    from lstmtext.progress import console
    from lstmtext.tasks import get_task

    metrics = run(checkpoint, data, device=device, precision=precision)
    if fmt == "json":
        sys.stdout.write(json.dumps({"checkpoint": checkpoint, "data": data, **metrics}) + "\n")
    else:
        get_task(read_meta(checkpoint)["task"]).report(metrics, console)


# -- predict -----------------------------------------------------------------------------------------------
def stream_predictions(predictor, source: Optional[str], fmt: str) -> None:
    """Files and fast pipes fill batches of up to the predictor's stream_batch lines (or 1 MiB of text), which
    it sorts by length: eng.testb's 3,453 lines in one batch were tagged in 5.5-5.9 s against 6.7 s in batches
    of 512, whose last, part-filled length buckets waste the LSTMs' time. An interactive line comes alone, at once."""
    from lstmtext.data import InputLines, write_lines

    reader = InputLines(source)
    for lines in reader.batches(predictor.stream_batch):
        write_lines([predictor.format(text, result, fmt) for text, result in zip(lines, predictor.predict(lines))])


@app.command()
def predict(
    args: List[str] = typer.Argument(None, help="[CHECKPOINT] [INPUT|-]: one text per line; stdin when INPUT is - or missing."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint (instead of the first argument)."),
    fmt: Optional[str] = typer.Option(None, "--format", "-f", help="text | jsonl (sentiment); conll | jsonl | inline (ner). Default: the task's first."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
    precision: str = typer.Option("auto", "--precision", help=PRECISION_HELP),
) -> None:
    """Run any checkpoint over text, one prediction per input line, streamed to stdout.

    Example: cat reviews.txt | lstmtext predict sst2.ckpt --format jsonl
    """
    args = list(args or [])
    if len(args) > 2:
        raise UsageError("predict takes at most two arguments: CHECKPOINT and INPUT")
    if model is None and len(args) == 2:
        model, source = args
    elif model is None and len(args) == 1 and _looks_like_checkpoint(args[0]):
        model, source = args[0], None
    else:
        if len(args) == 2:
            raise UsageError("predict: pass the checkpoint either as the first argument or with -m, not both")
        source = args[0] if args else None
    if model is None:
        model = str(_default_model(None))
        from lstmtext.progress import note

        note(f"using {model}")
    from lstmtext.api import inference_precision, load

    check_precision(precision)
    predictor = load(model, device=device)
    fmt = fmt or predictor_formats(predictor)[0]
    if fmt not in predictor_formats(predictor):
        raise UsageError(f"--format {fmt}: a {predictor.task} model writes {' or '.join(predictor_formats(predictor))}")
    with inference_precision(predictor, precision):
        stream_predictions(predictor, source, fmt)


def predictor_formats(predictor) -> tuple:
    from lstmtext.tasks import get_task

    return get_task(predictor.task).FORMATS


# -- info --------------------------------------------------------------------------------------------------
@app.command()
def info(
    checkpoint: str = typer.Argument(..., help="A checkpoint."),
    fmt: str = typer.Option("table", "--format", "-f", help="table (stderr) | json (stdout)."),
) -> None:
    """Show a checkpoint's model card: task, labels, recipe, metrics, provenance.

    Example: lstmtext info sst2.ckpt
    """
    from lstmtext.checkpoint import read_meta

    meta = read_meta(checkpoint)
    meta = {k: v for k, v in meta.items() if k != "tokenizer"}
    if fmt == "json":
        sys.stdout.write(json.dumps(meta) + "\n")
        return
    if fmt != "table":
        raise UsageError(f"--format {fmt}: expected table or json")
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


# -- average -----------------------------------------------------------------------------------------------
@app.command()
def average(
    checkpoints: List[str] = typer.Argument(..., help="Two or more checkpoints of runs that share their start."),
    output: Path = typer.Option(..., "--output", "-o", help="The averaged checkpoint to write."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --output."),
) -> None:
    """Average the weights of runs that started from the same weights (a model soup: one model, at one
    model's cost). Give the runs the same --init-from and --set train.init_seed=N, and each its own --seed.

    Example: lstmtext average run1.ckpt run2.ckpt -o soup.ckpt && lstmtext evaluate soup.ckpt test.conll
    """
    from lstmtext.api import average as run
    from lstmtext.progress import note

    run(checkpoints, output, force)
    note(f"wrote {output}: the mean of {len(checkpoints)} checkpoints (its dev score is unknown: evaluate it)")


# -- tokenizer ---------------------------------------------------------------------------------------------
def _load_tokenizer(model: str):
    from lstmtext.checkpoint import read_meta, tokenizer_proto
    from lstmtext.data import check_file
    from lstmtext.tokenizer import Tokenizer

    check_file(model)
    if _looks_like_checkpoint(model):
        return Tokenizer(tokenizer_proto(read_meta(model)))
    return Tokenizer(Path(model).read_bytes())


@tokenizer_app.command("train")
def tokenizer_train(
    inputs: List[str] = typer.Argument(..., help="Plain-text files, one sentence or paragraph per line."),
    output: Path = typer.Option(..., "--output", "-o", help="The SentencePiece .model file to write."),
    vocab_size: int = typer.Option(8000, "--vocab-size"),
    model_type: str = typer.Option("unigram", "--model-type", help="unigram | bpe"),
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
    tok = Tokenizer.train(texts, vocab_size=vocab_size, model_type=model_type)
    atomic_write(output, lambda tmp: Path(tmp).write_bytes(tok.model_proto))
    note(f"wrote {output}: {len(tok)} pieces")


@tokenizer_app.command("encode")
def tokenizer_encode(
    source: Optional[str] = typer.Argument(None, help="Text file, or - / nothing for stdin."),
    model: str = typer.Option(..., "--model", "-m", help="A .model file or a checkpoint."),
    pieces: bool = typer.Option(False, "--pieces", help="Write pieces instead of ids."),
) -> None:
    """Encode each input line to space-separated ids (or pieces).

    Example: echo 'hello world' | lstmtext tokenizer encode -m sst2.ckpt --pieces
    """
    from lstmtext.data import InputLines, write_line

    tok = _load_tokenizer(model)
    for lines in InputLines(source).batches():
        for line in lines:
            write_line(" ".join(tok.pieces(line)) if pieces else " ".join(map(str, tok.encode_one(line))))


@tokenizer_app.command("decode")
def tokenizer_decode(
    source: Optional[str] = typer.Argument(None, help="File of space-separated ids, or - / nothing for stdin."),
    model: str = typer.Option(..., "--model", "-m", help="A .model file or a checkpoint."),
) -> None:
    """Decode each line of space-separated ids back to text.

    Example: lstmtext tokenizer encode -m tok.model in.txt | lstmtext tokenizer decode -m tok.model
    """
    from lstmtext.data import InputLines, write_line

    tok = _load_tokenizer(model)
    reader = InputLines(source)
    for lines in reader.batches():
        for i, line in enumerate(lines):
            try:
                ids = [int(x) for x in line.split()]
            except ValueError:
                raise UsageError(f"{reader.name}: expected space-separated integer ids, got {line[:40]!r}") from None
            bad = [x for x in ids if not 0 <= x < len(tok)]
            if bad:
                raise UsageError(f"{reader.name}: id {bad[0]} is outside the vocabulary (0..{len(tok) - 1})")
            write_line(tok.decode(ids))


# -- task commands: tag (ner), generate (lm), translate (translate) are registered here -----------------------
from lstmtext.cli_translate import translate  # noqa: E402

app.command()(translate)
from lstmtext.cli_ner import tag  # noqa: E402

app.command()(tag)
from lstmtext.cli_lm import generate  # noqa: E402

app.command()(generate)


if __name__ == "__main__":
    main()
