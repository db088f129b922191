"""What the commands share: option types whose choices come from the task modules, the default-model lookup,
streaming predictions, and the one-line error.

Nothing here imports torch. The task modules are cheap to import (they import torch inside their functions),
so choices and help texts read them; task names are read from ``lstmtext.tasks.TASKS`` each time a command
line is parsed, so a task added to it at run time is a valid choice.
"""

from __future__ import annotations

import functools
import sys
from enum import Enum
from pathlib import Path
from typing import Optional

import typer

from lstmtext.errors import UsageError

DEVICES = ("auto", "cpu", "cuda")
REPORT_FORMATS = ("table", "json")  # evaluate and info: a table on stderr for people, JSON on stdout
# What each inference precision means; which tasks offer it comes from their PRECISIONS.
PRECISION_NOTES = {
    "auto": "bf16 on CUDA, fp32 on CPU",
    "bf16": "faster only on a CPU with AVX-512 BF16 or AMX",
    "fp16": "CUDA",
    "int8": "CPU, int8 LSTM or GRU weights",
}


def error(message: str) -> None:
    """The one line every failure prints on stderr."""
    sys.stderr.write(f"lstmtext: error: {message}\n")
    sys.stderr.flush()


def fail(message: str, code: int) -> None:
    """Print the error line and end the command with ``code`` (for exit codes other than 2 and 1)."""
    error(message)
    raise typer.Exit(code)


def task_names() -> tuple[str, ...]:
    from lstmtext.tasks import TASKS

    return tuple(TASKS)


def task_module(name: str):
    from lstmtext.tasks import get_task

    return get_task(name)


def _union(attr: str) -> tuple[str, ...]:
    """The values of one tuple attribute of every task module, each once, in the order first met."""
    seen: dict[str, None] = {}
    for name in task_names():
        seen.update(dict.fromkeys(getattr(task_module(name), attr)))
    return tuple(seen)


def all_formats() -> tuple[str, ...]:
    return _union("FORMATS")


def all_precisions() -> tuple[str, ...]:
    return _union("PRECISIONS")


def task_formats(name: str) -> tuple[str, ...]:
    return tuple(task_module(name).FORMATS)


def task_precisions(name: str) -> tuple[str, ...]:
    return tuple(task_module(name).PRECISIONS)


# -- choices -----------------------------------------------------------------------------------------------
# A choice is an Enum, the one choice type every supported Typer offers. The commands' annotations call the
# functions below (the modules use postponed annotations), and Typer evaluates them each time it builds the
# Click command, so the values are those of the task modules when a command line is parsed.
@functools.cache
def choice(name: str, values: tuple[str, ...]) -> type[Enum]:
    return Enum(name, [(v, v) for v in values])  # type: ignore[return-value]


def value(option):
    """The string a choice stands for (None stays None)."""
    return option.value if isinstance(option, Enum) else option


def task_choice() -> type[Enum]:
    return choice("Task", task_names())


def device_choice() -> type[Enum]:
    return choice("Device", DEVICES)


def report_choice() -> type[Enum]:
    return choice("ReportFormat", REPORT_FORMATS)


def format_choice(task: Optional[str] = None) -> type[Enum]:
    """One task's output formats, or (for predict, before the model is loaded) every task's."""
    return choice(f"{task or 'Any'}Format", task_formats(task) if task else all_formats())


def precision_choice(task: Optional[str] = None) -> type[Enum]:
    return choice(f"{task or 'Any'}Precision", task_precisions(task) if task else all_precisions())


def precision_help(task: Optional[str] = None) -> str:
    """``auto (…) | fp32 | … | int8 (…; sentiment, ner)``: each precision with its note, and the tasks that offer
    it where not every task does."""
    names = task_names() if task is None else (task,)
    offered = {name: task_precisions(name) for name in names}
    parts = []
    for p in all_precisions() if task is None else task_precisions(task):
        notes = [PRECISION_NOTES[p]] if p in PRECISION_NOTES else []
        takers = [name for name, ps in offered.items() if p in ps]
        if len(takers) < len(names):
            notes.append(f"{', '.join(takers)} models")
        parts.append(f"{p} ({'; '.join(notes)})" if notes else p)
    return " | ".join(parts) + "."


def formats_help() -> str:
    """``text | jsonl (sentiment, lm, translate); conll | jsonl | inline (ner)``: each task's formats."""
    groups: dict[tuple, list[str]] = {}
    for name in task_names():
        groups.setdefault(task_formats(name), []).append(name)
    return "; ".join(f"{' | '.join(fmts)} ({', '.join(names)})" for fmts, names in groups.items())


def default_model(task: Optional[str]) -> Path:
    """The checkpoint ``lstmtext train TASK`` last wrote. With no task, the one task's model that is there; when
    several tasks have one, which is meant is unknown (the newest may be a translation model while the user
    pipes reviews), so the user is asked to choose."""
    from lstmtext.paths import default_model_path, home

    if task:
        path = default_model_path(task)
        if not path.exists():
            raise UsageError(
                f"no model given and none trained yet at {path}; run 'lstmtext train {task}' or pass -m CKPT"
            )
        return path
    trained = [name for name in task_names() if default_model_path(name).exists()]
    if not trained:
        raise UsageError(
            f"no model given and none trained yet in {home() / 'models'}; "
            "run 'lstmtext train sentiment' or pass a checkpoint"
        )
    if len(trained) > 1:
        raise UsageError(
            f"no model given and models of several tasks are in {home() / 'models'} ({', '.join(trained)}); "
            f"pass -m CKPT or --task {trained[0]}"
        )
    return default_model_path(trained[0])


def model_or_default(model: Optional[str], task: Optional[str]) -> str:
    """``model``, or the default one for ``task`` (named on stderr, so the user sees which was used)."""
    if model is not None:
        return model
    from lstmtext.progress import note

    path = str(default_model(task))
    note(f"using {path}")
    return path


def looks_like_checkpoint(path: str) -> bool:
    from lstmtext.api import read_meta
    from lstmtext.export import is_exported

    if is_exported(path) and Path(path).is_file():  # loading it gives the real error (onnxruntime missing, ...)
        return True
    try:
        read_meta(path)
        return True
    except UsageError:
        return False


def attention_outputs(attention: bool, plot, fmt: Optional[str]) -> Optional[Path]:
    """--attention and --plot, checked before a model loads: the folder --plot writes into (made if missing), or
    None. ``fmt`` None is a task's default format, checked again once the model says which it is."""
    if attention and fmt not in (None, "jsonl"):
        raise UsageError("--attention: the weights are written in JSONL; add --format jsonl")
    if plot is None:
        return None
    from lstmtext.viz.attention import plot_dir

    return plot_dir(plot)


def stream_predictions(predictor, source: Optional[str], fmt: str) -> None:
    """Files and fast pipes fill batches of up to the predictor's stream_batch lines (or 1 MiB of text), which
    it sorts by length, so the LSTMs see few part-filled length buckets. An interactive line comes alone, at once.

    A format that is a document rather than lines (NER's html) gets the predictor's header before the first line
    and its footer after the last."""
    from lstmtext.data import InputLines, write_lines

    reader = InputLines(source)
    header = predictor.header(fmt)  # written with the first batch: input that turns out empty writes nothing
    for lines in reader.batches(predictor.stream_batch):
        out = [predictor.format(text, result, fmt) for text, result in zip(lines, predictor.predict(lines))]
        write_lines([header, *out] if header else out)
        header = ""
    footer = predictor.footer(fmt)
    if footer:
        write_lines([footer])
