"""A recipe's header command, run as written: stages built or reused, dev metric, test scored once.

    python benchmarks/bench_recipe.py conll2003                 # seed 1: what recipes/conll2003.toml's header says
    python benchmarks/bench_recipe.py conll2003 --seed 2 --seed 3   # more seeds; the stages are built once
    python benchmarks/bench_recipe.py conll2003 --seed 2 --seed 3 --parallel   # at once, one thread each
    python benchmarks/bench_recipe.py sst2 --set train.lr=0.001 --name sst2-lr1e-3 --seed 1 --dev-only
                                                                # a choice, compared on dev; test never read
    python benchmarks/bench_recipe.py sst2 --set train.lr=0.001 --name sst2-lr1e-3 --seed 1 --score-only
                                                                # once dev has chosen it: the test split, scored
                                                                # once on the checkpoints that dev run left
    (conll2003 trains on its dev split: its choices are compared on the held-out form,
    --set 'data.train=["conll2003:train"]' --set data.dev=conll2003:dev)
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
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, REPO, SHARED, lstmtext, record, rel, training_cost  # noqa: E402

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


def score(a, task: str, test: str, tag: str, ckpt: Path, command: str, wall: float) -> float:
    """The run's dev metric (what it selected on) and, unless --dev-only, the test split scored once; one row."""
    key = get_task(task).MAIN_METRIC
    scale = 100 if key in PERCENT else 1
    info, minutes, tok_s = training_cost(ckpt)
    lineage = info["provenance"].get("lineage") or []
    stages = [
        {"name": s["name"], "minutes": round(s["train_seconds"] / 60, 1), "metrics": s["metrics"]} for s in lineage
    ]
    total = round(minutes + sum(s["minutes"] for s in stages), 1)
    dev = info["metrics"].get(key)
    dev = round(scale * dev, 2) if dev is not None else None
    if a.dev_only:  # a choice is compared on dev: the test split is not read
        value, dataset, shown = dev, "dev (the run's selection split)", command
    else:
        ev, _ = lstmtext("evaluate", rel(ckpt), test, "--data-dir", SHARED, "--format", "json")
        value = round(scale * json.loads(ev.stdout)[key], 2)
        dataset, shown = (
            f"{test} (dev: {dev})" if dev is not None else f"{test} (no dev: the last checkpoint)",
            f"{command} && lstmtext evaluate {rel(ckpt)} {test} --data-dir {SHARED}",
        )
    print(
        f"{tag}: {dataset} {key} {value}; {minutes} min here, {total} min with the stages "
        f"{[(s['name'], s['minutes']) for s in stages]}; this command took {wall / 60:.1f} min",
        flush=True,
    )
    if not a.no_record:
        record(
            tag,
            dataset,
            key,
            value,
            total,
            tok_s,
            shown,
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
    return value


def earlier_wall(tag: str, ckpt: Path) -> float:
    """The wall seconds of the run that left ``ckpt``, from the JSON its row wrote."""
    if not ckpt.is_file():
        raise SystemExit(f"{tag}: --score-only needs {rel(ckpt)}, which the run with the same --name and --seed leaves")
    for f in OUT.glob(f"{tag} [[]*].json"):  # the row's name carries the CPU
        minutes = json.loads(f.read_text()).get("command_minutes")
        if minutes is not None:
            return 60 * minutes
    raise SystemExit(f"{tag}: no {OUT.name}/{tag} [CPU].json from the run that trained {rel(ckpt)}")


def has_dev(task: str, recipe: Path, sets: list[str]) -> bool:
    """Whether the recipe, with these --set values, selects on dev data (a dev split or a slice of train)."""
    from lstmtext.config import resolve_recipe

    data = resolve_recipe(task, recipe, sets).data
    return bool(data.dev) or data.valid_fraction > 0


def trained_as_asked(task: str, recipe: Path, tag: str, ckpt: Path, sets: list[str], seed: int | None) -> None:
    """Refuse to score a checkpoint under a command that would not train it: its stored recipe must be the recipe
    file with these --set values and this seed (the encoder's shape comes from the stage, as in training)."""
    from lstmtext.config import encoder_shape, resolve_recipe

    held = json.loads(lstmtext("info", rel(ckpt), "--format", "json")[0].stdout)["recipe"]
    overrides = [*sets, *([f"train.seed={seed}"] if seed is not None else [])]
    want = resolve_recipe(task, recipe, overrides, inherited={"encoder": encoder_shape(held)}).to_dict()
    differ = [
        f"{section}.{key} = {held.get(section, {}).get(key)!r}, not {value!r}"
        for section, values in want.items()
        if isinstance(values, dict) and section != "tune"  # tune's section is not part of a run
        for key, value in values.items()
        if held.get(section, {}).get(key) != value
    ]
    if differ:
        raise SystemExit(f"{tag}: {rel(ckpt)} was trained with {'; '.join(differ)}: give the --set and --seed it had")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="a shipped recipe's name (recipes/NAME.toml)")
    ap.add_argument(
        "--seed", type=int, action="append", help="train.seed; repeat for several runs (default: the recipe's)"
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a recipe override, for a choice compared on dev",
    )
    ap.add_argument("--name", help="the rows' name (default recipe-NAME; give one when --set changes the recipe)")
    ap.add_argument("--dev-only", action="store_true", help="record the dev metric and never read the test split")
    ap.add_argument(
        "--parallel",
        action="store_true",
        help="train the seeds at once, one thread each (OMP_NUM_THREADS=1); the stages must exist already",
    )
    ap.add_argument(
        "--score-only",
        action="store_true",
        help="train nothing: score the checkpoints an earlier run with the same --name, --seed and --set left in "
        "benchmarks/out (the test split of a choice dev has made, read once, without training it again)",
    )
    ap.add_argument("--no-record", action="store_true", help="print only; no BENCHMARKS.md row")
    a = ap.parse_args()
    if a.set and not a.name:
        ap.error("--set changes the recipe: give the rows a --name of their own")
    if a.score_only and (a.dev_only or a.parallel):
        ap.error("--score-only trains nothing and reads the test split: it takes neither --dev-only nor --parallel")
    recipe = REPO / "recipes" / f"{a.recipe}.toml"
    task, test = header_commands(recipe)
    if a.dev_only and not has_dev(task, recipe, a.set):
        ap.error(f"--dev-only: {a.recipe} with these --set values has no dev data (it trains on its dev split)")
    OUT.mkdir(parents=True, exist_ok=True)
    if a.parallel:
        os.environ["OMP_NUM_THREADS"] = "1"  # the runs inherit it, and record() writes it into each row's command
    jobs, walls = [], {}
    for seed in a.seed or [None]:
        tag = (a.name or f"recipe-{a.recipe}") + (f"-s{seed}" if seed is not None else "")
        ckpt = OUT / f"{tag}.ckpt"
        args = ["train", task, "--recipe", a.recipe, "--data-dir", SHARED, "-o", rel(ckpt), "--force"]
        args += ["--seed", str(seed)] if seed is not None else []
        for item in a.set:
            args += ["--set", item]
        command = "lstmtext " + " ".join(map(str, args))
        print(command, flush=True)
        if a.score_only:
            walls[tag] = earlier_wall(tag, ckpt)
            trained_as_asked(task, recipe, tag, ckpt, a.set, seed)
            jobs.append((tag, ckpt, command, None, 0.0))
            continue
        t0 = time.perf_counter()
        # progress and each stage's note go to this script's stderr as they happen: a run lasts hours
        proc = subprocess.Popen([sys.executable, "-m", "lstmtext", *map(str, args)], cwd=REPO)
        jobs.append((tag, ckpt, command, proc, t0))
        if not a.parallel:
            if proc.wait() != 0:
                raise SystemExit(f"{tag}: training failed ({proc.returncode})")
            walls[tag] = time.perf_counter() - t0
    while len(walls) < len(jobs):  # --parallel: each run's wall time as it ends, before any is scored
        for tag, _, _, proc, t0 in jobs:
            if tag not in walls and proc.poll() is not None:
                walls[tag] = time.perf_counter() - t0
        time.sleep(1)
    values = []
    for tag, ckpt, command, proc, _ in jobs:
        if proc is not None and proc.returncode != 0:
            raise SystemExit(f"{tag}: training failed ({proc.returncode})")
        values.append(score(a, task, test, tag, ckpt, command, walls[tag]))
    if len(values) > 1:
        print(
            f"{a.recipe}: mean {statistics.mean(values):.2f}, spread {min(values)}-{max(values)} over {len(values)} seeds"
        )


if __name__ == "__main__":
    main()
