"""The continuous cache (tasks/lm_stream.py) on WikiText-2: its size, θ and λ chosen on wiki.valid, then
wiki.test read once with the chosen setting, beside the same checkpoint without the cache.

    python benchmarks/bench_lm_cache.py benchmarks/out/wikitext2-forward-s1.ckpt [more LM checkpoints]
    python benchmarks/bench_lm_cache.py CKPT --dev-only   # the grid on wiki.valid alone; test is not read
    head -600 wiki.valid.tokens > probe.txt && python benchmarks/bench_lm_cache.py CKPT --dev probe.txt --dev-only

Each checkpoint reads wiki.valid once (lstmtext.tasks.lm_stream.search scores every setting from that one
pass); the setting with the lowest mean wiki.valid perplexity per word over the checkpoints given wins. Each
checkpoint's test perplexity is then measured as a user measures it, `lstmtext evaluate CKPT wikitext2:test`
with and without `--set lm.cache_size=… --set lm.cache_theta=… --set lm.cache_lambda=…`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, lstmtext, record, rel  # noqa: E402


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def dev_grid(ckpt: str, dev: str, sizes: list[int], thetas: list[float], lams: list[float]) -> tuple[list[dict], float]:
    """Every setting's perplexity per word on ``dev`` for one checkpoint, and the seconds the pass took."""
    import lstmtext as lt
    from lstmtext.api import inference_precision
    from lstmtext.data import resolve_source
    from lstmtext.tasks import get_task
    from lstmtext.tasks.lm_stream import search

    # the device and precision `lstmtext evaluate` picks by default, which then reads test with the choice
    p = lt.load(ckpt, device="auto")
    mod = get_task(p.task)
    feats = mod.featurize(mod.read(resolve_source(dev), p.recipe.options, "dev"), p.tok, [], p.recipe)
    t0 = time.perf_counter()
    with inference_precision(p, "auto"):
        rows = search(p.model, feats, p.device, p.batch_tokens, sizes, thetas, lams)
    return rows, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="LM checkpoints (the same recipe, other seeds)")
    ap.add_argument("--sizes", default="5000,10000", help="cache sizes to try (states per stream row)")
    ap.add_argument("--thetas", default="4,5,6", help="θ values to try")
    ap.add_argument("--lams", default="0.2,0.25,0.3", help="λ values to try")
    ap.add_argument("--dev-only", action="store_true", help="choose on wiki.valid and stop: test is not read")
    ap.add_argument("--dev", default="wikitext2:dev", help="the text to choose on (a part of it for a quick probe)")
    ap.add_argument("--name", default="lm-cache", help="benchmark name (rows, benchmarks/out/NAME.json)")
    ap.add_argument("--no-record", action="store_true", help="print results; do not touch BENCHMARKS.md")
    args = ap.parse_args()
    if args.dev != "wikitext2:dev" and not args.dev_only:
        ap.error("--dev other than wikitext2:dev chooses for a probe only: add --dev-only")
    sizes, thetas, lams = [int(s) for s in args.sizes.split(",")], floats(args.thetas), floats(args.lams)

    grids, seconds = {}, {}
    for ckpt in args.checkpoints:
        grids[ckpt], seconds[ckpt] = dev_grid(ckpt, args.dev, sizes, thetas, lams)
        print(f"{ckpt}: grid on {args.dev} in {seconds[ckpt]:.0f} s; best {grids[ckpt][0]}", file=sys.stderr)
    key = ("size", "theta", "lam")
    mean = {}
    for rows in grids.values():
        for r in rows:
            mean.setdefault(tuple(r[k] for k in key), []).append(r["ppl_word"])
    ranked = sorted(((statistics.mean(v), s) for s, v in mean.items() if s[0] > 0), key=lambda t: t[0])
    best_dev, (size, theta, lam) = ranked[0]
    plain_dev = statistics.mean(mean[(0, 0.0, 0.0)])
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{args.name}-grid.json").write_text(json.dumps({"grids": grids, "seconds": seconds}, indent=1) + "\n")
    print(f"chosen on {args.dev}: size {size}, θ {theta}, λ {lam}: {best_dev:.2f} against {plain_dev:.2f}")
    sets = [f"lm.cache_size={size}", f"lm.cache_theta={theta}", f"lm.cache_lambda={lam}"]
    results = [
        (
            f"{args.name}-dev",
            "wikitext2:dev (wiki.valid)" if args.dev == "wikitext2:dev" else args.dev,
            f"dev ppl/word with the cache (mean of {len(grids)}; {plain_dev:.2f} without)",
            round(best_dev, 2),
            {"size": size, "theta": theta, "lam": lam, "dev_without": round(plain_dev, 2)},
        )
    ]
    if not args.dev_only:
        for ckpt in args.checkpoints:
            flags = [a for s in sets for a in ("--set", s)]
            with_cache = json.loads(lstmtext("evaluate", ckpt, "wikitext2:test", "--format", "json", *flags)[0].stdout)
            plain = json.loads(lstmtext("evaluate", ckpt, "wikitext2:test", "--format", "json")[0].stdout)
            print(f"{ckpt}: test {with_cache['ppl_word']:.2f} with the cache, {plain['ppl_word']:.2f} without")
            results.append(
                (
                    f"{args.name}-{Path(ckpt).stem}",
                    "wikitext2:test",
                    f"test ppl/word with the cache ({plain['ppl_word']:.2f} without)",
                    round(with_cache["ppl_word"], 2),
                    {"checkpoint": rel(ckpt), "without": round(plain["ppl_word"], 2), "settings": sets},
                )
            )
    command = "python benchmarks/bench_lm_cache.py " + " ".join(
        [rel(c) for c in args.checkpoints]
        + [f"--sizes {args.sizes} --thetas {args.thetas} --lams {args.lams} --name {args.name}"]
        + (["--dev-only"] if args.dev_only else [])
        + ([f"--dev {args.dev}"] if args.dev != "wikitext2:dev" else [])
    )
    for name, ds, metric, value, extra in results:
        if args.no_record:
            print(json.dumps({"benchmark": name, "dataset": ds, "metric": metric, "value": value, **extra}))
        else:
            record(name, ds, metric, value, None, None, command, extra)


if __name__ == "__main__":
    main()
