"""What a run carries from step to step and across ``--resume``: ``LoopState`` is, with the model, optimizer,
weight average and RNG tensors, everything the resume file holds, so a resumed run takes exactly the steps the
uninterrupted run would have taken."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields


@dataclass
class Span:
    """Training since the last evaluation, for its metrics row."""

    loss: float = 0.0
    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0


@dataclass
class LoopState:
    step: int = 0  # completed optimisation steps
    epoch: int = 0  # the epoch the next step belongs to
    pos: int = 0  # the index of the next step's batch in that epoch
    lr: float = 0.0  # the learning rate of the last step
    best: float | None = None  # the best main metric so far
    bad_evals: int = 0  # evaluations since the best one (patience)
    best_metrics: dict | None = None
    ema_updates: int = 0
    elapsed: float = 0.0  # wall seconds of every command of the run so far
    spent: dict = field(default_factory=dict)  # those seconds by phase (read, tokenizer, training, ...)
    last_eval_seconds: float = 0.0  # how long the last evaluation took, reserved before a time limit
    last_eval_step: int = -1
    span: Span = field(default_factory=Span)
    rate: float = 0.0  # training tokens per second over the last span
    scaler: dict | None = None  # the GradScaler's scale and growth tracker (fp16 on CUDA)
    rng_python: list | None = None  # random.getstate()[1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> LoopState:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["span"] = Span(**values.get("span", {}))
        return cls(**values)


class Clock:
    """Wall time since the command started, on top of the earlier commands of a resumed run, and by phase."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.before = 0.0
        self.spent: dict[str, float] = {}

    def carry(self, state: LoopState) -> None:
        """Continue a resumed run's clock."""
        self.before = state.elapsed
        for k, v in state.spent.items():
            self.spent[k] = self.spent.get(k, 0.0) + v

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start

    def add(self, phase: str, seconds: float) -> None:
        self.spent[phase] = self.spent.get(phase, 0.0) + seconds

    @contextmanager
    def phase(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def breakdown(self) -> str:
        """'read 1.2 s, tokenizer 3.4 s, training 10.0 s, evaluation 2.1 s'."""
        return ", ".join(f"{k} {v:.1f} s" for k, v in self.spent.items())
