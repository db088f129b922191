"""Translation benchmarks on Multi30k de→en ($LSTMTEXT_DATA/multi30k, default ../shared/data): quality and end-to-end speed.

    python benchmarks/bench_translate.py                        # recipes/multi30k.toml: ≤ 60 min of training
    python benchmarks/bench_translate.py --only speed --checkpoint benchmarks/out/multi30k.ckpt
    python benchmarks/bench_translate.py --quick --no-record    # smoke run, ≤ 3 minutes

Quality: train on train (selection on val), then `lstmtext evaluate` on test_2016_flickr: sacreBLEU (cased,
detokenized, with its signature), chrF, lowercased BLEU. Speed: `lstmtext translate --beam 5` over
test_2016_flickr.de, timed end to end (start-up included), in sentences per second.
--quick trains on the first 3,000 pairs for 60 s and scores/times the first 200 test sentences (written to a
temporary folder, never into the repository).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, lstmtext, record, rel, run_options, training_cost  # noqa: E402

DATA = SHARED / "multi30k"
TEST = DATA / "test_2016_flickr"


def _subset(tmp: Path, quick: bool) -> tuple[list[str], Path]:
    """(extra train arguments, test prefix); in quick mode small slices written to tmp."""
    if not quick:
        return [], TEST
    for split, n in (("train", 3000), ("val", 200), ("test", 200)):
        src = {"train": DATA / "train", "val": DATA / "val", "test": TEST}[split]
        for lang in ("de", "en"):
            lines = Path(f"{src}.{lang}").read_text(encoding="utf-8").splitlines()[:n]
            (tmp / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["--train", str(tmp / "train"), "--dev", str(tmp / "val")], tmp / "test"


def train_and_score(a, ckpt: Path, extra: list[str], test: Path, save: bool) -> None:
    quick = a.quick
    args = ["train", "translate", "--recipe", "multi30k", "-o", rel(ckpt), "--force", "-q", *extra, *run_options(a)]
    if quick:  # a smaller model so that a minute of training gets somewhere
        args += ["--set", "translate.hidden_dim=256", "--set", "tokenizer.vocab_size=4000"]
    command = "lstmtext " + " ".join(map(str, args))
    _, wall = lstmtext(*args)
    info, minutes, tok_s = training_cost(ckpt)
    ev, eval_s = lstmtext("evaluate", ckpt, test, "--format", "json")
    m = json.loads(ev.stdout)
    print(
        f"multi30k de-en test_2016_flickr: BLEU {m['bleu']:.2f} chrF {m['chrf']:.2f} BLEU(lc) {m['bleu_lc']:.2f} "
        f"beam {m['beam']} after {minutes} min of training ({wall:.0f}s wall, evaluate {eval_s:.0f}s); "
        f"val (greedy) {info['metrics']}\n  {m['signature']}\n  {m['bleu_detail']}"
    )
    if save:
        extra_cols = {
            "signature": m["signature"],
            "chrf": round(m["chrf"], 2),
            "bleu_lc": round(m["bleu_lc"], 2),
            "val": info["metrics"],
            "steps": info["provenance"]["steps"],
            "epochs": info["provenance"]["epochs"],
        }
        record(
            a.name,
            "Multi30k test_2016_flickr (1,000)",
            "sacreBLEU",
            round(m["bleu"], 2),
            minutes,
            tok_s,
            f"{command} && lstmtext evaluate {rel(ckpt)} {TEST}",
            extra_cols,
        )
        record(
            f"{a.name}-lc",
            "Multi30k test_2016_flickr (1,000)",
            "BLEU lowercased",
            round(m["bleu_lc"], 2),
            minutes,
            tok_s,
            f"lstmtext evaluate {rel(ckpt)} {TEST}",
        )


def speed(ckpt: Path, test: Path, save: bool, repeats: int) -> None:
    src = Path(f"{test}.de")
    n = len(src.read_text(encoding="utf-8").splitlines())
    times = []
    for _ in range(repeats):
        proc, s = lstmtext("translate", "-m", ckpt, "--beam", "5", src)
        assert len(proc.stdout.split("\n")) == n + 1, "one output line per input line"
        times.append(s)
    t = statistics.median(times)
    print(
        f"lstmtext translate --beam 5 over {src.name} ({n} sentences): {t:.2f}s end to end (median of {repeats}) "
        f"= {n / t:.1f} sentences/s"
    )
    if save:
        record(
            "translate-speed-beam5",
            f"Multi30k {src.name} ({n} lines)",
            "sentences/s end to end",
            round(n / t, 1),
            None,
            None,
            f"lstmtext translate -m {rel(ckpt)} --beam 5 {src}",
            {"seconds": round(t, 2)},
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-time", help="override the recipe's training budget (e.g. 2m for a smoke run)")
    ap.add_argument("--quick", action="store_true", help="small slices and 60 s of training: a smoke test in ≤ 3 min")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override passed to train, e.g. translate.input_feeding=true",
    )
    ap.add_argument("--name", default="translate-multi30k-de-en", help="benchmark name in BENCHMARKS.md")
    ap.add_argument("--only", choices=["all", "train", "speed"], default="all")
    ap.add_argument("--checkpoint", type=Path, help="checkpoint to write (train) or to time (--only speed)")
    ap.add_argument("--repeats", type=int, default=3, help="timed translate runs (median reported)")
    ap.add_argument("--no-record", action="store_true", help="print only; no BENCHMARKS.md row (smoke runs)")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    ckpt = a.checkpoint or OUT / ("multi30k-quick.ckpt" if a.quick else "multi30k.ckpt")
    save = not a.no_record
    with tempfile.TemporaryDirectory(prefix="bench_translate.") as tmp:
        extra, test = _subset(Path(tmp), a.quick)
        if a.only in ("all", "train"):
            a.max_time = a.max_time or ("60s" if a.quick else None)
            train_and_score(a, ckpt, extra, test, save)
        if a.only in ("all", "speed"):
            speed(ckpt, test, save, 1 if a.quick else a.repeats)


if __name__ == "__main__":
    main()
