"""``lstmtext tune`` run as a user runs it, and what its search found against the recipe's own values.

    python benchmarks/bench_tune.py sst2 --max-time 2h      # issue 23: the study, then one row
    python benchmarks/bench_tune.py sst2 --max-time 2h --no-record

The study's first trial runs the recipe's own values under the same trial budget as every other trial, so the
row compares like with like on the dev the trials are scored on (a seeded slice of train for sst2; never a test
split): the value is the best trial's dev metric, and the recipe's own trial, the trials finished and pruned, the
best trial's values and the wall time of the command go beside it. The study and the best recipe stay in
benchmarks/out/ (tune-NAME.db, tune-NAME.best.toml) for `lstmtext train --recipe` to train in full.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_recipe import PERCENT, header_commands  # noqa: E402
from common import OUT, REPO, SHARED, record, rel  # noqa: E402

from lstmtext.tasks import get_task  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recipe", help="a shipped recipe's name (recipes/NAME.toml) with a [tune] section")
    ap.add_argument("--max-time", default="2h", help="the study's wall time, as lstmtext tune takes it")
    ap.add_argument("--trials", type=int, help="trials to run (default: the recipe's tune.trials)")
    ap.add_argument("--no-record", action="store_true", help="print only; no BENCHMARKS.md row")
    a = ap.parse_args()
    import optuna

    task, _ = header_commands(REPO / "recipes" / f"{a.recipe}.toml")
    key = get_task(task).MAIN_METRIC
    scale = 100 if key in PERCENT else 1
    OUT.mkdir(parents=True, exist_ok=True)
    db, best = OUT / f"tune-{a.recipe}.db", OUT / f"tune-{a.recipe}.best.toml"
    if db.exists():
        raise SystemExit(f"{rel(db)} exists: move it away, so that the row is one study's, from its first trial")
    args = ["tune", task, "--recipe", a.recipe, "--data-dir", SHARED, "--max-time", a.max_time]
    args += ["--study", rel(db), "--best-out", rel(best)] + (["--trials", str(a.trials)] if a.trials else [])
    command = "lstmtext " + " ".join(map(str, args))
    print(command, flush=True)
    t0 = time.perf_counter()
    # the trials' progress goes to this script's stderr as it happens: a study lasts hours
    subprocess.run([sys.executable, "-m", "lstmtext", *map(str, args)], cwd=REPO, check=True)
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name="lstmtext", storage=f"sqlite:///{db}")
    trials = study.trials
    if not any(t.state.name == "COMPLETE" for t in trials):
        raise SystemExit("no trial finished: no row")
    top = study.best_trial  # the study knows its direction
    own = next((t for t in trials if t.user_attrs.get("recipe_values")), None)
    own_value = round(scale * own.value, 2) if own is not None and own.value is not None else None
    states = [t.state.name.lower() for t in trials]
    summary = (
        f"tune-{a.recipe}: best dev {key} {scale * top.value:.2f} (trial {top.number}), the recipe's own values "
        f"{own_value} (trial {own.number if own else None}, {own.state.name.lower() if own else 'not run'}); "
        f"{states.count('complete')} finished, {states.count('pruned')} pruned, {len(trials)} trials in "
        f"{wall / 60:.1f} min"
    )
    print(summary, flush=True)
    if not a.no_record:
        record(
            f"tune-{a.recipe}",
            f"dev: the trials' selection split (the recipe's own values: {own_value})",
            key,
            round(scale * top.value, 2),
            round(wall / 60, 1),
            None,
            command,
            {
                "best_trial": top.number,
                "best_params": top.params,
                "recipe_values_trial": own.number if own else None,
                "recipe_values_dev": own_value,
                "trials": [
                    {"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params}
                    for t in trials
                ],
                "best_recipe": rel(best),
            },
        )


if __name__ == "__main__":
    main()
