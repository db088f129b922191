"""Sentiment benchmarks: train a recipe on $LSTMTEXT_DATA (default ../shared/data), score it, and time the CLI.

    python benchmarks/bench_sentiment.py --recipe sst2     # SST-2 dev accuracy, ≤ 20 min of training
    python benchmarks/bench_sentiment.py --recipe imdb     # IMDB test accuracy, ≤ 45 min of training
    python benchmarks/bench_sentiment.py --recipe sst2 --only speed --checkpoint benchmarks/out/sst2.ckpt

Rows go to BENCHMARKS.md and benchmarks/out/*.json. Model selection happens on a seeded slice of train
(the recipes say so); the reported split is never seen before evaluation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, REPO, SHARED, lstmtext, record, rel, run_options, training_cost  # noqa: E402

EVAL = {"sst2": SHARED / "sst2" / "dev.tsv", "imdb": SHARED / "imdb" / "test.jsonl.gz"}
SPLIT = {"sst2": "SST-2 dev (872)", "imdb": "IMDB test (25,000)"}


def train_and_score(a, ckpt: Path, save: bool) -> None:
    name = a.recipe
    args = ["train", "sentiment", "--recipe", f"recipes/{name}.toml", "-o", rel(ckpt), "--force", "-q"]
    if a.train:
        args += ["--train", a.train]
    args += run_options(a)
    command = "lstmtext " + " ".join(map(str, args))
    print(command, flush=True)
    _, wall = lstmtext(*args)
    info, minutes, tok_s = training_cost(ckpt)
    ev, _ = lstmtext("evaluate", ckpt, EVAL[name], "--format", "json")
    m = json.loads(ev.stdout)
    print(f"{name}: accuracy {m['accuracy']:.4f} macro-F1 {m['macro_f1']:.4f} after {minutes} min ({wall:.0f}s wall)")
    if save:
        extra = {
            "macro_f1": m["macro_f1"],
            "selection_metric": info["metrics"],
            "steps": info["provenance"]["steps"],
            "init_from": a.init_from,
        }
        record(
            a.name or f"sentiment-{name}",
            SPLIT[name],
            "accuracy",
            round(100 * m["accuracy"], 2),
            minutes,
            tok_s,
            f"{command} && lstmtext evaluate {rel(ckpt)} {EVAL[name]}",
            extra,
        )


def speed(ckpt: Path, save: bool, batches: int, repeats: int) -> None:
    """Whole-loop training throughput vs the raw encoder forward+backward on the same batches, with a dense
    embedding (fused AdamW) and with a row-sparse one (train.sparse_embeddings); CLI timings."""
    import copy

    import torch

    import lstmtext.api as api
    from lstmtext.data import bucket_batches
    from lstmtext.device import autocast_for
    from lstmtext.tasks import get_task
    from lstmtext.tasks.common import to_device
    from lstmtext.training.build import make_optimizer
    from lstmtext.training.loop import train_step
    from lstmtext.training.optim import make_embeddings_sparse

    p = api.load(ckpt)
    mod = get_task("sentiment")
    recipe = p.recipe
    examples = mod.read(str(SHARED / "sst2" / "train.tsv"), recipe.options)[:20000]
    feats = mod.featurize(examples, p.tok, p.labels, recipe)
    idx = bucket_batches([f["length"] for f in feats], recipe.train.batch_tokens, recipe.train.max_batch_size, True, 1)
    idx = idx[:batches]
    host = torch.device("cpu")
    models = {"dense": mod.build_model(recipe, len(p.tok), p.labels)}
    models["sparse"] = copy.deepcopy(models["dense"])
    make_embeddings_sparse(models["sparse"])
    opts = {}
    for name, model in models.items():
        model.train()
        opts[name] = make_optimizer(model, recipe.train, host)  # the loop's own: fused AdamW, or DenseSparseAdamW
    autocast, scaler = autocast_for(host, "fp32")
    pre = [mod.collate([feats[i] for i in b]) for b in idx]
    n_tokens = sum(int(b["lengths"].sum()) for b in pre)

    def raw(model) -> float:  # embedding + both LSTM stacks, forward and backward: the encoder's own cost
        t0 = time.perf_counter()
        for b in pre:
            model.zero_grad(set_to_none=True)
            model.encoder(b["tokens"], b["lengths"]).sum().backward()
        return n_tokens / (time.perf_counter() - t0)

    def loop(model, opt) -> float:  # what train.py does per step: collate, move, forward, loss, backward, clip, AdamW
        t0 = time.perf_counter()
        for b in idx:
            batch = to_device(mod.collate([feats[i] for i in b]), host)
            loss, stepped = train_step(model, opt, batch, autocast, scaler, recipe.train.clip)
            if not stepped:  # a skipped update is cheaper than a real one and would flatter the rate
                raise SystemExit("a non-finite loss in the throughput comparison; its rates would be wrong")
        return n_tokens / (time.perf_counter() - t0)

    arms = {}
    for name, model in models.items():
        arms[f"raw_{name}"] = lambda model=model: raw(model)
        arms[f"loop_{name}"] = lambda model=model, name=name: loop(model, opts[name])
    for arm in arms.values():  # warm up oneDNN and the optimizers' state
        arm()
    rates: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(repeats):  # alternated, so drift on a shared machine falls on every arm alike
        for k, arm in arms.items():
            rates[k].append(arm())
    med = {k: statistics.median(v) for k, v in rates.items()}
    # the dense loop against the dense encoder, as this row always was; the sparse loop against the faster of the
    # two raw encoders, so the sparse embedding's own saving in the backward does not flatter it
    ratio = {"dense": med["loop_dense"] / med["raw_dense"]}
    ratio["sparse"] = med["loop_sparse"] / max(med["raw_dense"], med["raw_sparse"])
    enc = recipe.encoder  # the row names the shape: the encoder, the head and the optimizer's work grow with it
    shape = f"encoder {enc.embed_dim}/{enc.hidden_dim}x{enc.num_layers}"
    print(
        f"{shape}: raw encoder fwd+bwd {med['raw_dense']:,.0f} tok/s (sparse embedding {med['raw_sparse']:,.0f}); "
        f"whole loop {med['loop_dense']:,.0f} tok/s, ratio {ratio['dense']:.3f}; with train.sparse_embeddings "
        f"{med['loop_sparse']:,.0f} tok/s, ratio {ratio['sparse']:.3f}; medians of {repeats}"
    )
    parts = {
        "encoder": 1000 * n_tokens / med["raw_dense"] / len(pre),
        "loop": 1000 * n_tokens / med["loop_dense"] / len(pre),
    }
    parts |= breakdown(models["dense"], opts["dense"], mod, feats, idx, pre, recipe.train.clip, repeats)
    print(
        "the dense loop's step, ms (medians; each part timed alone): "
        + ", ".join(f"{k} {v:.2f}" for k, v in parts.items())
    )

    # CLI: --help, and predict over SST-2 dev end to end (start-up included)
    helps = []
    for _ in range(5):
        _, s = lstmtext("--help")
        helps.append(s)
    lines = [l.split("\t")[0] for l in (SHARED / "sst2" / "dev.tsv").read_text().splitlines()[1:]]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(lines) + "\n")
    pred_times = []
    for _ in range(3):
        proc, s = lstmtext("predict", ckpt, f.name)
        assert len(proc.stdout.splitlines()) == len(lines)
        pred_times.append(s)
    help_s, pred_s = statistics.median(helps), statistics.median(pred_times)
    print(f"lstmtext --help {help_s:.3f}s (median of 5); predict over SST-2 dev {pred_s:.2f}s (median of 3)")
    if save:
        cmd = f"python benchmarks/bench_sentiment.py --only speed --checkpoint {ckpt.relative_to(REPO) if ckpt.is_relative_to(REPO) else ckpt}"
        cmd += (f" --batches {batches}" if batches != 150 else "") + (f" --repeats {repeats}" if repeats != 3 else "")
        metrics = {"dense": "loop/raw tokens/s", "sparse": "loop/raw tokens/s (raw: the faster embedding)"}
        for name, label in (("dense", ""), ("sparse", "-sparse-embeddings")):
            record(
                f"train-throughput-vs-raw-encoder{label}",
                f"SST-2 train (20k, recipe batches), {shape}",
                metrics[name],
                round(ratio[name], 3),
                None,
                round(med[f"loop_{name}"]),
                cmd,
                {
                    "raw_dense_tokens_per_s": round(med["raw_dense"]),
                    "raw_sparse_tokens_per_s": round(med["raw_sparse"]),
                    "batches": len(idx),
                    "repeats": repeats,
                    "dense_step_ms": {k: round(v, 3) for k, v in parts.items()},
                },
            )
        record("cli-help", "-", "seconds", round(help_s, 3), None, None, "lstmtext --help")
        record(
            "cli-predict-sst2-dev",
            "SST-2 dev (872 lines)",
            "seconds end to end",
            round(pred_s, 2),
            None,
            round(sum(len(l.split()) for l in lines) / pred_s),
            f"lstmtext predict {rel(ckpt)} dev.txt",
        )


def breakdown(model, opt, mod, feats, idx, pre, clip: float, repeats: int) -> dict[str, float]:
    """Milliseconds per step of what the loop adds to the encoder, each timed alone over the same batches and
    alternated: the head's forward and backward from fixed encoder states (pooling, MLP, loss), AdamW's step,
    the clip, and collating. Their sum beside the loop's step says whether anything else is left."""
    import torch

    from lstmtext.training.loop import clip_gradients

    params = [p for g in opt.param_groups for p in g["params"]]
    with torch.no_grad():
        states = [model.encoder(b["tokens"], b["lengths"]) for b in pre]  # (B, T, 2H) each
    for b in pre[:1]:  # gradients on every parameter, as after a loop's backward
        opt.zero_grad(set_to_none=True)
        model(b)[1].backward()

    def head():  # the loop's backward writes fresh gradients (zero_grad sets them to None), never adds to old ones
        for s, b in zip(states, pre):
            model.head.zero_grad(set_to_none=True)
            model.head(s.requires_grad_(), b)[1].backward()
            s.grad = None

    arms = {
        "head": head,
        "adamw": lambda: [opt.step() for _ in pre],
        "clip": lambda: [clip_gradients(params, clip) for _ in pre],
        "collate": lambda: [mod.collate([feats[i] for i in b]) for b in idx],
    }
    times: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(repeats + 1):  # the first pass warms up
        for k, arm in arms.items():
            t0 = time.perf_counter()
            arm()
            times[k].append(1000 * (time.perf_counter() - t0) / len(pre))
    return {k: statistics.median(v[1:]) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", choices=["sst2", "imdb"], default="sst2")
    ap.add_argument("--max-time", help="override the recipe's training budget (e.g. 2m for a smoke run)")
    ap.add_argument("--train", help="training data instead of the recipe's (e.g. a subset)")
    ap.add_argument(
        "--init-from", help="start from this checkpoint's encoder and tokenizer (an LM from 'lstmtext train lm')"
    )
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe overrides, as for lstmtext train"
    )
    ap.add_argument("--name", help="benchmark name in BENCHMARKS.md (default sentiment-RECIPE)")
    ap.add_argument("--only", choices=["all", "train", "speed"], default="all")
    ap.add_argument("--checkpoint", type=Path, help="checkpoint to write (train) or to time (--only speed)")
    ap.add_argument("--batches", type=int, default=150, help="batches in the throughput comparison")
    ap.add_argument("--repeats", type=int, default=3, help="alternated passes of each; medians are reported")
    ap.add_argument("--no-record", action="store_true", help="print only; no BENCHMARKS.md row (smoke runs)")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    ckpt = a.checkpoint or OUT / f"{a.recipe}.ckpt"
    if a.only in ("all", "train"):
        train_and_score(a, ckpt, not a.no_record)
    if a.only in ("all", "speed") and a.recipe == "sst2":
        speed(ckpt, not a.no_record, a.batches, a.repeats)


if __name__ == "__main__":
    main()
