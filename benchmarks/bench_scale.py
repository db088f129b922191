"""Corpora larger than memory: `lstmtext train lm` on 0.2 to 2 GB of text, with its peak memory, wall time,
tokenizing rate and cache-hit start-up; and the memory-mapped training path against the in-memory one of an
older checkout, side by side on WikiText-2.

    python benchmarks/bench_scale.py --work-dir /tmp/scale                      # everything
    python benchmarks/bench_scale.py --work-dir /tmp/scale --only sizes --sizes 0.2,2
    python benchmarks/bench_scale.py --work-dir /tmp/scale --only compare --base /path/to/old/checkout

The text is WikiText-2's and IMDB's training text (from the data directory), repeated with its lines shuffled
anew in each pass until the size is reached; it is written to --work-dir, never into the repository. Memory is
the resident set of the whole process tree (the trainer and its tokenizer processes), sampled every 0.2 s.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHARED, record  # noqa: E402


def base_lines() -> list[str]:
    wiki = (SHARED / "wikitext2" / "wiki.train.tokens").read_text(encoding="utf-8").splitlines()
    with gzip.open(SHARED / "imdb" / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        imdb = [json.loads(line)["text"].replace("\n", " ") for line in f]
    return wiki + imdb


def make_text(path: Path, size: int, seed: int = 1) -> Path:
    """``size`` bytes (to the line) of the base text, each pass over it in a fresh seeded order."""
    if path.exists() and path.stat().st_size >= size:
        return path
    lines = [line.encode() + b"\n" for line in base_lines()]
    rng = random.Random(seed)
    written = 0
    with open(path, "wb") as f:
        while written < size:
            rng.shuffle(lines)
            for line in lines:
                f.write(line)
                written += len(line)
                if written >= size:
                    break
    return path


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (from /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return total


def measured(cmd: list[str], env: dict, cwd=REPO) -> dict:
    """Run ``cmd``; its wall seconds, the peak RSS of its process tree and of its main process, and stderr."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = peak_main = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(proc.pid))
        peak_main = max(peak_main, _rss(proc.pid))
        time.sleep(0.2)
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(err[-3000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(map(str, cmd))}")
    return {"wall": wall, "peak_rss": peak, "peak_rss_main": peak_main, "stderr": err, "stdout": out}


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def breakdown(stderr: str) -> dict:
    """The phases of the summary line: 'finished after N steps in T (read 1.0 s, tokenizer 2.0 s, ...)'."""
    m = re.search(r"after (\d+) steps in [\d:]+ \(([^)]*)\)", stderr)
    if not m:
        return {}
    phases = dict((k.strip(), float(v)) for k, v in re.findall(r"([a-z ]+) ([\d.]+) s", m.group(2)))
    return {"steps": int(m.group(1)), **phases}


def stream_index(cache: Path) -> dict:
    found = sorted((cache / "streams").glob("*/index.json"), key=lambda p: p.stat().st_mtime)
    return json.loads(found[-1].read_text()) if found else {}


def train_cmd(text: Path, out: Path, max_time: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "lstmtext", "train", "lm", "--recipe", "wikitext2", "--train", str(text),
        "--dev", "wikitext2:dev", "--max-time", max_time, "-o", str(out), "--force", *extra,
    ]  # fmt: skip


def run_sizes(a, env: dict) -> None:
    for gb in [float(s) for s in a.sizes.split(",")]:
        text = make_text(Path(a.work_dir) / f"text-{gb}GB.txt", int(gb * 1e9))
        cache = Path(a.work_dir) / f"cache-{gb}GB"
        subprocess.run(["rm", "-rf", str(cache)], check=True)
        max_time = a.max_time if gb >= 2 else a.small_max_time
        out = Path(a.work_dir) / f"lm-{gb}GB.ckpt"
        cmd = train_cmd(text, out, max_time, "--cache-dir", str(cache))
        r = measured(cmd, env)
        idx, phases = stream_index(cache), breakdown(r["stderr"])
        mbs = idx["bytes"] / 1e6 / max(idx["seconds"], 1e-9)
        shown = " ".join(cmd[2:]).replace(sys.executable, "python")
        extra = {"wall_s": round(r["wall"], 1), "max_time": max_time, "phases": phases, "index": idx}
        extra |= {"peak_rss_tree": r["peak_rss"], "peak_rss_main": r["peak_rss_main"]}
        name = f"scale-lm-{gb}GB"
        dataset = f"{text.stat().st_size / 1e9:.2f} GB WikiText-2+IMDB text"
        record(name, dataset, "peak RSS, process tree (GB)", round(r["peak_rss"] / 1e9, 3), None, None, shown, extra)
        record(name, dataset, f"wall s at --max-time {max_time}", round(r["wall"], 1), None, None, shown, extra)
        record(name, dataset, "tokenizing MB/s", round(mbs, 1), None, None, shown, extra)
        if gb >= 2:  # the second run: a cache hit, timed to its first step
            hit = measured(
                train_cmd(text, Path(a.work_dir) / "hit.ckpt", "10m", "--cache-dir", str(cache), "--set",
                          "train.max_steps=1"), env)  # fmt: skip
            ph = breakdown(hit["stderr"])
            start = hit["wall"] - ph.get("training", 0.0)
            extra = {"phases": ph, "wall_s": round(hit["wall"], 1), "peak_rss_tree": hit["peak_rss"]}
            record(name, dataset, "cache-hit start-up s (wall less the one step)", round(start, 1), None, None,
                   shown + " --set train.max_steps=1", extra)  # fmt: skip


def run_compare(a, env: dict) -> None:
    """The same run (seed, steps) by the old in-memory code (--base) and this checkout, alternated: pieces/s of
    training and the WikiText-2 test perplexity of the result."""
    rates, ppl = {"base": [], "new": []}, {}
    steps = str(a.compare_steps)
    for rep in range(a.repeats):
        for who, root in (("base", Path(a.base)), ("new", REPO)):
            out = Path(a.work_dir) / f"cmp-{who}-{rep}.ckpt"
            cmd = [
                sys.executable, "-m", "lstmtext", "train", "lm", "--recipe", "wikitext2", "--seed", "1", "-o",
                str(out), "--force", "-q", "--set", f"train.max_steps={steps}", "--set", f"train.eval_every={steps}",
                "--set", 'train.max_time=""',  # no time limit: its planning moves the learning rate, steps do not
            ]  # fmt: skip
            cache = str(Path(a.work_dir) / "cache-cmp")  # the old code has no --cache-dir and ignores this
            r = measured(cmd, {**env, "PYTHONPATH": str(root), "LSTMTEXT_CACHE": cache}, cwd=root)
            log = [json.loads(line) for line in out.with_name(out.stem + ".metrics.jsonl").read_text().splitlines()]
            rates[who].append(log[-1]["tokens_per_s"])
            if rep == 0:
                ev = subprocess.run(
                    [sys.executable, "-m", "lstmtext", "evaluate", str(out), "wikitext2:test", "--format", "json"],
                    cwd=root, env={**env, "PYTHONPATH": str(root)}, capture_output=True, text=True, check=True,
                )  # fmt: skip
                ppl[who] = json.loads(ev.stdout)["ppl_word"]
            print(who, rep, rates[who][-1], round(r["wall"], 1), flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    shown = f"python benchmarks/bench_scale.py --only compare --base BASE --compare-steps {steps} --repeats {a.repeats}"
    extra = {"rates": rates, "ppl_word": ppl, "base": a.base}
    name = "scale-mmap-vs-memory"
    record(name, f"WikiText-2 train, {steps} steps", "pieces/s ratio memmap/in-memory (medians)",
           round(med["new"] / med["base"], 3), None, round(med["new"]), shown, extra)  # fmt: skip
    record(name, "WikiText-2 test", f"ppl/word at {steps} steps: memmap (in-memory {ppl['base']:.4f})",
           round(ppl["new"], 4), None, None, shown, extra)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-dir", required=True, help="Where the text, caches and checkpoints go (not the repo).")
    ap.add_argument("--only", choices=["sizes", "compare"], help="Run one part.")
    ap.add_argument("--sizes", default="0.2,0.5,1,2", help="GB of text, comma-separated.")
    ap.add_argument("--max-time", default="10m", help="--max-time of the 2 GB run.")
    ap.add_argument("--small-max-time", default="3m", help="--max-time of the smaller runs (memory only).")
    ap.add_argument("--base", help="A checkout of the in-memory code, for --only compare.")
    ap.add_argument("--compare-steps", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    Path(a.work_dir).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "COLUMNS": "200"}
    if a.only in (None, "sizes"):
        run_sizes(a, env)
    if a.only in (None, "compare"):
        if not a.base:
            raise SystemExit("--base: a checkout of the in-memory code is needed for the comparison")
        run_compare(a, env)


if __name__ == "__main__":
    main()
