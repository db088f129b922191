"""What a finished ``lstmtext tune`` run reports: the study's trials as rows and as a table, and the best trial
written as a recipe file (tune.py calls these at its end)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lstmtext.progress import fmt_seconds, note
from lstmtext.searchspace import recipe_toml
from lstmtext.sources import DATA_ENV


def trial_rows(study, mod) -> list[dict]:
    rows = []
    for t in study.trials:
        state = t.state.name.lower()
        if state == "pruned" and t.intermediate_values:
            state = f"pruned at {max(t.intermediate_values) * 10}%"
        if t.user_attrs.get("recipe_values"):
            state += " (recipe)"
        seconds = (t.datetime_complete - t.datetime_start).total_seconds() if t.datetime_complete else None
        rows.append(
            {
                "number": t.number,
                "state": state,
                mod.MAIN_METRIC: t.value,
                "params": t.params,
                "steps": t.user_attrs.get("steps"),
                "seconds": round(seconds, 1) if seconds is not None else None,
                "checkpoint": t.user_attrs.get("checkpoint"),
            }
        )
    return rows


def trials_table(rows: list[dict], metric: str) -> str:
    """The study's trials as fixed-width lines (a log file reads them as a terminal does)."""
    keys = list(dict.fromkeys(k for r in rows for k in r["params"]))
    names = ["trial", "state", f"dev_{metric}", *keys, "steps", "time"]
    table = []
    for r in rows:
        cells = [str(r["number"]), r["state"], _fmt(r[metric]), *(_fmt(r["params"].get(k)) for k in keys)]
        table.append([*cells, _fmt(r["steps"]), fmt_seconds(r["seconds"]) if r["seconds"] is not None else ""])
    widths = [max(len(n), *(len(row[i]) for row in table)) for i, n in enumerate(names)]
    lines = ["  ".join(n.rjust(w) for n, w in zip(names, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def write_best(study, mod, path: Path, best_path: Path, recipe) -> dict | None:
    """The best finished trial's recipe, as a recipe file headed by the commands and the score."""
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    if not done:
        note(f"no trial of {path} has finished yet, so there is no best recipe to write")
        return None
    best = study.best_trial
    data_dir = f" --data-dir {os.environ[DATA_ENV]}" if os.environ.get(DATA_ENV) else ""
    trained = best.user_attrs["recipe"]
    by = trained["data"].get("valid_by", "example")
    dev = f"--dev {trained['data']['dev']}" if trained["data"]["dev"] else "a seeded slice of train"
    if not trained["data"]["dev"] and by != "example":
        dev += f", by {by}"
    comments = [
        f"lstmtext train {mod.NAME} --recipe {best_path}{data_dir}",
        f"score: dev {mod.MAIN_METRIC} {best.value} ({dev}), trial {best.number} of {len(study.trials)} in {path}",
        f"found by: lstmtext tune {mod.NAME}{f' --recipe {recipe}' if recipe else ''} --study {path}{data_dir}",
        f"tuned: {', '.join(f'{k} = {v!r}' for k, v in best.params.items())}; train.max_time is the trial's "
        f"budget; its checkpoint: {best.user_attrs['checkpoint']}",
    ]
    best_path.parent.mkdir(parents=True, exist_ok=True)
    best_path.write_text(recipe_toml(trained, comments), encoding="utf-8")
    note(f"best: trial {best.number}, dev {mod.MAIN_METRIC} {best.value:.4f}; its recipe: {best_path}")
    return {"number": best.number, "value": best.value, "params": best.params, **best.user_attrs}
