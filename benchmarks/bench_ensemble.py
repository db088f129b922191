"""Prediction ensembles (lstmtext ensemble) against their members: dev first, the test split once, and the cost.

    python benchmarks/bench_ensemble.py A.ckpt B.ckpt C.ckpt --dev conll2003:dev --name ner-ens3
                            # the members and their ensemble on dev; the test split is never read
    python benchmarks/bench_ensemble.py A.ckpt B.ckpt C.ckpt --dev conll2003:dev --name ner-ens3 --test conll2003:test
                            # once dev has chosen the ensemble: its test score, read once (the members' is not read)
    python benchmarks/bench_ensemble.py A.ckpt B.ckpt C.ckpt --name ner-ens3 --speed ../shared/data/conll2003/eng.testb
                            # words/s of one member and of the ensemble (lstmtext benchmark speed), alternated

Rows: NAME-members (the members' mean on dev, their spread beside it), NAME (the ensemble on dev), NAME-test, and
NAME-speed (ensemble / member words/s). The ensemble checkpoint is written to benchmarks/out/NAME.ckpt.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, lstmtext, record, rel  # noqa: E402

from lstmtext.tasks import get_task  # noqa: E402

PERCENT = {"f1", "accuracy"}  # reported ×100, as the recipes state them


def main_metric(ckpt: Path, data: str) -> tuple[str, float]:
    info = json.loads(lstmtext("info", rel(ckpt), "--format", "json")[0].stdout)
    key = get_task(info["task"]).MAIN_METRIC
    ev, _ = lstmtext("evaluate", rel(ckpt), data, "--data-dir", SHARED, "--format", "json")
    return key, round((100 if key in PERCENT else 1) * json.loads(ev.stdout)[key], 2)


def speed(ckpt: Path, data: str, repeats: int) -> float:
    proc, _ = lstmtext(
        "benchmark", "speed", rel(ckpt), data, "--threads", "2", "--repeats", str(repeats), "--format", "json"
    )
    return float(json.loads(proc.stdout)["rows"][0]["median"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("members", nargs="+", type=Path, help="two or more checkpoints of one recipe")
    ap.add_argument("--name", required=True, help="the rows' name")
    ap.add_argument("--dev", help="the dev split the members selected on (DATASET:SPLIT or a file)")
    ap.add_argument("--test", help="once dev has chosen the ensemble: the test split, scored once on the ensemble")
    ap.add_argument(
        "--speed", help="a file to time one member and the ensemble on (lstmtext benchmark speed, 2 threads)"
    )
    ap.add_argument("--repeats", type=int, default=5, help="timed passes per speed measurement")
    ap.add_argument("--no-record", action="store_true", help="print only; no BENCHMARKS.md row")
    a = ap.parse_args()
    members = " ".join(rel(m) for m in a.members)
    ens = OUT / f"{a.name}.ckpt"
    lstmtext("ensemble", *map(rel, a.members), "-o", rel(ens), "--force")
    command = f"python benchmarks/bench_ensemble.py {members} --name {a.name}"
    emit = (lambda *args, **kw: None) if a.no_record else record
    if a.dev:
        scores = [main_metric(m, a.dev) for m in a.members]
        key, each = scores[0][0], [s for _, s in scores]
        key, together = main_metric(ens, a.dev)
        mean = round(statistics.mean(each), 2)
        print(f"{a.name}: dev {key} members {each} (mean {mean}), ensemble {together} ({together - mean:+.2f})")
        cmd = f"{command} --dev {a.dev}"
        if not a.test:  # a --test run shows dev again; its rows are the --dev run's, which chose the ensemble
            emit(f"{a.name}-members", f"{a.dev} (each: {each})", f"{key}, members' mean", mean, None, None, cmd)
            emit(
                a.name, f"{a.dev} (members' mean {mean})", f"{key}, ensemble of {len(each)}", together, None, None, cmd
            )
    if a.test:
        key, value = main_metric(ens, a.test)
        print(f"{a.name}: test {key} {value} (the ensemble's, read once)")
        cmd = f"{command} --dev {a.dev} --test {a.test}"
        emit(f"{a.name}-test", a.test, f"{key}, ensemble of {len(a.members)}", value, None, None, cmd)
    if a.speed:
        rates: dict[str, list[float]] = {"member": [], "ensemble": []}
        for _ in range(2):  # alternated, so drift on a shared machine falls on both alike
            rates["member"].append(speed(a.members[0], a.speed, a.repeats))
            rates["ensemble"].append(speed(ens, a.speed, a.repeats))
        member, together = (statistics.median(v) for v in rates.values())
        ratio = round(together / member, 3)
        print(f"{a.name}: {a.speed} words/s one member {member:,.0f}, ensemble {together:,.0f} ({ratio}x)")
        cmd = f"{command} --speed {a.speed}"
        emit(
            f"{a.name}-speed",
            a.speed,
            f"words/s, ensemble / one member ({together:,.0f} / {member:,.0f})",
            ratio,
            None,
            round(together),
            cmd,
        )


if __name__ == "__main__":
    main()
