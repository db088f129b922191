"""Shared by the benchmark scripts: run a command, time it, and record a row in BENCHMARKS.md + a JSON file.

Every row carries the command that produced it and the commit it ran at, so a number can be reproduced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
OUT = REPO / "benchmarks" / "out"
TABLE = REPO / "BENCHMARKS.md"
HEADER = (
    "| date | benchmark | dataset | metric | value | train min | tokens/s | command | commit |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def lstmtext(*args: str, stdin=None, check: bool = True) -> tuple[subprocess.CompletedProcess, float]:
    """Run the real CLI (``python -m lstmtext``) and return (process, wall seconds)."""
    cmd = [sys.executable, "-m", "lstmtext", *map(str, args)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"})
    seconds = time.perf_counter() - t0
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return proc, seconds


def record(name: str, dataset: str, metric: str, value, train_min, tokens_per_s, command: str, extra: dict | None = None) -> None:
    """Append a row to BENCHMARKS.md and write benchmarks/out/NAME.json."""
    OUT.mkdir(parents=True, exist_ok=True)
    row = {
        "date": time.strftime("%Y-%m-%d"), "benchmark": name, "dataset": dataset, "metric": metric, "value": value,
        "train_min": train_min, "tokens_per_s": tokens_per_s, "command": command, "commit": commit(), **(extra or {}),
    }
    (OUT / f"{name}.json").write_text(json.dumps(row, indent=2) + "\n")
    if not TABLE.exists():
        TABLE.write_text("# Benchmarks\n\nRows are appended by the scripts in benchmarks/; each names the command that produced it.\n"
                         "Machine: 2-core CPU (AVX-512), torch 2.13 CPU, unless the row says otherwise.\n\n" + HEADER)
    fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
    with open(TABLE, "a", encoding="utf-8") as f:
        f.write(f"| {row['date']} | {name} | {dataset} | {metric} | {fmt(value)} | {fmt(train_min)} | "
                f"{fmt(tokens_per_s)} | `{command}` | {row['commit']} |\n")
    print(json.dumps(row))
