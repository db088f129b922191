"""Shared by the peer scripts: a peer's own virtual environment, thread counts, a wall-clock budget, end-to-end
timing, and the rows (peer, lstmtext, ratio) they add to BENCHMARKS.md.

Peers install into their own venvs under the work directory (default ``$LSTMTEXT_HOME/peers``), never into
lstmtext's environment and never into the repository; their data is prepared there too.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple


def _bench_common():
    """benchmarks/common.py (REPO, SHARED, commit, record, training_cost) under its own name: this module is
    ``common`` too, for the scripts beside it."""
    path = Path(__file__).resolve().parent.parent / "common.py"
    spec = importlib.util.spec_from_file_location("bench_common", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


bench = _bench_common()

REPO = bench.REPO
# The exact torch the peers get: a fresh venv takes this CPU build from the local package index; any other
# version would pull a CUDA build the size of several gigabytes.
TORCH = "torch==2.13.0"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def default_work_dir() -> Path:
    home = Path(os.environ.get("LSTMTEXT_HOME", Path.home() / ".lstmtext"))
    return home / "peers"


def add_common_args(ap, budget: str) -> None:
    """The options every peer script takes."""
    ap.add_argument("--budget", default=budget, help=f"wall-clock training budget of each side (default {budget})")
    ap.add_argument("--threads", type=int, default=1, help="threads for both sides (OMP_NUM_THREADS etc.; default 1)")
    ap.add_argument("--data-dir", default=str(bench.SHARED), help="the shared data (default ../shared/data)")
    ap.add_argument("--work-dir", default=str(default_work_dir()), help="venvs, prepared data, models, outputs")
    ap.add_argument("--quick", action="store_true", help="smoke test: subsets of the data, no rows unless --record")
    ap.add_argument("--record", action="store_true", help="with --quick: still write the rows")
    ap.add_argument("--no-record", action="store_true", help="print results; do not touch BENCHMARKS.md")
    ap.add_argument("--only", choices=["both", "peer", "lstmtext"], default="both", help="which side to run")
    ap.add_argument(
        "--parallel",
        action="store_true",
        help="train both sides at the same time (each on --threads) instead of one after the other",
    )
    ap.add_argument("--note", default="", help="added to every row's label (e.g. 'machine shared with other jobs')")


def seconds(budget: str) -> float:
    """'90s', '10m', '1.5h' or a bare number of seconds."""
    m = re.fullmatch(r"\s*([\d.]+)\s*([smh]?)\s*", budget)
    if not m:
        raise SystemExit(f"bad budget {budget!r}: use e.g. 90s, 10m, 1h")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def thread_env(threads: int, extra: dict | None = None) -> dict:
    """The environment of a child process held to ``threads`` threads (torch, numpy BLAS, OpenMP)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # a peer's venv sees none of ours
    return {**env, **{v: str(threads) for v in THREAD_VARS}, "PYTHONUNBUFFERED": "1", **(extra or {})}


def lstmtext_env(threads: int) -> dict:
    return thread_env(threads, {"PYTHONPATH": str(REPO), "COLUMNS": "200"})


