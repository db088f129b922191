"""A recipe's header command, run as written: stages built or reused, dev metric, test scored once.

    python benchmarks/bench_recipe.py conll2003                 # seed 1: what recipes/conll2003.toml's header says
    python benchmarks/bench_recipe.py conll2003 --seed 2 --seed 3   # more seeds; the stages are built once
    python benchmarks/bench_recipe.py sst2 --no-record          # print only

Each recipe's first line is the command (``lstmtext train TASK --recipe NAME --data-dir DIR -o OUT.ckpt``) and its
``then:`` line the evaluation (``lstmtext evaluate OUT.ckpt DATASET:SPLIT``). This script runs both, with DIR the
benchmark data directory ($LSTMTEXT_DATA, default ../shared/data) and ``--seed N`` added when asked, so a recipe's
stated score is checked by running the recipe, not a chain the benchmark scripts know. The row's value is the
test split's main metric; the dev metric the run selected its checkpoint on, each stage's training time and the
total of all stages (the recipe's cost, whether this command built a stage or reused it) go beside it.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, REPO, SHARED, cpu, lstmtext, record, rel, training_cost  # noqa: E402

from lstmtext.tasks import get_task  # noqa: E402

PERCENT = {"f1", "accuracy"}  # reported ×100, as the recipes state them


def header_commands(recipe: Path) -> tuple[str, str]:
    """(task, the evaluation's dataset) from the recipe's header lines, refusing a header that lost them."""
    text = recipe.read_text(encoding="utf-8")
    first = text.splitlines()[0]
    train = re.match(rf"# lstmtext train (\w+) --recipe {re.escape(recipe.stem)} --data-dir DIR -o \S+\.ckpt\b", first)
    then = re.search(r"then: lstmtext evaluate \S+\.ckpt (\S+:\S+)", text)
    if not train or not then:
        raise SystemExit(f"{recipe}: the header lacks 'lstmtext train TASK --recipe ...' or 'then: lstmtext evaluate'")
    return train.group(1), then.group(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="a shipped recipe's name (recipes/NAME.toml)")
    ap.add_argument(
        "--seed", type=int, action="append", help="train.seed; repeat for several runs (default: the recipe's)"
    )
    ap.add_argument("--no-record", action="store_true", help="print only; no BENCHMARKS.md row")
    a = ap.parse_args()
    recipe = REPO / "recipes" / f"{a.recipe}.toml"
    task, test = header_commands(recipe)
    key = get_task(task).MAIN_METRIC
    scale = 100 if key in PERCENT else 1
    OUT.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in a.seed or [None]:
        tag = f"recipe-{a.recipe}" + (f"-s{seed}" if seed is not None else "")
        ckpt = OUT / f"{tag}.ckpt"
        args = ["train", task, "--recipe", a.recipe, "--data-dir", SHARED, "-o", rel(ckpt), "--force"]
        args += ["--seed", str(seed)] if seed is not None else []
        command = "lstmtext " + " ".join(map(str, args))
        print(command, flush=True)
        t0 = time.perf_counter()
        # progress and each stage's note go to this script's stderr as they happen: a run lasts hours
        subprocess.run([sys.executable, "-m", "lstmtext", *map(str, args)], cwd=REPO, check=True)
        wall = time.perf_counter() - t0
        info, minutes, tok_s = training_cost(ckpt)
        lineage = info["provenance"].get("lineage") or []
        stages = [
            {"name": s["name"], "minutes": round(s["train_seconds"] / 60, 1), "metrics": s["metrics"]} for s in lineage
        ]
        total = round(minutes + sum(s["minutes"] for s in stages), 1)
        ev, _ = lstmtext("evaluate", rel(ckpt), test, "--data-dir", SHARED, "--format", "json")
        value = round(scale * json.loads(ev.stdout)[key], 2)
        dev = info["metrics"].get(key)
        dev = round(scale * dev, 2) if dev is not None else None
        print(
            f"{tag}: {test} {key} {value} (dev {dev}); {minutes} min here, {total} min with the stages "
            f"{[(s['name'], s['minutes']) for s in stages]}; this command took {wall / 60:.1f} min",
            flush=True,
        )
        runs.append(value)
        if not a.no_record:
            record(
                f"{tag} [{cpu()}]",
                f"{test} (dev: {dev})",
                key,
                value,
                total,
                tok_s,
                f"{command} && lstmtext evaluate {rel(ckpt)} {test} --data-dir {SHARED}",
                {
                    "dev": dev,
                    "selection": info["metrics"],
                    "stages": stages,
                    "final_minutes": minutes,
                    "command_minutes": round(wall / 60, 1),
                    "precision": info["provenance"].get("precision"),
                    "seed": info["provenance"]["seed"],
                },
            )
    if len(runs) > 1:
        print(
            f"{a.recipe}: {key} mean {statistics.mean(runs):.2f}, spread {min(runs)}-{max(runs)} over {len(runs)} seeds"
        )


if __name__ == "__main__":
    main()
