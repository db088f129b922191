"""LM training throughput by encoder shape and vocabulary, side by side in one run: what recipes/wikitext2.toml
chose its shape from. Each row times full training steps (BiLM forward + backward + AdamW) of the real model
that ``lstmtext train lm`` builds, on random ids, so only the arithmetic differs between rows.

    python benchmarks/speed_lm_shapes.py                       # the default table, 2 threads
    python benchmarks/speed_lm_shapes.py --threads 1 --shapes 256x512x4000
    python benchmarks/speed_lm_shapes.py --shapes 256x512x4000 --batch-tokens 2048 --chunk 128 --directions both,forward
    python benchmarks/speed_lm_shapes.py --shapes 256x512x4000 --batch-tokens 2048 --chunk 128 \
        --precisions fp32,bf16 --repeats 3 --record          # does bf16 pay on this CPU? (alternated, medians)

    python benchmarks/speed_lm_shapes.py --shapes 256x512x4000 --batch-tokens 2048 --chunk 128 \
        --precisions fp32,bf16 --repeats 3 --fastest --record   # and does train.precision "fastest" pick the faster?

Prints one JSON object per shape; --record also writes a BENCHMARKS.md row per shape and precision, with the CPU.
--fastest adds what train.precision "fastest" (lstmtext/training/precision.py) sees on the same model and batch:
its fp32/bf16 time ratio beside the training steps' bf16/fp32 rate ratio, and its pick.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import record  # noqa: E402


def model_and_batch(embed: int, hidden: int, vocab: int, batch_tokens: int, chunk: int, bidirectional: bool):
    import torch

    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import lm

    recipe = resolve_recipe(
        "lm",
        "recipes/wikitext2.toml",
        [
            f"encoder.embed_dim={embed}",
            f"encoder.hidden_dim={hidden}",
            f"lm.bidirectional={str(bidirectional).lower()}",
        ],
    )
    B = max(1, batch_tokens // chunk)
    return lm.build_model(recipe, vocab, []), {
        "tokens": torch.randint(5, vocab, (B, chunk)),
        "lengths": torch.full((B,), chunk),
    }


def measure(
    embed: int,
    hidden: int,
    vocab: int,
    batch_tokens: int,
    chunk: int,
    steps: int,
    bidirectional: bool = True,
    precision: str = "fp32",
) -> float:
    import torch

    from lstmtext.device import autocast_for

    model, batch = model_and_batch(embed, hidden, vocab, batch_tokens, chunk, bidirectional)
    B = batch["tokens"].shape[0]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    autocast = autocast_for(torch.device("cpu"), precision)[0]  # as training wraps each step
    for i in range(steps + 3):
        if i == 3:  # the first steps allocate and pick kernels
            t0 = time.perf_counter()
        with autocast():
            _, loss = model(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return B * chunk * steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--shapes",
        default="512x512x8000,256x512x8000,512x512x4000,256x512x4000",
        help="comma-separated EMBEDxHIDDENxVOCAB",
    )
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--directions", default="both", help="both, forward (lm.bidirectional=false), or both,forward")
    ap.add_argument("--precisions", default="fp32", help="train.precision values, alternated: fp32 or fp32,bf16")
    ap.add_argument("--repeats", type=int, default=1, help="rounds over the precisions; the median is reported")
    ap.add_argument("--fastest", action="store_true", help='also time what train.precision "fastest" sees')
    ap.add_argument("--record", action="store_true", help="also write BENCHMARKS.md rows")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    precisions = a.precisions.split(",")
    for shape in a.shapes.split(","):
        e, h, v = map(int, shape.split("x"))
        for d in a.directions.split(","):
            rates: dict[str, list[float]] = {p: [] for p in precisions}
            for _ in range(a.repeats):
                for p in precisions:
                    rates[p].append(measure(e, h, v, a.batch_tokens, a.chunk, a.steps, d == "both", p))
            seen = {}
            if a.fastest:
                from lstmtext.training.precision import faster, time_model

                model, batch = model_and_batch(e, h, v, a.batch_tokens, a.chunk, d == "both")
                times = time_model(model, batch, torch.device("cpu"))
                seen = {
                    "fastest": faster(times),
                    "fastest_fp32_over_bf16": round(min(times["fp32"]) / min(times["bf16"]), 3),
                }
            for p, runs in rates.items():
                row = {
                    "embed": e,
                    "hidden": h,
                    "vocab": v,
                    "directions": d,
                    "threads": a.threads,
                    "batch_tokens": a.batch_tokens,
                    "chunk": a.chunk,
                    "precision": p,
                    "pieces_per_s": round(statistics.median(runs)),
                    "runs": [round(r) for r in runs],
                    "vs_first": round(statistics.median(runs) / statistics.median(rates[precisions[0]]), 3),
                    **seen,
                }
                print(json.dumps(row))
                if a.record:
                    record(
                        f"lm-train-speed-{e}x{h}x{v}-{d}-{p}",
                        f"random ids, {a.batch_tokens} pieces per step, chunks of {a.chunk}",
                        f"training pieces/s (median; {p}/{precisions[0]} {row['vs_first']})",
                        row["pieces_per_s"],
                        None,
                        row["pieces_per_s"],
                        "python benchmarks/speed_lm_shapes.py " + " ".join(sys.argv[1:]),
                        row,
                    )


if __name__ == "__main__":
    main()