def venv(work: Path, name: str, packages: list[str], pip_args: tuple[str, ...] = ()) -> Path:
    """The python of the venv ``work/NAME``, created and filled with ``packages`` the first time; the installed
    versions go to ``NAME.freeze.txt`` beside it."""
    root = work / name
    py = root / "bin" / "python"
    stamp = root / ".installed"
    want = " ".join([*packages, *pip_args])
    if not (stamp.exists() and stamp.read_text() == want):
        if not py.exists():
            subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
        print(f"installing into {root}: {want}", file=sys.stderr, flush=True)
        log = work / f"{name}.pip.log"
        with open(log, "w", encoding="utf-8") as f:
            proc = subprocess.run([str(py), "-m", "pip", "install", *pip_args, *packages], stdout=f, stderr=f)
        if proc.returncode != 0:
            raise SystemExit(f"pip install into {root} failed: {want} (see {log})")
        stamp.write_text(want)
        freeze = subprocess.run([str(py), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
        (work / f"{name}.freeze.txt").write_text(freeze)
    return py


def version(py: Path, package: str) -> str:
    out = subprocess.run([str(py), "-m", "pip", "show", package], capture_output=True, text=True).stdout
    m = re.search(r"^Version: (\S+)", out, re.M)
    return m.group(1) if m else "?"


def start(cmd: list, env: dict, log: Path, cwd: Path | None = None) -> tuple[subprocess.Popen, float]:
    """Start ``cmd`` with stdout and stderr into ``log``, in its own process group (so a budget stops all of it)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    print("$ " + " ".join(map(str, cmd)), file=sys.stderr, flush=True)
    f = open(log, "w", encoding="utf-8")  # noqa: SIM115  (closed by the child's exit)
    proc = subprocess.Popen(
        [str(c) for c in cmd], env=env, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True
    )
    return proc, time.perf_counter()


def finish(proc: subprocess.Popen, t0: float, budget_s: float | None, stop=signal.SIGINT, grace: float = 600) -> dict:
    """Wait for a process started by :func:`start`; at ``budget_s`` after its start send ``stop`` (Ctrl-C, which
    the peers handle by keeping their best model), then wait up to ``grace`` seconds for it to wrap up (its
    test evaluation included) before killing it. Returns the wall seconds, whether the budget stopped it, and
    its exit status."""
    stopped = False
    try:
        proc.wait(timeout=None if budget_s is None else max(0.0, budget_s - (time.perf_counter() - t0)))
    except subprocess.TimeoutExpired:
        stopped = True
        stopped_at = time.perf_counter() - t0
        os.killpg(proc.pid, stop)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    wall = time.perf_counter() - t0
    return {
        "wall_s": round(wall, 1),
        "train_s": round(stopped_at if stopped else wall, 1),
        "stopped": stopped,
        "returncode": proc.returncode,
    }


def run(cmd: list, env: dict, log: Path, budget_s: float | None = None, cwd: Path | None = None, **kw) -> dict:
    proc, t0 = start(cmd, env, log, cwd)
    return finish(proc, t0, budget_s, **kw)


def run_sides(sides: list[tuple[str, list, dict, Path, float | None, dict]], parallel: bool) -> dict:
    """Run (name, cmd, env, log, budget, options: cwd and finish's) one after the other, or all at once with
    ``parallel``."""
    results = {}
    if parallel:
        started = []
        try:
            for name, cmd, env, log, budget, kw in sides:
                opts = dict(kw)
                started.append((name, *start(cmd, env, log, opts.pop("cwd", None)), budget, opts))
            for name, proc, t0, budget, opts in started:
                results[name] = finish(proc, t0, budget, **opts)
        finally:
            for _, proc, *_ in started:  # an error here must not leave a side training on its own
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
    else:
        for name, cmd, env, log, budget, kw in sides:
            results[name] = run(cmd, env, log, budget, **kw)
    for name, _, _, log, _, _ in sides:
        r = results[name]
        if r["returncode"] != 0 and not r["stopped"]:
            tail = Path(log).read_text(encoding="utf-8", errors="replace")[-3000:]
            raise SystemExit(f"{tail}\n{name} failed ({r['returncode']}); its log: {log}")
    return results


def end_to_end(
    cmd: list,
    env: dict,
    stdin: Path | None = None,
    repeats: int = 3,
    cwd: Path | None = None,
    output_file: Path | None = None,
) -> dict:
    """Seconds from process start to the last line it writes on stdout, best of ``repeats`` runs, as a user
    meets it (interpreter start, imports and model load included). A tool that writes its output to a file
    (``output_file``) writes it when it ends: then the time runs to its exit. Returns the runs and the last run's
    output."""
    import tempfile

    runs, out = [], ""
    for _ in range(repeats):
        fin = open(stdin, "rb") if stdin else subprocess.DEVNULL  # noqa: SIM115
        with tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [str(c) for c in cmd], env=env, cwd=cwd, stdin=fin, stdout=subprocess.PIPE, stderr=err
            )
            chunks, last = [], t0
            for line in proc.stdout:
                chunks.append(line)
                last = time.perf_counter()
            proc.wait()
            if output_file:
                last = time.perf_counter()
            if stdin:
                fin.close()
            if proc.returncode != 0:
                err.seek(0)
                sys.stderr.write(err.read().decode(errors="replace")[-3000:])
                raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}")
        runs.append(round(last - t0, 3))
        out = Path(output_file).read_text(encoding="utf-8") if output_file else b"".join(chunks).decode("utf-8")
    return {"best_s": min(runs), "runs": runs, "output": out}


def thread_counts(a) -> list[int]:
    """The thread counts to time at: --speed-threads, or --threads alone."""
    return [int(n) for n in (a.speed_threads or str(a.threads)).split(",")]


def time_sides(cmds: dict, check=None) -> tuple[dict, dict]:
    """Best of 3 end to end for each of ``cmds`` {(side, threads): (cmd, env, stdin, output_file)}, the keys
    alternated run by run so every side meets the same machine. ``check(key, output)`` vets each run's output.
    Returns, per side, {"best_s", "threads" (its fastest count), "runs" {threads: [s, ...]}}, and the output of
    each side's last run at its fastest count."""
    runs: dict = {k: [] for k in cmds}
    outputs: dict = {}
    for _ in range(3):
        for k, (cmd, env, stdin, output_file) in cmds.items():
            r = end_to_end(cmd, env, stdin=stdin, repeats=1, cwd=REPO, output_file=output_file)
            if check:
                check(k, r["output"])
            runs[k].append(r["best_s"])
            outputs[k] = r["output"]
    best, out = {}, {}
    for side in dict.fromkeys(k[0] for k in cmds):
        counts = [k[1] for k in cmds if k[0] == side]
        n = min(counts, key=lambda m: min(runs[(side, m)]))
        best[side] = {"best_s": min(runs[(side, n)]), "threads": n, "runs": {str(m): runs[(side, m)] for m in counts}}
        out[side] = outputs[(side, n)]
    return best, out


def speed_metric(a, what: str, best: dict, peer: str) -> str:
    """The speed rows' metric: what is timed, and with --speed-threads the count each side was fastest at."""
    if not a.speed_threads:
        return f"{what}, best of 3)"
    counts = f"{peer} {best['peer']['threads']}, lstmtext {best['lstmtext']['threads']}"
    return f"{what}, best of 3; best of threads {a.speed_threads}: {counts})"


class Row(NamedTuple):
    """One measure of a side-by-side run: record_side_by_side writes the peer's row, lstmtext's and the ratio."""

    key: str
    label: str
    dataset: str
    metric: str
    peer: float | None
    lstmtext: float | None
    peer_min: float | None = None
    lstmtext_min: float | None = None
    peer_tok_s: float | None = None
    lstmtext_tok_s: float | None = None
    higher_is_better: bool = True


def label(name: str, budget: str, issue_budget: str, threads: int, note: str) -> str:
    """A row's benchmark column: the name, the budget (flagged when it is not the issue's), threads (record()
    adds the CPU)."""
    parts = [
        f"{budget} budget" + ("" if seconds(budget) == seconds(issue_budget) else f", not the issue's {issue_budget}")
    ]
    parts.append(f"{threads} thread{'s' if threads != 1 else ''}")
    if note:
        parts.append(note)
    return f"{name} ({'; '.join(parts)})"


def record_side_by_side(a, rows: list[Row], extra: dict) -> None:
    """Writes the peer row, lstmtext's row and the ratio row (lstmtext over the peer) for each Row, or prints
    them with --no-record / --quick, with the script's own command line. ``key`` names the JSON files
    (benchmarks/out/peer-KEY.json, lstmtext-KEY.json, ratio-KEY.json); the table shows the full label."""
    command = f"python benchmarks/peers/{Path(sys.argv[0]).name} " + " ".join(sys.argv[1:])
    save = not a.no_record and (not a.quick or a.record)
    sha = bench.commit()  # the commit the runs used, before the rows make BENCHMARKS.md differ from it
    labels = {}
    for key, lab, dataset, metric, pv, lv, pmin, lmin, ptok, ltok, higher in rows:
        ratio = round(lv / pv, 3) if pv and lv is not None else None
        better = "higher is better" if higher else "lower is better"
        entries = [
            (f"peer-{key}", f"peer: {lab}", dataset, metric, pv, pmin, ptok),
            (f"lstmtext-{key}", f"lstmtext: {lab}", dataset, metric, lv, lmin, ltok),
            (
                f"ratio-{key}",
                f"lstmtext / peer: {lab}",
                dataset,
                f"{metric}: lstmtext / peer ({better})",
                ratio,
                None,
                None,
            ),
        ]
        for slug, name, ds, met, value, tmin, tok in entries:
            labels[slug] = name
            if save:
                commit, bench.commit = bench.commit, lambda: sha
                try:
                    bench.record(slug, ds, met, value, tmin, tok, command, {"label": name, **extra})
                finally:
                    bench.commit = commit
            else:
                row = {"benchmark": name, "dataset": ds, "metric": met, "value": value, "train_min": tmin}
                print(json.dumps({**row, "tokens_per_s": tok}))
    if save:
        text = bench.TABLE.read_text(encoding="utf-8")
        for slug, name in labels.items():
            text = text.replace(f" | {slug} | ", f" | {name} | ")
        bench.TABLE.write_text(text, encoding="utf-8")


def git_commit() -> str:
    return bench.commit()


def lstmtext_train_args(task: str, recipe: str, out: Path, budget: str, extra: list | None = None) -> list:
    """``python -m lstmtext train TASK --recipe RECIPE -o OUT --max-time BUDGET`` with lstmtext's python. A
    recipe name is passed as this checkout's recipes/NAME.toml: an lstmtext installed elsewhere in the same
    environment would otherwise answer the name with its own copy."""
    if "/" not in recipe and (REPO / "recipes" / f"{recipe}.toml").is_file():
        recipe = str(REPO / "recipes" / f"{recipe}.toml")
    return [
        sys.executable,
        "-m",
        "lstmtext",
        "train",
        task,
        "--recipe",
        recipe,
        "-o",
        out,
        "--max-time",
        budget,
        "--force",
        "-q",
        *(extra or []),
    ]


def lstmtext_json(*args, threads: int) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "lstmtext", *map(str, args)], capture_output=True, text=True, env=lstmtext_env(threads)
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"lstmtext {' '.join(map(str, args))} failed")
    return json.loads(proc.stdout)


def lstmtext_cost(ckpt: Path, threads: int) -> tuple[dict, float, int | None]:
    """(model card, training minutes, median tokens/s) of a checkpoint, as benchmarks/common.training_cost."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    return bench.training_cost(ckpt)
