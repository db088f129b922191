"""The task contract: what every task module provides, as a ``typing.Protocol``.

A task is one module of plain functions and constants (tasks/sentiment.py is the reference); the module itself
satisfies ``Task`` (PEP 544 lets a module implement a protocol), and ``get_task`` checks it at import with
``isinstance``, so a missing member fails loudly instead of falling back to a default. Every member is required.

Task modules import torch inside their functions only, so the CLI reads their names, formats and options for
``--help`` and for its checks without paying for torch. docs/design.md §3 says what each member is for and why.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable


@runtime_checkable
class Predictor(Protocol):
    """What ``lstmtext.load`` returns: a loaded model that turns lines of text into results."""

    task: ClassVar[str]
    stream_batch: ClassVar[int]  # lines per predict() call when reading a file or a fast pipe
    batch_tokens: ClassVar[int]  # pieces per batch in predict() and in ``lstmtext evaluate``
    explain_formats: ClassVar[tuple[str, ...]]  # formats that show --explain's attributions; () = no explanations
    model: Any
    tok: Any
    labels: list[str]
    recipe: Any
    device: Any

    def predict(self, texts: str | list[str]) -> Any:
        """One result per text (None or an empty result for a blank one), in order; a single string gives its
        one result (``one_or_many`` wraps a list-only predict into this)."""

    def format(self, text: str, result: Any, fmt: str) -> str:
        """One output line for ``fmt`` (one of the task's FORMATS)."""

    def header(self, fmt: str) -> str:
        """What a stream in ``fmt`` starts with, written once before the first line ('' for nothing; an HTML
        page's head)."""

    def footer(self, fmt: str) -> str:
        """What a stream in ``fmt`` ends with, written once after the last line ('' for nothing)."""

    def show_attention(self, jsonl: bool, plot_dir: Any) -> None:
        """``--attention``/``--plot DIR``: add attention weights to JSONL and/or draw them; a model without
        attention weights raises UsageError naming why."""


@runtime_checkable
class Task(Protocol):
    NAME: str
    MAIN_METRIC: str  # the dev metric that selects checkpoints
    HIGHER_IS_BETTER: bool  # the direction of MAIN_METRIC
    FORMATS: tuple[str, ...]  # predict --format choices; the first is the default
    PRECISIONS: tuple[str, ...]  # inference precisions its models run in (int8 only where an LSTM pass is all)
    SPEED_UNIT: str  # what ``benchmark speed`` counts per second: "words", "pieces" (generated) or "sentences"
    EVAL_OPTIONS: tuple[str, ...]  # Options keys ``evaluate --set`` may change on a trained model (scoring, decoding)
    Options: type  # dataclass: the recipe section named after the task ([sentiment]); its defaults live there
    DEFAULTS: dict  # {section: {key: value}}: the task's own defaults for the shared sections
    Predictor: type  # Predictor(model, tok, labels, recipe, device) satisfying the Predictor protocol

    def validate(self, options: Any) -> None:
        """Raise UsageError for option values out of range (types and choices are checked as the recipe is read)."""

    def read(self, source: str, opts: Any, split: str) -> list[dict]:
        """Examples (dicts with "where" = "FILE line N" for messages) from a file, folder or hf:NAME."""

    def tokenizer_texts(self, examples: list[dict]) -> Iterable[str]:
        """The text SentencePiece trains on."""

    def make_labels(self, examples: list[dict]) -> list[str]:
        """Label names ([] when the task has none)."""

    def featurize(self, examples: list[dict], tok: Any, labels: list[str], recipe: Any) -> list[dict]:
        """Features, each with "length" (pieces) for bucketing."""

    def collate(self, features: list[dict]) -> dict:
        """A batch of tensors: "tokens" (B, T), "lengths" (B,) and the targets."""

    def build_model(self, recipe: Any, vocab_size: int, labels: list[str]) -> Any:
        """Model(Encoder, Head); ``model(batch)`` returns (logits, loss)."""

    def trained_weights(self, state: dict, meta: dict) -> tuple[dict, str]:
        """``--init-from`` a checkpoint of this task: the part of its weights (``state``) that its training
        touched, which another run may start from, and a note on what was left out ('' for nothing)."""

    def init_from(self, own: dict, state: dict, meta: dict) -> str:
        """``--init-from``: after the shared encoder copy, take what else of another checkpoint fits this task's
        head into ``own`` (a state dict, updated in place); return what was taken, for the note ('' for nothing)."""

    def ensemble(self, models: list) -> Any:
        """Several trained models of one recipe as one model whose ``forward`` combines their predictions
        (lstmtext/ensemble.py); a task whose predictions do not combine raises UsageError, for any list."""

    def evaluate(
        self,
        model: Any,
        features: list[dict],
        labels: list[str],
        device: Any,
        batch_tokens: int,
        tok: Any = None,
        selection: bool = False,
    ) -> dict:
        """Metrics, MAIN_METRIC among them; selection=True while training picks checkpoints (a cheaper variant
        may run there, e.g. greedy decoding for translation)."""

    def summary(self, metrics: dict) -> dict:
        """The scalar metrics logged after each evaluation."""

    def report(self, metrics: dict, console: Any) -> None:
        """The tables ``lstmtext evaluate`` prints."""

    def plots(self, metrics: dict, out_dir: Path) -> list[Path]:
        """``lstmtext evaluate --plot DIR``: draw the task's pictures of ``metrics`` (evaluate's result) into
        ``out_dir`` (lstmtext/viz/charts.py) and return the files written ([] for a task with none)."""


@runtime_checkable
class Streamed(Protocol):
    """A task whose training text is one long stream of pieces (the language model). Its training data never
    sits in memory: training/streamed.py reads the sources line by line into the token cache on disk
    (lstmtext/corpus.py) and trains on windows read from it. Its dev and test data still go through ``read``."""

    def stream_lines(self, source: str, opts: Any, split: str) -> Iterator[str]:
        """The text of one source, line by line, read lazily (``hf:`` sources stream). ``read`` gives the same
        lines as examples."""

    def stream_windows(self, stream: Any, recipe: Any) -> Sequence[dict]:
        """The training features over a ``corpus.TokenStream``: a ``corpus.Windows`` whose items are what
        ``featurize`` makes of the same text."""

    def stream_batches(self, windows: Any, recipe: Any, epoch: int, world: int) -> list:
        """One epoch's training batches over ``stream_windows``'s windows (arrays of window indices), for all
        ``world`` processes together (the loop deals every world-th batch to each)."""


def one_or_many(predict: Callable) -> Callable:
    """Let a list-in, list-out ``predict`` also take one string and give its one result."""

    @functools.wraps(predict)
    def wrapper(self, texts):
        if isinstance(texts, str):
            return predict(self, [texts])[0]
        return predict(self, list(texts))

    return wrapper


TASK_MEMBERS = tuple(
    name
    for name in {**Task.__annotations__, **{k: v for k, v in vars(Task).items() if callable(v)}}
    if not name.startswith("_")
)

STREAMED_MEMBERS = tuple(name for name, v in vars(Streamed).items() if callable(v) and not name.startswith("_"))

PREDICTOR_MEMBERS = tuple(
    name
    for name in {**Predictor.__annotations__, **{k: v for k, v in vars(Predictor).items() if callable(v)}}
    if not name.startswith("_")
)
# What a Predictor class itself declares (the rest is set on each instance by its __init__).
PREDICTOR_CLASS_MEMBERS = tuple(
    name
    for name in PREDICTOR_MEMBERS
    if str(Predictor.__annotations__.get(name, "")).startswith("ClassVar") or callable(vars(Predictor).get(name))
)
