"""The fit loop, the same for every task: ``model(batch)`` returns (logits, loss). It stops at the end of the
last epoch, on early stopping, at the time limit, at ``train.max_steps`` and on Ctrl-C; every stop falls
between two steps, so the resume state it writes is that of the last completed step."""

from __future__ import annotations

import math
import signal
import threading
import time
from contextlib import contextmanager

import torch

from lstmtext.data import shuffled_epoch
from lstmtext.errors import TrainingStopped, UsageError
from lstmtext.progress import TrainProgress
from lstmtext.tasks.common import to_device
from lstmtext.tasks.contract import Streamed
from lstmtext.tokenstream import Windows
from lstmtext.training.distributed import all_flags, rank_batches
from lstmtext.training.state import LoopState

FINISHED = "finished"
MAX_STEPS = "max_steps"


class Interrupted(Exception):
    """Ctrl-C during training; the message names the resume state that continues the run."""


def lr_factor(progress: float, warmup: float, schedule: str) -> float:
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    if schedule == "constant":
        return 1.0
    rest = min(1.0, (progress - warmup) / max(1e-9, 1 - warmup))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * rest))
    return max(0.0, 1.0 - rest)


def clip_gradients(params: list, clip: float) -> None:
    """``clip_grad_norm_``, less its multiply when the norm is within ``clip``: torch scales every gradient by
    the clamped coefficient to avoid a device sync; on CPU, where reading the norm syncs nothing, the step
    skips that pass over every gradient (a dense embedding's included) whenever it would multiply by one. A
    row-sparse gradient (train.sparse_embeddings) counts by its rows, coalesced first so a row used twice is
    one sum, not two entries."""
    dense, sparse = [], []
    for p in params:
        if p.grad is not None and p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            sparse.append(p.grad)
        elif p.grad is not None:
            dense.append(p)
    total = torch.nn.utils.get_total_norm([p.grad for p in dense] + [g.values() for g in sparse])
    if total.device.type != "cpu" or not bool(total + 1e-6 <= clip):  # torch's coefficient below one, or NaN
        torch.nn.utils.clip_grads_with_norm_(dense, clip, total)
        if sparse:  # torch's coefficient, on the rows
            coef = torch.clamp(clip / (total + 1e-6), max=1.0)
            for g in sparse:
                g.values().mul_(coef)


def train_step(model, opt, batch: dict, autocast, scaler, clip: float) -> tuple[torch.Tensor, bool]:
    """One optimisation step; a non-finite loss skips the update and reports False."""
    with autocast():
        _, loss = model(batch)
    if not torch.isfinite(loss).item():
        return loss, False
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    else:
        loss.backward()
    if clip > 0:
        clip_gradients([p for g in opt.param_groups for p in g["params"]], clip)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return loss, True


class CtrlC:
    """The first Ctrl-C asks the loop to stop after the step under way; a second one stops at once (the last
    resume state written stays). Where SIGINT is ignored (a background job) or this is not the main thread,
    Ctrl-C keeps its usual meaning."""

    def __init__(self) -> None:
        self.requested = False

    def _handler(self, signum, frame) -> None:
        if self.requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True

    @contextmanager
    def armed(self):
        usual = (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        )
        if usual:
            signal.signal(signal.SIGINT, self._handler)
        try:
            yield self
        finally:
            if usual:
                signal.signal(signal.SIGINT, signal.default_int_handler)


def feature_lengths(feats) -> list[int]:
    # a corpus.Windows knows its lengths without reading a window from disk
    return feats.lengths if isinstance(feats, Windows) else [f["length"] for f in feats]


def epoch_batches(mod, feats, lengths, recipe, epoch: int, d) -> list[list[int]]:
    """This rank's batches of one epoch (lists of feature indices), in training order."""
    if isinstance(mod, Streamed):
        batches = mod.stream_batches(feats, recipe, epoch, d.world)
    else:
        batches = shuffled_epoch(lengths, recipe.train, epoch)
    return rank_batches(batches, d.rank, d.world) if d.world > 1 else batches


