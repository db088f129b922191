"""Evaluation during training: score the dev set, keep the best checkpoint, log a metrics row and print the
eval line."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

from lstmtext import __version__
from lstmtext import checkpoint as ckpt
from lstmtext.training.state import LoopState, Span

# on_eval(step, metrics, fraction): after each evaluation on the dev split (see training.train)
OnEval = Callable[[int, dict, float], None]


def better(a: float | None, b: float | None, higher: bool) -> bool:
    if b is None:
        return True
    if a is None:
        return False
    return a > b if higher else a < b


class Evaluator:
    """Evaluates ``run`` (a training.build.Built) on the prepared dev features; rank 0 writes ``out``, its
    metrics log, and prints through ``progress``."""

    def __init__(
        self, mod, run, prepared, out: Path, log_file: Path, context: dict, main: bool, on_eval: OnEval | None = None
    ):
        self.mod, self.run, self.prepared = mod, run, prepared
        self.out, self.log_file, self.context, self.main = out, log_file, context, main
        self.on_eval = on_eval
        self.printed_header = False

    def __call__(self, state: LoopState, steps_per_epoch: int, elapsed: float, progress, fraction: float = 0.0) -> bool:
        """Evaluate, keep the checkpoint if it is the best so far; True when patience has run out. ``fraction``
        (of the run done) goes to ``on_eval``."""
        mod, run, dev_feats = self.mod, self.run, self.prepared.dev_feats
        tc = run.recipe.train
        span, state.span = state.span, Span()
        train_loss = span.loss / span.steps if span.steps else float("nan")
        tok_per_s = span.tokens / span.seconds if span.seconds else 0.0
        if span.steps:
            state.rate = tok_per_s
        with run.average.applied() if run.average else nullcontext():
            if dev_feats:
                metrics = mod.evaluate(
                    run.raw_model, dev_feats, run.labels, run.device, tc.batch_tokens * 2, run.tok, selection=True
                )
                run.raw_model.train()
                value = metrics.get(mod.MAIN_METRIC)
            else:
                metrics, value = {}, None
            improved = not dev_feats or better(value, state.best, mod.HIGHER_IS_BETTER)
            scalars = mod.summary(metrics) if dev_feats else {}
            if improved:
                state.best, state.bad_evals = value, 0
                state.best_metrics = scalars if dev_feats else None
                self.save_best(state, steps_per_epoch, elapsed)
            else:
                state.bad_evals += 1
        row = {
            "step": state.step,
            "epoch": round(state.step / steps_per_epoch, 3),
            "time": round(elapsed, 1),
            "lr": state.lr,
            "train_loss": train_loss,
            "tokens_per_s": round(tok_per_s),
            "best": improved,
            **{f"dev_{k}": v for k, v in scalars.items()},
        }
        if self.main:
            with open(self.log_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            progress.print(eval_line(row, header=not self.printed_header))
            self.printed_header = True
        if self.on_eval is not None and dev_feats:  # on every rank: a stop it raises must happen on all of them
            self.on_eval(state.step, scalars, fraction)
        return tc.patience > 0 and state.bad_evals >= tc.patience

    def save_best(self, state: LoopState, steps_per_epoch: int, elapsed: float) -> None:
        if not self.main:
            return
        run, tc = self.run, self.run.recipe.train
        meta = {
            "task": run.recipe.task,
            "recipe": run.recipe.to_dict(),
            "labels": run.labels,
            "metrics": state.best_metrics or {},
            "provenance": {
                "data": self.prepared.provenance,
                "steps": state.step,
                "epochs": round(state.step / steps_per_epoch, 3),
                "train_seconds": round(elapsed, 1),
                "seed": tc.seed,
                "init_seed": tc.init_seed or tc.seed,
                **self.context,
                "device": run.device.type,
                "precision": run.precision,
                "lstmtext": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        }
        ckpt.save(self.out, run.raw_model.state_dict(), meta, run.tok.model_proto)


def eval_line(row: dict, header: bool) -> str:
    """One fixed-width row per evaluation (the header before the first), readable in a log file too."""
    cols = ["step", "epoch", "train_loss"] + [k for k in row if k.startswith("dev_")] + ["tokens_per_s", "best"]
    cells, names = [], []
    for c in cols:
        v = row.get(c)
        if isinstance(v, bool):
            text = "*" if v else ""
        elif isinstance(v, float):
            text = f"{v:.4f}" if abs(v) < 1e4 else f"{v:,.1f}"
        else:
            text = f"{v:,}" if isinstance(v, int) else str(v)
        width = max(len(c), len(text), 6)
        names.append(c.rjust(width))
        cells.append(text.rjust(width))
    line = "  ".join(cells)
    return ("  ".join(names) + "\n" + line) if header else line
