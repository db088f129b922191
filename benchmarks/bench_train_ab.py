"""Training throughput of two checkouts side by side: the same `lstmtext train` command from each, alternated.

    git worktree add --detach /tmp/lstmtext-old COMMIT
    python benchmarks/bench_train_ab.py /tmp/lstmtext-old . --task lm --recipe wikitext2-forward --steps 400
    python benchmarks/bench_train_ab.py OLD NEW --task sentiment --recipe sst2 --set init.recipe= --steps 600

Each run is ``python -m lstmtext train TASK --recipe R --set train.max_steps=STEPS --set train.eval_every=STEPS/2`` with
PYTHONPATH set to one checkout's root, the sides alternated (old, new, old, new, ...) so that drift on a shared
machine falls on both alike. A side's rate is the training tokens/s the loop reports for its second half
(steps STEPS/2 + 1 … STEPS: the first steps' warm-up and the evaluations are left out), its figure the median
over --repeats runs. Each side keeps its own LSTMTEXT_HOME across its runs, so only its first run trains the
tokenizer. One row per side goes into BENCHMARKS.md with the ratio new/old beside it; the row's commit is this
script's checkout, each side's commit is in the row's JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import SHARED, commit, cpu, record


def run_once(root: Path, home: Path, work: Path, a) -> float:
    out = work / "ab.ckpt"
    cmd = [sys.executable, "-m", "lstmtext", "train", a.task, "--recipe", a.recipe, "-o", str(out), "--force", "-q"]
    cmd += ["--set", f"train.max_steps={a.steps}", "--set", f"train.eval_every={a.steps // 2}", "--seed", str(a.seed)]
    for item in a.set:
        cmd += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(root), "LSTMTEXT_HOME": str(home), "LSTMTEXT_DATA": str(SHARED)}
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"failed ({proc.returncode}) in {root}: {' '.join(cmd)}")
    rows = [json.loads(line) for line in out.with_suffix(".metrics.jsonl").read_text().splitlines()]
    return float(rows[-1]["tokens_per_s"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("old", type=Path, help="the checkout before the change (a repository root)")
    ap.add_argument("new", type=Path, help="the checkout after it")
    ap.add_argument("--task", required=True)
    ap.add_argument("--recipe", required=True, help="a bundled recipe's name or a TOML path")
    ap.add_argument("--steps", type=int, default=400, help="training steps per run (the rate is the second half's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override, both sides")
    ap.add_argument("--no-record", action="store_true", help="print only; do not touch BENCHMARKS.md")
    a = ap.parse_args()
    if a.steps < 4:
        raise SystemExit("--steps must be at least 4")
    sides = {"old": a.old.resolve(), "new": a.new.resolve()}
    rates: dict[str, list[float]] = {k: [] for k in sides}
    with tempfile.TemporaryDirectory(prefix="lstmtext-ab-") as tmp:
        for _ in range(a.repeats):
            for name, root in sides.items():
                work = Path(tmp) / name
                work.mkdir(exist_ok=True)
                rates[name].append(run_once(root, work / "home", work, a))
                print(f"{name} ({root}): {rates[name][-1]:,.0f} tokens/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratio = med["new"] / med["old"]
    print(f"old {med['old']:,.0f}, new {med['new']:,.0f} tokens/s (medians of {a.repeats}): new/old {ratio:.3f}")
    if a.no_record:
        return
    sets = "".join(f" --set {s}" for s in a.set)
    command = (
        f"python benchmarks/bench_train_ab.py OLD NEW --task {a.task} --recipe {a.recipe} --steps {a.steps}"
        f" --repeats {a.repeats}{sets}"
    )
    for name, root in sides.items():
        at = commit(root)
        record(
            f"train-speed-ab-{a.task}-{name}",
            f"{a.recipe} ({a.task}), steps {a.steps // 2 + 1}-{a.steps}",
            f"training tokens/s at {at}" + (f", new/old {ratio:.3f}" if name == "new" else ""),
            round(med[name]),
            None,
            round(med[name]),
            command,
            {"side_commit": at, "runs": [round(r) for r in rates[name]], "ratio": round(ratio, 4)},
        )
    print(f"CPU: {cpu()}")


if __name__ == "__main__":
    main()
