"""The one extension point: a task is a module of plain functions, named in ``TASKS``.

What a task module provides is the ``Task`` protocol of tasks/contract.py (tasks/sentiment.py is the reference
implementation). Modules are imported when first asked for, so ``lstmtext --help`` never pays for torch.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lstmtext.errors import UsageError

TASKS = {
    "sentiment": "lstmtext.tasks.sentiment",
    "translate": "lstmtext.tasks.translate",
    "lm": "lstmtext.tasks.lm",
    "ner": "lstmtext.tasks.ner",
}


def get_task(name: str) -> ModuleType:
    """The task module named ``name``, checked against the Task protocol: a missing member fails here, by name,
    rather than deep inside a run."""
    from lstmtext.tasks.contract import PREDICTOR_CLASS_MEMBERS, STREAMED_MEMBERS, TASK_MEMBERS, Streamed, Task

    if name not in TASKS:
        raise UsageError(f"unknown task '{name}' (valid: {', '.join(TASKS)})")
    module = importlib.import_module(TASKS[name])
    if not isinstance(module, Task):
        missing = [m for m in TASK_MEMBERS if not hasattr(module, m)]
        raise TypeError(
            f"task module {TASKS[name]} lacks {', '.join(missing)} (the Task protocol of lstmtext/tasks/contract.py)"
        )
    if any(hasattr(module, m) for m in STREAMED_MEMBERS) and not isinstance(module, Streamed):
        missing = [m for m in STREAMED_MEMBERS if not hasattr(module, m)]
        raise TypeError(f"task module {TASKS[name]} streams but lacks {', '.join(missing)} (the Streamed protocol)")
    missing = [m for m in PREDICTOR_CLASS_MEMBERS if not hasattr(module.Predictor, m)]
    if missing:
        raise TypeError(
            f"task module {TASKS[name]}: its Predictor lacks {', '.join(missing)} (the Predictor "
            "protocol of lstmtext/tasks/contract.py)"
        )
    return module
