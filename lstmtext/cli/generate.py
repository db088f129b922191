"""``lstmtext generate``: continue prompts with a language model, writing text to stdout as it is produced."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from lstmtext.cli.common import default_model, device_choice, precision_choice, precision_help, value
from lstmtext.errors import UsageError


def _write_rows(events, rows: int, finished: list[bool]) -> None:
    """Write rows in order, one line each, while they are decoded together.

    The lowest unfinished row is written live (flushed per piece); text of later rows waits in a buffer
    and is written when its turn comes, so lines never interleave.
    """
    out = sys.stdout
    pending = [""] * rows
    cur = 0

    def advance() -> None:
        nonlocal cur
        while cur < rows and finished[cur]:
            out.write(pending[cur] + "\n")
            pending[cur] = ""
            cur += 1
        if cur < rows:  # the new live row: what it has produced so far, at once
            out.write(pending[cur])
            pending[cur] = ""
        out.flush()

    advance()
    for row, text, done in events:
        if row == cur:
            out.write(text)
            out.flush()
        else:
            pending[row] += text
        if done:
            finished[row] = True
            advance()
    advance()


def generate(
    prompt: Optional[str] = typer.Option(
        None, "--prompt", "-p", help="The text to continue. Without it: one prompt per stdin line."
    ),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="An LM checkpoint. Default: the one 'lstmtext train lm' last wrote."
    ),
    max_tokens: int = typer.Option(
        100, "--max-tokens", "-n", help="Most pieces to generate per sample, 1 to 10,000 (a line may end sooner)."
    ),
    temperature: float = typer.Option(
        0.8, "--temperature", "-t", help="Sampling temperature, 0.01 to 100; 0 = greedy."
    ),
    top_k: int = typer.Option(0, "--top-k", help="Sample only from the K most likely pieces; 0 = off."),
    top_p: float = typer.Option(
        0.95,
        "--top-p",
        help="Sample only from the most likely pieces holding this probability mass, in (0, 1]; 1 = off.",
    ),
    num_samples: int = typer.Option(
        1, "--num-samples", help="Samples per prompt (1 to 1,000), decoded together as one batch."
    ),
    seed: Optional[int] = typer.Option(
        None, "--seed", help="Random seed, 0 to 2**64 - 1: the same seed gives the same text. Default: a fresh one."
    ),
    stop: Optional[str] = typer.Option(
        None, "--stop", help="End a sample where this text appears (it is not written)."
    ),
    device: device_choice() = typer.Option("cpu", "--device", help="cpu | cuda | auto."),
    precision: precision_choice("lm") = typer.Option("auto", "--precision", help=precision_help("lm")),
) -> None:
    """Continue text with a language model, streamed to stdout as it is produced.

    Output: one line per sample, the prompt followed by its continuation. A prompt longer than 4,096 pieces is
    read from its last 4,096 (a note says so): the continuation depends on those.

    With --num-samples N each prompt gives N consecutive lines (prompt i, sample j → line i*N + j + 1).

    A blank stdin line gives N blank lines. A sample ends with its line, at --stop, or after --max-tokens.

    Example: lstmtext generate -m lm.ckpt --prompt "The history of" --max-tokens 60 --top-p 0.9 --seed 1
    """
    from lstmtext.tasks.lm import check_generate

    device, precision = value(device), value(precision)
    check_generate([prompt] if prompt is not None else [], max_tokens, temperature, top_k, top_p, num_samples, seed)
    if stop == "":
        raise UsageError("--stop: expected a non-empty string")
    from lstmtext.api import inference_precision, load

    predictor = load(model or str(default_model("lm")), device=device, task="lm", command="generate")
    kwargs = dict(
        max_tokens=max_tokens,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        num_samples=num_samples,
        seed=seed,
        stop=stop,
    )

    from lstmtext.data import InputLines

    with inference_precision(predictor, precision):
        # up to 64 rows decoded together (more where one prompt's samples are more): each row costs every step
        prompts_per_batch = max(1, 64 // num_samples)
        for lines in [[prompt]] if prompt is not None else InputLines(None).batches(prompts_per_batch):
            _generate_lines(predictor, lines, num_samples, kwargs)


def _generate_lines(predictor, lines: list[str], num_samples: int, kwargs: dict) -> None:
    """Continue a batch of prompt lines, ``num_samples`` rows each; a blank prompt gives blank rows in place."""
    keep = [i for i, line in enumerate(lines) if line.strip()]
    rows = len(lines) * num_samples
    finished = [True] * rows
    for i in keep:
        for j in range(num_samples):
            finished[i * num_samples + j] = False
    events = ()
    if keep:
        events = (
            (keep[i] * num_samples + j, text, done)
            for i, j, text, done in predictor.generate([lines[i] for i in keep], **kwargs)
        )
    _write_rows(events, rows, finished)
