"""LM training throughput by encoder shape and vocabulary, side by side in one run: what recipes/wikitext2.toml
chose its shape from. Each row times full training steps (BiLM forward + backward + AdamW) of the real model
that ``lstmtext train lm`` builds, on random ids, so only the arithmetic differs between rows.

    python benchmarks/speed_lm_shapes.py                       # the default table, 2 threads
    python benchmarks/speed_lm_shapes.py --threads 1 --shapes 256x512x4000
    python benchmarks/speed_lm_shapes.py --shapes 256x512x4000 --batch-tokens 2048 --chunk 128 --directions both,forward

Prints one JSON object per shape; nothing is written to BENCHMARKS.md (a speed probe, not a quality result).
"""

from __future__ import annotations

import argparse
import json
import time


def measure(
    embed: int, hidden: int, vocab: int, batch_tokens: int, chunk: int, steps: int, bidirectional: bool = True
) -> float:
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
    model = lm.build_model(recipe, vocab, [])
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
    B = max(1, batch_tokens // chunk)
    batch = {"tokens": torch.randint(5, vocab, (B, chunk)), "lengths": torch.full((B,), chunk)}
    for i in range(steps + 3):
        if i == 3:  # the first steps allocate and pick kernels
            t0 = time.perf_counter()
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
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    for shape in a.shapes.split(","):
        e, h, v = map(int, shape.split("x"))
        for d in a.directions.split(","):
            rate = measure(e, h, v, a.batch_tokens, a.chunk, a.steps, bidirectional=d == "both")
            print(
                json.dumps(
                    {
                        "embed": e,
                        "hidden": h,
                        "vocab": v,
                        "directions": d,
                        "threads": a.threads,
                        "batch_tokens": a.batch_tokens,
                        "chunk": a.chunk,
                        "pieces_per_s": round(rate),
                    }
                )
            )


if __name__ == "__main__":
    main()