def first_batch(mod, feats, recipe, d, device) -> dict | None:
    """The batch a new run's first step trains on, collated on ``device`` (training/precision.py times it)."""
    batches = epoch_batches(mod, feats, feature_lengths(feats), recipe, 0, d)
    return to_device(mod.collate([feats[i] for i in batches[0]]), device) if len(batches) else None


class Loop:
    """Trains ``run`` (a training.build.Built) from ``state`` on the prepared features."""

    def __init__(self, mod, run, prepared, state: LoopState, evaluate, save_resume, d, clock, max_time):
        self.mod, self.run, self.feats, self.state = mod, run, prepared.train_feats, state
        self.evaluate, self.save_resume, self.d, self.clock, self.max_time = evaluate, save_resume, d, clock, max_time
        self.tc = run.recipe.train
        self.lengths = feature_lengths(self.feats)
        self._batches: tuple[int, list] = (0, self.epoch_batches(0))
        self.steps_per_epoch = len(self._batches[1])
        if self.steps_per_epoch == 0:
            raise UsageError(
                f"{prepared.train_source}: too few examples to make a batch on each of {d.world} processes"
            )
        self.total_steps = self.steps_per_epoch * self.tc.epochs
        # the dev set's pieces, to reserve time for an evaluation before one has been measured
        self.dev_tokens = sum(f["length"] for f in prepared.dev_feats)
        self.ctrl_c = CtrlC()
        self.window = [0.0, 0, 0, time.perf_counter()]  # progress bar: loss sum, steps, tokens, start
        self.shown = (float("nan"), 0.0)  # progress bar: mean loss and tokens/s of the last window

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        return epoch_batches(self.mod, self.feats, self.lengths, self.run.recipe, epoch, self.d)

    def reserve(self) -> float:
        """Seconds kept back from the time limit for the final evaluation."""
        st = self.state
        if st.last_eval_seconds:
            return st.last_eval_seconds
        # Before the first evaluation, its cost is guessed from the steps' own rate so far (their time alone, not
        # the planning before them): an evaluation reads a piece without a backward pass, so at least 1.5 times
        # as fast as a training step does
        span = st.span
        rate = st.rate or (span.tokens / span.seconds if span.steps >= 3 and span.seconds > 0 else 0.0)
        return self.dev_tokens / (1.5 * rate) if rate else 0.0

    def progress_fraction(self) -> float:
        """How far the run is, by steps or, under a time limit, by the time left for training: reading and
        tokenizer training count against the limit but do not move the learning rate schedule."""
        frac = self.state.step / self.total_steps
        if self.max_time:
            spent = self.clock.spent
            used = spent.get("training", 0.0) + spent.get("evaluation", 0.0)
            other = self.clock.elapsed() - used
            frac = max(frac, used / max(1e-9, self.max_time - other - self.reserve()))
        return frac

    def run_eval(self, progress) -> bool:
        """An evaluation and the resume state after it; True when patience has run out."""
        st = self.state
        before = self.clock.spent.get("evaluation", 0.0)
        with self.clock.phase("evaluation"):
            stop = self.evaluate(
                st, self.steps_per_epoch, self.clock.elapsed(), progress, min(1.0, self.progress_fraction())
            )
        st.last_eval_seconds = self.clock.spent["evaluation"] - before
        st.last_eval_step = st.step
        self.save_resume()
        return stop

    def batches_of(self, epoch: int) -> list[list[int]]:
        if self._batches[0] != epoch:
            self._batches = (epoch, self.epoch_batches(epoch))
        return self._batches[1]

    def fit(self, show_progress: bool) -> str:
        """Train until a stop; returns its reason (FINISHED, MAX_STEPS, "interrupted" or a sentence)."""
        st, tc = self.state, self.tc
        progress = TrainProgress(self.total_steps, enabled=show_progress)  # TrainProgress prints on rank 0 alone
        self.run.model.train()
        stop = None
        try:
            with self.ctrl_c.armed():
                while stop is None:
                    if st.epoch >= tc.epochs:
                        stop = FINISHED
                        break
                    epoch_end, timeout, interrupted = self.step(self.batches_of(st.epoch), progress)
                    due = st.step % tc.eval_every == 0 if tc.eval_every else epoch_end
                    if due and self.run_eval(progress):
                        stop = f"no improvement in {tc.patience} evaluations (early stopping)"
                    elif interrupted:
                        stop = "interrupted"
                    elif timeout:
                        stop = f"time limit {tc.max_time} reached"
                    elif tc.max_steps and self.total_steps > st.step >= tc.max_steps:
                        stop = MAX_STEPS
                if stop in (MAX_STEPS, "interrupted"):
                    self.save_resume()
                elif st.last_eval_step != st.step:
                    self.run_eval(progress)
        finally:
            progress.close()
        return stop

    def step(self, batches: list[list[int]], progress) -> tuple[bool, bool, bool]:
        """One step on the epoch's next batch; (end of the epoch, time is up, Ctrl-C), agreed by every rank."""
        st, run, tc, d = self.state, self.run, self.tc, self.d
        t0 = time.perf_counter()
        batch = to_device(self.mod.collate([self.feats[i] for i in batches[st.pos]]), run.device)
        frac = self.progress_fraction()
        lr = tc.lr * lr_factor(frac, tc.warmup, tc.schedule)
        for g in run.opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        loss, finite = train_step(run.model, run.opt, batch, run.autocast, run.scaler, tc.clip)
        if finite and run.average:
            run.average.update()
        shown_epoch = st.epoch
        st.step, st.pos, st.lr = st.step + 1, st.pos + 1, lr
        epoch_end = st.pos >= len(batches)
        if epoch_end:
            st.epoch, st.pos = st.epoch + 1, 0
        timeout = bool(self.max_time) and self.clock.elapsed() + self.reserve() >= self.max_time
        bad, timeout, interrupted = all_flags(
            [int(not finite), int(timeout), int(self.ctrl_c.requested)], d, run.device
        )
        if bad:
            kept = (
                f"the last good checkpoint {self.evaluate.out} is kept"
                if self.evaluate.out.exists()
                else "no checkpoint was written yet"
            )
            raise TrainingStopped(
                f"loss became NaN or infinite at step {st.step}; training stopped and {kept}; "
                f"try a lower learning rate (--set train.lr={tc.lr / 10:g}) or --set train.clip=1"
            )
        value, n_tokens, now = loss.item(), int(batch["lengths"].sum()) * d.world, time.perf_counter()
        span = st.span
        span.loss, span.steps, span.tokens, span.seconds = (
            span.loss + value,
            span.steps + 1,
            span.tokens + n_tokens,
            span.seconds + now - t0,
        )
        self.clock.add("training", now - t0)
        self.show(progress, frac, shown_epoch, value, n_tokens, now)
        return epoch_end, bool(timeout), bool(interrupted)

    def show(self, progress, frac: float, epoch: int, loss: float, n_tokens: int, now: float) -> None:
        st, w = self.state, self.window
        w[0], w[1], w[2] = w[0] + loss, w[1] + 1, w[2] + n_tokens
        if now - w[3] >= 2.0 or w[1] >= 50:
            self.shown = (w[0] / w[1], w[2] / (now - w[3]))
            self.window = [0.0, 0, 0, now]
        elapsed = self.clock.elapsed()
        if self.max_time and elapsed / self.max_time > st.step / self.total_steps:
            remaining = max(0.0, self.max_time - elapsed)
        else:
            remaining = self.clock.spent.get("training", 0.0) / max(st.step, 1) * (self.total_steps - st.step)
        loss_avg, rate = self.shown
        progress.update(
            st.step, frac, f"epoch {epoch + 1}/{self.tc.epochs} loss {loss_avg:.3f} {rate:,.0f} tok/s", remaining
        )
