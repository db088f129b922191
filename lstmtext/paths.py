"""Where lstmtext keeps things on disk: its home folder, the default model of each task, and the files that
travel beside a checkpoint. Torch-free, so every layer (CLI, inference, training) may import it."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    """``$LSTMTEXT_HOME``, else ``~/.lstmtext``."""
    return Path(os.environ.get("LSTMTEXT_HOME", Path.home() / ".lstmtext"))


def default_model_path(task: str) -> Path:
    """Where ``train TASK`` writes without ``-o`` and where tag/generate/translate/predict look without ``-m``."""
    return home() / "models" / f"{task}.ckpt"


def default_study_path(task: str, recipe: str | None = None) -> Path:
    """Where ``tune TASK [--recipe R]`` keeps its Optuna study without ``--study``: one study per task and recipe."""
    name = f"{task}-{Path(recipe).stem}" if recipe else task
    return home() / "tune" / f"{name}.db"


def companion(out: Path, kind: str) -> Path:
    """sst2.ckpt → sst2.resume.safetensors / sst2.metrics.jsonl, in the same folder."""
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.{kind}")
