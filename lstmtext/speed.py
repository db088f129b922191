"""``lstmtext benchmark speed``: how fast a checkpoint predicts, in its task's unit per second (SPEED_UNIT of
the task contract), over repeated timed passes after a warm-up, with a 95 % confidence interval of the mean.

Units: "words" are the whitespace tokens of the input lines, "sentences" the non-blank input lines, "pieces"
the SentencePiece pieces a language model generates (at most ``LM_MAX_TOKENS`` per prompt).

DATA is read as plain text, one input per line, as ``predict`` reads it; a ``.conll`` file gives one input per
sentence, its first-column words joined by spaces.
"""

from __future__ import annotations

import functools
import math
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lstmtext.errors import UsageError

LM_MAX_TOKENS = 20  # pieces a language model generates per prompt while timed

# Two-sided 95 % quantiles of Student's t for 1..30 degrees of freedom; beyond, the normal 1.96 is within 2 %.
T95 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
    2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
    2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)  # fmt: skip


def t95(dof: int) -> float:
    """The two-sided 95 % quantile of Student's t with ``dof`` degrees of freedom."""
    if dof < 1:
        raise ValueError("a confidence interval needs at least two passes")
    return T95[dof - 1] if dof <= len(T95) else 1.96


def ci95(values: list[float]) -> tuple[float, float]:
    """The 95 % confidence interval of the mean of ``values`` (t distribution, n - 1 degrees of freedom)."""
    mean = statistics.fmean(values)
    half = t95(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def summarize(per_pass: list[float]) -> dict:
    lo, hi = ci95(per_pass)
    return {
        "passes": len(per_pass),
        "mean": statistics.fmean(per_pass),
        "median": statistics.median(per_pass),
        "ci95": [lo, hi],
        "per_pass": per_pass,
    }


def parse_list(text: str, option: str, allowed: tuple[str, ...] | None = None, numbers: bool = False) -> list:
    """A comma list of an option (``fp32,int8``; ``1,2``), checked."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items:
        raise UsageError(f"{option} {text!r}: expected a comma-separated list")
    if numbers:
        if not all(s.isdigit() and int(s) >= 1 for s in items):
            raise UsageError(f"{option} {text}: expected positive whole numbers, e.g. 1,2,4")
        return [int(s) for s in items]
    odd = [s for s in items if s not in (allowed or ())]
    if odd:
        raise UsageError(f"{option} {odd[0]}: expected one of {', '.join(allowed or ())}")
    return items


def read_inputs(path: str) -> list[str]:
    """One input per line (a .conll file: one per sentence); blank lines are dropped."""
    from lstmtext.data import read_lines

    if Path(path).suffix == ".conll":
        texts, words = [], []
        for _, line in read_lines(path):
            cols = line.split()
            if not cols or cols[0] == "-DOCSTART-":
                if words:
                    texts.append(" ".join(words))
                words = []
            else:
                words.append(cols[0])
        if words:
            texts.append(" ".join(words))
    else:
        texts = [line for _, line in read_lines(path) if line.strip()]
    if not texts:
        raise UsageError(f"{path}: no input lines to time")
    return texts


def count_units(unit: str, texts: list[str], results: list, tok) -> int:
    """The units one pass handled (see the module's docstring)."""
    if unit == "words":
        return sum(len(t.split()) for t in texts)
    if unit == "sentences":
        return sum(1 for t in texts if t.strip())
    if unit == "pieces":
        return sum(len(tok.encode_one(r["continuation"])) for r in results if r and r.get("continuation"))
    raise ValueError(f"unknown speed unit {unit!r}")


def one_pass(predictor, texts: list[str], unit: str) -> tuple[int, float]:
    """(units, seconds) of predicting every text in the predictor's own stream batches."""
    size = predictor.stream_batch
    results, start = [], time.perf_counter()
    for i in range(0, len(texts), size):
        results += predictor.predict(texts[i : i + size])
    seconds = time.perf_counter() - start  # counting (re-encoding generated text) stays outside the clock
    return count_units(unit, texts, results, predictor.tok), seconds


def measure(predictor, texts: list[str], unit: str, warmup: int, repeats: int) -> dict:
    for _ in range(warmup):
        one_pass(predictor, texts, unit)
    per_pass = []
    for _ in range(repeats):
        units, seconds = one_pass(predictor, texts, unit)
        per_pass.append(units / seconds)
    return {"units": units, **summarize(per_pass)}


def load_for(path: str, precision: str):
    """A fresh predictor for one precision (int8 converts its model in place, so each precision loads its own)."""
    from lstmtext.api import load
    from lstmtext.tasks import get_task

    predictor = load(path)
    mod = get_task(predictor.task)
    if precision not in mod.PRECISIONS:
        raise UsageError(f"--precision {precision}: a {predictor.task} model runs in {', '.join(mod.PRECISIONS)}")
    if mod.SPEED_UNIT == "pieces":  # a fixed generation length, so passes over the same prompts compare
        predictor.generate_text = functools.partial(type(predictor).generate_text, predictor, max_tokens=LM_MAX_TOKENS)
    return predictor


def speed(path: str, data: str, precisions: list[str], threads: list[int], warmup: int, repeats: int) -> list[dict]:
    """One row per (precision, threads): units per second of predictor.predict. An ONNX export runs without
    torch; its threads are the batches it runs side by side (each on one thread, tasks/ner_onnx.py)."""
    from contextlib import nullcontext

    from lstmtext.api import inference_precision
    from lstmtext.export import is_exported
    from lstmtext.tasks import get_task

    texts = read_inputs(data)
    if is_exported(path):
        check_exported(path, precisions)
        torch, saved = None, None
    else:
        import torch

        saved = torch.get_num_threads()
    rows = []
    try:
        for precision in precisions:
            predictor = load_for(path, precision)
            unit = get_task(predictor.task).SPEED_UNIT
            exported = getattr(predictor, "exported", None)
            shown = precision if precision != "auto" else exported or default_precision(predictor.device)
            for n in threads:
                if torch is None:
                    predictor.model.threads = n
                else:
                    torch.set_num_threads(n)
                with inference_precision(predictor, precision), torch.inference_mode() if torch else nullcontext():
                    row = measure(predictor, texts, unit, warmup, repeats)
                rows.append({"precision": shown, "threads": n, "unit": unit, **row})
    finally:
        if torch is not None:
            torch.set_num_threads(saved)
    return rows


def check_exported(path: str, precisions: list[str]) -> None:
    """An ONNX export runs in the precision it was exported in: refuse any other before timing anything."""
    from lstmtext.api import read_meta
    from lstmtext.export import require_precision

    exported = read_meta(path)["export"]["precision"]
    for p in precisions:
        require_precision(exported, p)


def default_precision(device) -> str:
    """What --precision auto runs in on ``device`` (api.inference_precision): bf16 on CUDA, fp32 elsewhere."""
    return "bf16" if str(getattr(device, "type", device)) == "cuda" else "fp32"


def end_to_end(path: str, data: str, precision: str, threads: int, repeats: int) -> dict:
    """Seconds of the real ``lstmtext predict`` from process start to exit (start-up included), stdout discarded;
    the rate is input lines per second of the whole run."""
    import os

    lines = len(read_inputs(data))
    cmd = [sys.executable, "-m", "lstmtext", "predict", path, data, "--precision", precision]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        seconds.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise UsageError(f"--end-to-end: lstmtext predict failed: {proc.stderr.decode().strip()[-300:]}")
    row = {"precision": precision, "threads": threads, "unit": "lines", "end_to_end": True, "units": lines}
    return {**row, **summarize([lines / s for s in seconds]), "best_seconds": min(seconds)}


def machine(threads: list[int], path: str = "") -> dict:
    """The CPU, the runtime (torch, or onnxruntime for an ONNX export), the thread counts and Python."""
    from lstmtext.export import is_exported

    if is_exported(path):
        import onnxruntime as runtime
    else:
        import torch as runtime
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    name = runtime.__name__
    return {"cpu": cpu, name: runtime.__version__, "threads": threads, "python": platform.python_version()}
