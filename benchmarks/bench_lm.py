"""WikiText-2 language model: train with recipes/wikitext2.toml, test perplexity per word, generation speed at
batch 1, and (``--transfer``) SST-2 with 10 % of its training data, --init-from the LM vs from scratch.

    python benchmarks/bench_lm.py                      # the real run: 60 min of training, then test + speed
    python benchmarks/bench_lm.py --transfer           # … and the transfer experiment (2 × --transfer-time)
    python benchmarks/bench_lm.py --quick --max-time 1m --no-record   # a smoke test in under 3 minutes
    python benchmarks/bench_lm.py --add-imdb-text --name wt2-imdb-bilm   # WikiText-2 + IMDB reviews' text (for NER)
    python benchmarks/bench_lm.py --recipe wikitext2-forward --name wikitext2-forward   # the forward LM recipe

Targets (issue 5): test perplexity per word ≤ 130 with ≤ 60 min of training; ≥ 300 generated tokens/s at
batch 1; transfer ≥ 3 points of SST-2 dev accuracy over scratch at the same budget and seed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, lstmtext, record, training_cost  # noqa: E402

WT2 = SHARED / "wikitext2"
SST2 = SHARED / "sst2"
PROMPT = "The history of"


def head_lines(src: Path, dst: Path, n: int) -> Path:
    with open(src, encoding="utf-8") as f, open(dst, "w", encoding="utf-8") as out:
        for i, line in enumerate(f):
            if i >= n:
                break
            out.write(line)
    return dst


def wikitext_and_imdb(dst: Path, wikitext_times: int = 2) -> Path:
    """WikiText-2's training text (written twice: 4.2M words) then the IMDB training reviews' (labels unused,
    5.8M words), one review per line, its <br /> tags dropped and its words split as `lstmtext tag` splits them
    (punctuation apart, as in WikiText and CoNLL). WikiText-2 replaces every word seen fewer than three times
    with <unk>, so a BiLM on it alone never reads a rare name; the reviews are raw text full of them. Training
    shuffles chunks (unless lm.carry_state), so the order here does not matter; dev stays WikiText-2's, which the
    repeat keeps in view."""
    import gzip
    import re

    from lstmtext.tasks.ner import split_words

    with open(dst, "w", encoding="utf-8") as out:
        for _ in range(wikitext_times):
            with open(WT2 / "wiki.train.tokens", encoding="utf-8") as f:
                for line in f:
                    out.write(line)
        with gzip.open(SHARED / "imdb" / "train.jsonl.gz", "rt", encoding="utf-8") as f:
            for line in f:
                text = re.sub(r"<br\s*/?>", " ", json.loads(line)["text"])
                out.write(" ".join(w for w, _, _ in split_words(text)) + "\n")
    return dst


def sst2_subset(dst: Path, fraction: float, seed: int) -> Path:
    lines = (SST2 / "train.tsv").read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:]
    random.Random(seed).shuffle(rows)
    dst.write_text("\n".join([header] + rows[: max(2, int(len(rows) * fraction))]) + "\n", encoding="utf-8")
    return dst


def generation_speed(ckpt: Path, tokens: int, seed: int = 1) -> dict:
    """Pieces per second of `generate` at batch 1 (one prompt, one sample), prompt pass included."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from lstmtext.api import load

    p = load(ckpt, task="lm", command="generate")
    list(p.generate([PROMPT], max_tokens=5, seed=seed))  # warm-up
    done, seconds, sample = 0, 0.0, ""
    while done < tokens:
        t0 = time.perf_counter()
        text = "".join(
            t
            for _, _, t, _ in p.generate(
                [PROMPT], max_tokens=tokens - done, temperature=1.0, top_p=0.95, seed=seed + done
            )
        )
        seconds += time.perf_counter() - t0
        done += p.stats["pieces"]
        sample = sample or text
    return {"gen_tokens_per_s": round(done / seconds, 1), "gen_tokens": done, "sample": sample[:300]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-time", default="60m", help="training budget for the LM (default 60m)")
    ap.add_argument("--quick", action="store_true", help="smoke test: a few thousand lines of each split")
    ap.add_argument("--no-record", action="store_true", help="print results; do not touch BENCHMARKS.md")
    ap.add_argument("--checkpoint", help="skip training and measure this LM checkpoint")
    ap.add_argument("--transfer", action="store_true", help="also SST-2 10 %%: --init-from the LM vs scratch")
    ap.add_argument("--transfer-time", default="10m", help="training budget of each transfer run")
    ap.add_argument("--transfer-full", action="store_true", help="also full SST-2 with --init-from the LM")
    ap.add_argument(
        "--init-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override for the runs that start from the LM, e.g. train.encoder_lr_scale=0.3",
    )
    ap.add_argument(
        "--only",
        choices=["all", "speed", "transfer"],
        default="all",
        help="speed: generation speed only; transfer: the transfer runs only (with --checkpoint)",
    )
    ap.add_argument("--recipe", default="wikitext2", help="the LM's recipe (default wikitext2, the BiLM)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override for the LM run")
    ap.add_argument("--name", default="wikitext2", help="checkpoint name under benchmarks/out (default wikitext2)")
    ap.add_argument("--gen-tokens", type=int, default=600)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--add-imdb-text",
        action="store_true",
        help="train on WikiText-2's text and the IMDB training "
        "reviews' (benchmarks/out/wikitext2-imdb.train.txt, written here); dev and test stay WikiText-2's",
    )
    ap.add_argument(
        "--init-from",
        help="continue from this LM checkpoint (its tokenizer, encoder and head); its own "
        "training time is not counted in this run's row",
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_lm."))
    train, dev, test = WT2 / "wiki.train.tokens", WT2 / "wiki.valid.tokens", WT2 / "wiki.test.tokens"
    if args.quick:
        train = head_lines(train, work / "train.txt", 3000)
        dev = head_lines(dev, work / "dev.txt", 200)
        test = head_lines(test, work / "test.txt", 200)
        args.gen_tokens = min(args.gen_tokens, 100)
    if args.add_imdb_text:
        OUT.mkdir(parents=True, exist_ok=True)
        mixed = wikitext_and_imdb(OUT / "wikitext2-imdb.train.txt")
        train = head_lines(mixed, work / "train-mix.txt", 6000) if args.quick else mixed
    dataset = (
        "wikitext2" + (" + imdb train text" if args.add_imdb_text else "") + (" (quick subset)" if args.quick else "")
    )

    ckpt = Path(args.checkpoint) if args.checkpoint else (work if args.quick else OUT) / f"{args.name}.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    train_cmd = [
        "train",
        "lm",
        "--recipe",
        args.recipe,
        "--train",
        train,
        "--dev",
        dev,
        "-o",
        ckpt,
        "--max-time",
        args.max_time,
        "--seed",
        args.seed,
        "-q",
        "--force",
        *[f"--set={kv}" for kv in args.set],
    ]
    if args.init_from:
        train_cmd += ["--init-from", args.init_from]
    command = "python benchmarks/bench_lm.py " + " ".join(sys.argv[1:])
    if not args.checkpoint:
        lstmtext(*train_cmd)
    meta, train_min, tok_s = training_cost(ckpt)
    prov = meta.get("provenance", {})

    results = []
    if args.only == "all":
        proc, eval_s = lstmtext("evaluate", ckpt, test, "--format", "json")
        m = json.loads(proc.stdout)
        extra = {k: m[k] for k in ("ppl_word", "ppl_piece", "bpc", "ppl_piece_bwd", "words", "pieces") if k in m}
        extra.update(
            dev=prov and meta.get("metrics"),
            eval_seconds=round(eval_s, 1),
            encoder=meta["recipe"]["encoder"],
            vocab=meta["recipe"]["tokenizer"]["vocab_size"],
            init_from=prov.get("init_from"),
        )
        results.append(("lm", dataset, "test ppl/word", round(m["ppl_word"], 2), train_min, tok_s, extra))
    if args.only in ("all", "speed"):
        speed = generation_speed(ckpt, args.gen_tokens, args.seed)
        results.append(("lm-generate", dataset, "gen tokens/s (batch 1)", speed["gen_tokens_per_s"], None, None, speed))

    if args.transfer or args.only == "transfer":
        enc = meta["recipe"]["encoder"]
        same = [f"--set=encoder.{k}={enc[k]}" for k in ("cell", "embed_dim", "hidden_dim", "num_layers")]
        sub = sst2_subset(work / "sst2_10.tsv", 0.1, args.seed)
        scores = {}
        init_from = ["--init-from", ckpt, *[f"--set={kv}" for kv in args.init_set]]
        for name, init in (("scratch", []), ("init-from-lm", init_from)):
            out = work / f"sst2_{name}.ckpt"
            lstmtext(
                "train",
                "sentiment",
                "--recipe",
                "sst2",
                "--train",
                sub,
                "-o",
                out,
                "--max-time",
                args.transfer_time,
                "--seed",
                args.seed,
                "-q",
                *same,
                *init,
            )
            ev = json.loads(lstmtext("evaluate", out, SST2 / "dev.tsv", "--format", "json")[0].stdout)
            scores[name] = round(100 * ev["accuracy"], 2)
        gain = round(scores["init-from-lm"] - scores["scratch"], 2)
        results.append(
            (
                "lm-transfer-sst2-10pct",
                "sst2 (10 % train)",
                "dev acc gain (LM init − scratch)",
                gain,
                None,
                None,
                {**scores, "transfer_time": args.transfer_time, "init_set": args.init_set},
            )
        )
        if args.transfer_full:
            out = work / "sst2_full_lm.ckpt"
            lstmtext("train", "sentiment", "--recipe", "sst2", "-o", out, "--seed", args.seed, "-q", *same, *init_from)
            ev = json.loads(lstmtext("evaluate", out, SST2 / "dev.tsv", "--format", "json")[0].stdout)
            results.append(
                ("lm-transfer-sst2-full", "sst2", "dev acc (LM init)", round(100 * ev["accuracy"], 2), None, None, {})
            )

    for name, ds, metric, value, tmin, tps, extra in results:
        if args.no_record:
            print(
                json.dumps(
                    {
                        "benchmark": name,
                        "dataset": ds,
                        "metric": metric,
                        "value": value,
                        "train_min": tmin,
                        "tokens_per_s": tps,
                        **extra,
                    }
                )
            )
        else:
            record(name, ds, metric, value, tmin, tps, command, extra)
    print(f"work files in {work}", file=sys.stderr)


if __name__ == "__main__":
    main()
