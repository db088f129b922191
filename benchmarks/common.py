"""Shared by the benchmark scripts: run a command, time it, and record a row in BENCHMARKS.md + a JSON file.

Every row carries the command that produced it and the commit it ran at, so a number can be reproduced.
"""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The data directory the recipes' named datasets (conll2003:train) resolve in, as --data-dir sets it; the
# benchmarks default it to ../shared/data beside the repository. Child processes inherit it.
os.environ.setdefault("LSTMTEXT_DATA", str(REPO.parent / "shared" / "data"))
SHARED = Path(os.environ["LSTMTEXT_DATA"])
OUT = REPO / "benchmarks" / "out"
TABLE = REPO / "BENCHMARKS.md"
HEADER = (
    "| date | benchmark | dataset | metric | value | train min | tokens/s | command | commit |\n"
    "|---|---|---|---|---|---|---|---|---|\n"
)


def rel(p) -> str:
    """A path as a command in a row should show it: relative to the repository when inside it."""
    p = Path(p).resolve()
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def commit(root: Path | None = None) -> str:
    """The short commit of a checkout (default this one), ``+dirty`` when its code differs from it."""
    root = root or REPO
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        # BENCHMARKS.md is left out: the rows a run appends would mark every row after its first as dirty
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)BENCHMARKS.md"],
            cwd=root, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        return sha + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"


def lstmtext(*args: str, stdin=None, check: bool = True) -> tuple[subprocess.CompletedProcess, float]:
    """Run the real CLI (``python -m lstmtext``) and return (process, wall seconds)."""
    cmd = [sys.executable, "-m", "lstmtext", *map(str, args)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, input=stdin, capture_output=True, text=True, cwd=REPO, env={**os.environ, "COLUMNS": "200"}
    )
    seconds = time.perf_counter() - t0
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return proc, seconds


def run_options(a) -> list[str]:
    """The train arguments every benchmark script passes through: --max-time, --init-from, --set."""
    args: list[str] = []
    if getattr(a, "max_time", None):
        args += ["--max-time", a.max_time]
    if getattr(a, "init_from", None):
        args += ["--init-from", a.init_from]
    for item in getattr(a, "set", None) or []:
        args += ["--set", item]
    return args


def training_cost(ckpt: Path) -> tuple[dict, float, int | None]:
    """(model card, training minutes, median tokens/s over the metrics log) of a trained checkpoint."""
    info = json.loads(lstmtext("info", ckpt, "--format", "json")[0].stdout)
    log_file = Path(ckpt).with_name(Path(ckpt).stem + ".metrics.jsonl")
    log = [json.loads(l) for l in log_file.read_text().splitlines()] if log_file.exists() else []
    rates = [r["tokens_per_s"] for r in log if r.get("tokens_per_s")]
    minutes = round(info.get("provenance", {}).get("train_seconds", 0) / 60, 1)
    return info, minutes, (round(statistics.median(rates)) if rates else None)


def record(
    name: str, dataset: str, metric: str, value, train_min, tokens_per_s, command: str, extra: dict | None = None
) -> None:
    """Append a row to BENCHMARKS.md and write benchmarks/out/NAME.json. Every row names the CPU it ran on
    (``name [CPU]`` in the table, ``cpu`` in the JSON): figures from different machines are not comparable."""
    OUT.mkdir(parents=True, exist_ok=True)
    machine = cpu()
    if os.environ.get("OMP_NUM_THREADS"):
        command = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} {command}"
    row = {
        "date": time.strftime("%Y-%m-%d"),
        "benchmark": name,
        "cpu": machine,
        "dataset": dataset,
        "metric": metric,
        "value": value,
        "train_min": train_min,
        "tokens_per_s": tokens_per_s,
        "command": command,
        "commit": commit(),
        **(extra or {}),
    }
    (OUT / f"{name}.json").write_text(json.dumps(row, indent=2) + "\n")
    if not TABLE.exists():
        TABLE.write_text(
            "# Benchmarks\n\nRows are appended by the scripts in benchmarks/; each names the command that produced it.\n"
            "Machine: 2-core CPU (AVX-512), torch 2.13 CPU, unless the row says otherwise.\n\n" + HEADER
        )

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))

    with open(TABLE, "a", encoding="utf-8") as f:
        f.write(
            f"| {row['date']} | {name} [{machine}] | {dataset} | {metric} | {fmt(value)} | {fmt(train_min)} | "
            f"{fmt(tokens_per_s)} | `{command}` | {row['commit']} |\n"
        )
    print(json.dumps(row))


def cpu() -> str:
    """The CPU's model and whether it has native bf16 (AVX-512 BF16 / AMX), for every row."""
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = re.search(r"Model name:\s*(.+)", out)
    flags = re.search(r"Flags:\s*(.+)", out)
    have = [f for f in ("avx512_bf16", "amx_bf16") if flags and f in flags.group(1).split()]
    return f"{model.group(1).strip() if model else 'unknown CPU'}, {os.cpu_count()} cores" + (
        f", {'+'.join(have)}" if have else ", no native bf16"
    )
