"""NER benchmarks on CoNLL-2003: train the recipe, score eng.testb through the CLI, time `lstmtext tag`.

    python benchmarks/bench_ner.py                                  # from scratch, ≤ 30 min of training
    python benchmarks/bench_ner.py --init-from wt2.ckpt --name ner-conll2003-lm-init \
        --set encoder.embed_dim=512 --set encoder.hidden_dim=512          # encoder pretrained by train lm
    python benchmarks/bench_ner.py --adapt-lm wt2.ckpt --name ner-conll2003-adapted   # the BiLM adapted to
        eng.train's text first (10 min, reported apart), then NER from it
    python benchmarks/bench_ner.py --only speed --checkpoint benchmarks/out/ner-conll2003.ckpt
    python benchmarks/bench_ner.py --only speed --checkpoint C.ckpt --precision fp32,int8   # alternated, F1 of each
    python benchmarks/bench_ner.py --only startup --checkpoint C.ckpt --repeats 7   # one line: torch vs ONNX
    python benchmarks/bench_ner.py --only stages --checkpoint benchmarks/out/ner-conll2003.ckpt   # where it goes
    python benchmarks/bench_ner.py --only batching --checkpoint C.ckpt --precision int8   # batch size, threads
    python benchmarks/bench_ner.py --only soup --parts a.ckpt b.ckpt --name ner-soup   # runs that share
        --init-from and train.init_seed, averaged (lstmtext average) and scored beside each part
    python benchmarks/bench_ner.py --quick --max-time 1m --no-record   # smoke test: subsets, no rows

Model selection happens on eng.testa (the recipe's dev); eng.testb is seen only by `lstmtext evaluate`.
The speed row times `lstmtext tag` end to end (start-up included) over the raw sentences of eng.testb,
words joined by spaces, one sentence per line; it reports words/s (the median of --repeats runs).
Rows go to BENCHMARKS.md and benchmarks/out/*.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import OUT, SHARED, lstmtext, record, rel, run_options, training_cost  # noqa: E402

DATA = SHARED / "conll2003"
TRAIN, DEV, TEST = DATA / "eng.train", DATA / "eng.testa", DATA / "eng.testb"


def conll_sentences(path: Path) -> list[list[str]]:
    """Raw CoNLL blocks (lines of one sentence each), -DOCSTART- dropped."""
    out, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("-DOCSTART-"):
            if cur:
                out.append(cur)
                cur = []
            continue
        cur.append(line)
    if cur:
        out.append(cur)
    return out


def subset(path: Path, n: int) -> Path:
    """The first n sentences of a CoNLL file (for --quick), written under benchmarks/out/."""
    dest = OUT / f"quick.{path.name}"
    dest.write_text("\n\n".join("\n".join(s) for s in conll_sentences(path)[:n]) + "\n", encoding="utf-8")
    return dest


def conll_text(path: Path) -> Path:
    """The words of a CoNLL file as plain text, one document per line (tags dropped), under benchmarks/out/."""
    docs, cur = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("-DOCSTART-"):
            if cur:
                docs.append(" ".join(cur))
            cur = []
        elif line.strip():
            cur.append(line.split()[0])
    if cur:
        docs.append(" ".join(cur))
    dest = OUT / f"conll-{path.name}.txt"
    dest.write_text("\n".join(docs) + "\n", encoding="utf-8")
    return dest


def adapt_lm(a, train: Path, dev: Path, save: bool) -> Path:
    """ULMFiT's second step: go on training the BiLM (head included) on the NER training text, untagged, and
    select it on the dev text. Returns the adapted checkpoint (reused when it exists, unless --force-adapt)."""
    ckpt = OUT / f"{Path(a.adapt_lm).stem}-adapted-{train.name}.ckpt"
    text, dev_text = conll_text(train), conll_text(dev)
    args = [
        "train",
        "lm",
        "--recipe",
        "recipes/wikitext2.toml",
        "--init-from",
        rel(a.adapt_lm),
        "--train",
        rel(text),
        "--dev",
        rel(dev_text),
        "-o",
        rel(ckpt),
        "--force",
        "-q",
        "--max-time",
        a.adapt_time,
        "--set",
        "train.precision=bf16",
        "--set",
        "train.eval_every=200",
        "--set",
        "train.lr=0.001",
    ]
    command = "lstmtext " + " ".join(map(str, args))
    if ckpt.exists() and not a.force_adapt:
        print(f"reusing {rel(ckpt)}, made by: {command}", flush=True)
    else:
        print(command, flush=True)
        lstmtext(*args)
    info, minutes, tok_s = training_cost(ckpt)
    before = json.loads(lstmtext("evaluate", a.adapt_lm, rel(dev_text), "--format", "json")[0].stdout)
    after = json.loads(lstmtext("evaluate", ckpt, rel(dev_text), "--format", "json")[0].stdout)
    print(
        f"{dev.name} text, perplexity per piece: {before['ppl_piece']:.2f} before, {after['ppl_piece']:.2f} after "
        f"{minutes} min of adaptation",
        flush=True,
    )
    if save:
        record(
            f"lm-adapt-conll2003-{train.name}",
            f"CoNLL-2003 {dev.name} text",
            "ppl/piece",
            round(after["ppl_piece"], 2),
            minutes,
            tok_s,
            f"{command} && lstmtext evaluate {rel(ckpt)} {rel(dev_text)}",
            {"before": round(before["ppl_piece"], 2), "lm": str(a.adapt_lm)},
        )
    return ckpt


def train_and_score(a, ckpt: Path, train: Path, dev: Path, test: Path, save: bool) -> None:
    args = [
        "train",
        "ner",
        "--recipe",
        a.recipe,
        "--train",
        rel(train),
        "--dev",
        rel(dev),
        "-o",
        rel(ckpt),
        "--force",
        "-q",
    ]
    args += run_options(a)
    command = "lstmtext " + " ".join(map(str, args))
    print(command, flush=True)
    _, wall = lstmtext(*args)
    info, minutes, tok_s = training_cost(ckpt)
    ev, _ = lstmtext("evaluate", ckpt, rel(test), "--format", "json")
    m = json.loads(ev.stdout)
    per_type = " ".join(f"{k} {100 * v['f1']:.2f}" for k, v in m["per_type"].items())
    print(
        f"{test.name}: F1 {100 * m['f1']:.2f} (P {100 * m['precision']:.2f} R {100 * m['recall']:.2f}; {per_type}) "
        f"after {minutes} min of training ({wall:.0f}s wall); dev {info['metrics']}",
        flush=True,
    )
    sides = context_sides(ckpt, test)
    if save:
        extra = {
            "precision": m["precision"],
            "recall": m["recall"],
            "per_type": m["per_type"],
            "selection": {"split": dev.name, **info["metrics"]},
            "steps": info["provenance"]["steps"],
            "init_from": a.init_from,
            "f1_by_context_read": sides,
        }
        record(
            a.name,
            f"CoNLL-2003 {test.name}" + (" (quick subset)" if a.quick else ""),
            "entity F1",
            round(100 * m["f1"], 2),
            minutes,
            tok_s,
            f"{command} && lstmtext evaluate {rel(ckpt)} {rel(test)}",
            extra,
        )


def soup(a, test: Path, save: bool) -> None:
    """Average the --parts checkpoints (runs that share --init-from and train.init_seed) and score the mean
    on eng.testb beside each part."""
    out = a.checkpoint or OUT / f"{a.name}.ckpt"
    args = ["average", *map(rel, a.parts), "-o", rel(out), "--force"]
    lstmtext(*args)
    scores = []
    for path in [*a.parts, out]:
        m = json.loads(lstmtext("evaluate", path, rel(test), "--format", "json")[0].stdout)
        scores.append(round(100 * m["f1"], 2))
        print(
            f"{Path(path).name}: {test.name} entity F1 {scores[-1]:.2f} (P {100 * m['precision']:.2f} "
            f"R {100 * m['recall']:.2f})",
            flush=True,
        )
    parts = [json.loads(lstmtext("info", p, "--format", "json")[0].stdout) for p in a.parts]
    minutes = max(p["provenance"]["train_seconds"] for p in parts) / 60
    if save:
        record(
            a.name,
            f"CoNLL-2003 {test.name}",
            "entity F1 (weights averaged)",
            scores[-1],
            round(minutes, 1),
            None,
            "lstmtext " + " ".join(map(str, args)) + f" && lstmtext evaluate {rel(out)} {rel(test)}",
            {
                "parts": {str(p): s for p, s in zip(a.parts, scores)},
                "mean_of_parts": round(sum(scores[:-1]) / len(a.parts), 2),
                "parts_dev": [p["metrics"] for p in parts],
                "note": "parts trained side by side, one thread each",
            },
        )


def context_sides(ckpt: Path, test: Path) -> dict | None:
    """Entity F1 of a model trained with ner.context, read three ways: with its document on both sides (as
    `lstmtext evaluate` reads CoNLL), with only the text before each sentence, and each sentence alone (as
    `lstmtext tag` reads lines). None for a model without context."""
    import lstmtext
    from lstmtext.tasks import ner

    p = lstmtext.load(str(ckpt))
    if p.recipe.options.context <= 0:
        return None
    examples = ner.read(str(test), p.recipe.options, "test")
    both = ner.featurize(examples, p.tok, p.labels, p.recipe)
    left = ner.featurize(examples, p.tok, p.labels, p.recipe, right_context=False)
    alone = ner.featurize([{k: v for k, v in e.items() if k != "doc"} for e in examples], p.tok, p.labels, p.recipe)
    out = {}
    for name, feats in (("document", both), ("left", left), ("alone", alone)):
        out[name] = round(100 * ner.evaluate(p.model, feats, p.labels, p.device, 8192)["f1"], 2)
    print(f"{test.name} entity F1 by context read: {out}", flush=True)
    return out


def raw_text(test: Path) -> tuple[Path, list[str]]:
    """The raw sentences of a CoNLL file, words joined by spaces, one per line, under benchmarks/out/."""
    sentences = [" ".join(line.split()[0] for line in s) for s in conll_sentences(test)]
    raw = OUT / f"ner-{test.name}.raw.txt"
    raw.write_text("\n".join(sentences) + "\n", encoding="utf-8")
    return raw, sentences


def stages(a, ckpt: Path, test: Path) -> None:
    """Where the time of `lstmtext tag` goes: one Predictor.predict call over every line (as `lstmtext tag`
    reads a file), with timers wrapped around its stages. Torch is not imported before, so its import is timed."""
    import time

    t0 = time.perf_counter()
    import torch  # noqa: F401

    out = {"torch import": time.perf_counter() - t0}
    import lstmtext
    from lstmtext.api import inference_precision
    from lstmtext.tasks import ner

    def timed(name, fn):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                out[name] = out.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    raw, sentences = raw_text(test)
    p = timed("load", lstmtext.load)(str(ckpt))
    ner.split_words = timed("word split", ner.split_words)
    ner.featurize = timed("featurize", ner.featurize)
    p.workers = 1  # one batch at a time: stage timers summed over parallel threads would overlap
    m = p.model
    m.encoder.forward = timed("encoder", m.encoder.forward)
    m.head.forward = timed("head (word BiLSTM, projection)", m.head.forward)
    m.head.decode = timed("Viterbi", m.head.decode)
    t = time.perf_counter()
    context = inference_precision(p, a.precision or "auto")  # int8 converts the LSTMs here
    out["precision set-up"] = time.perf_counter() - t
    with context:
        t = time.perf_counter()
        results = p.predict(sentences)
        total = time.perf_counter() - t
    out["the rest of predict"] = total - sum(
        v for k, v in out.items() if k not in ("torch import", "load", "precision set-up")
    )
    fmt = timed(f"output ({a.format})", p.format)
    for text, result in zip(sentences, results):
        fmt(text, result, a.format)
    print(
        f"{ckpt.name} over {test.name} raw ({sum(len(r['tokens']) for r in results)} words, "
        f"--precision {a.precision or 'auto'}):"
    )
    for k, v in out.items():
        print(f"  {k:32s} {v:6.2f} s")
    seconds = {k: round(v, 3) for k, v in out.items()}
    (OUT / f"{a.name}-tag-stages.json").write_text(json.dumps(seconds, indent=2) + "\n")


def batching(a, ckpt: Path, test: Path, save: bool) -> None:
    """Predictor.predict over the raw sentences of eng.testb, the model loaded once, in three set-ups
    alternated run by run so all meet the same machine: batches of 8,192 pieces one at a time (the tagger
    before), the same batches side by side in threads (one per intra-op thread, common.map_batches), and
    batches of 2,048 pieces in threads (now the default). It counts the lines whose tags differ from the
    first set-up's: none in fp32; int8 scales activations batch by batch, so other batches change a few."""
    import statistics
    import time

    import torch

    import lstmtext
    from lstmtext.api import inference_precision

    _, sentences = raw_text(test)
    words = sum(len(s.split()) for s in sentences)
    p = lstmtext.load(str(ckpt))
    precision = a.precision or "auto"
    threads = torch.get_num_threads()
    setups = {"8192-1": (8192, 1), "8192-threads": (8192, None), "2048-threads": (2048, None)}
    times: dict = {k: [] for k in setups}
    tags: dict = {}
    with inference_precision(p, precision):
        p.predict(sentences[:256])  # warm-up: first-call allocations and oneDNN kernel choice
        for _ in range(a.repeats):
            for k, (p.batch_tokens, p.workers) in setups.items():
                t = time.perf_counter()
                tags[k] = [r["tags"] for r in p.predict(sentences)]
                times[k].append(time.perf_counter() - t)
    first = next(iter(tags.values()))
    changed = {k: sum(x != y for x, y in zip(first, v)) for k, v in tags.items()}
    for k, (bt, w) in setups.items():
        t = statistics.median(times[k])
        label = f"batches of {bt} pieces, " + ("one at a time" if w == 1 else f"{threads} threads side by side")
        print(
            f"predict over {test.name} raw ({words} words, --precision {precision}), {label}: {t:.2f}s median of "
            f"{a.repeats} → {words / t:,.0f} words/s (model loaded; no start-up); lines whose tags differ from "
            f"the first set-up: {changed[k]}",
            flush=True,
        )
        if save:
            record(
                f"{a.name}-predict-{k}",
                f"CoNLL-2003 {test.name} raw text ({words} words)",
                "words/s in predict (loaded)",
                round(words / t),
                None,
                None,
                f"python benchmarks/bench_ner.py --only batching --checkpoint {rel(ckpt)} --precision {precision} "
                f"--repeats {a.repeats}",
                {
                    "seconds": round(t, 3),
                    "runs": [round(x, 3) for x in times[k]],
                    "batch_tokens": bt,
                    "workers": w or threads,
                    "threads": threads,
                    "lines_changed": changed[k],
                },
            )


def speed(a, ckpt: Path, test: Path, save: bool) -> None:
    """Words/s of `lstmtext tag` end to end. With several --precision values (fp32,int8) the runs alternate,
    so each precision meets the same machine; each row also carries eng.testb's F1 at that precision."""
    raw, sentences = raw_text(test)
    words = sum(len(s.split()) for s in sentences)
    precisions = a.precision.split(",") if a.precision else [None]
    times: dict = {p: [] for p in precisions}
    for _ in range(a.repeats):
        for p in precisions:
            extra = ["--precision", p] if p else []
            proc, s = lstmtext("tag", rel(raw), "-m", rel(ckpt), "--format", a.format, *extra)
            if a.format != "conll":
                assert len(proc.stdout.splitlines()) == len(sentences), "tag lost line alignment"
            times[p].append(s)
    for p in precisions:
        extra = ["--precision", p] if p else []
        t = statistics.median(times[p])
        rate = words / t
        m = json.loads(lstmtext("evaluate", rel(ckpt), rel(test), "--format", "json", *extra)[0].stdout)
        print(
            f"lstmtext tag over {test.name} raw ({len(sentences)} lines, {words} words, --format {a.format}"
            f"{', --precision ' + p if p else ''}): {t:.2f}s median of {a.repeats} → {rate:,.0f} words/s end to end; "
            f"{test.name} F1 {100 * m['f1']:.2f} at that precision",
            flush=True,
        )
        if save:
            record(
                f"{a.name}-tag-speed",
                f"CoNLL-2003 {test.name} raw text ({words} words)",
                "words/s end to end",
                round(rate),
                None,
                None,
                " ".join(["lstmtext tag", raw.name, "-m", str(rel(ckpt)), "--format", a.format, *extra]),
                {
                    "seconds": round(t, 2),
                    "runs": [round(x, 2) for x in times[p]],
                    "precision": p or "auto",
                    "f1": round(100 * m["f1"], 2),
                    "alternated_with": [q for q in precisions if q != p],
                },
            )


STARTUP_LINE = "Angela Merkel visited Paris.\n"


def startup(a, ckpt: Path, save: bool) -> None:
    """Seconds of `echo "Angela Merkel visited Paris." | lstmtext tag -m MODEL`, process start to exit: the
    checkpoint (torch) and its ONNX exports (onnxruntime, no torch), alternated, median of --repeats."""
    models = {"checkpoint": [rel(ckpt)]}
    for precision in ("fp32", "int8"):
        out = ckpt.with_suffix(f".{precision}.onnx")
        lstmtext("export", rel(ckpt), "-o", out, "--precision", precision, "--force")
        models[f"onnx-{precision}"] = [rel(out)]
    models["checkpoint-int8"] = [rel(ckpt), "--precision", "int8"]
    times: dict = {k: [] for k in models}
    outputs = {}
    for _ in range(a.repeats):
        for k, args in models.items():
            proc, s = lstmtext("tag", "-m", *args, stdin=STARTUP_LINE)
            times[k].append(s)
            outputs[k] = proc.stdout
    for k, args in models.items():
        t = statistics.median(times[k])
        same = outputs[k] == outputs["checkpoint"]
        print(f"{k}: {t:.3f}s median of {a.repeats} ({'same' if same else 'other'} tags as the checkpoint)", flush=True)
        if save:
            record(
                f"{a.name}-tag-startup-{k}",
                "one line: Angela Merkel visited Paris.",
                "seconds end to end (median)",
                round(t, 3),
                None,
                None,
                f'echo "Angela Merkel visited Paris." | lstmtext tag -m {" ".join(map(str, args))}',
                {"runs": [round(x, 3) for x in times[k]], "same_tags_as_checkpoint": same, "alternated": list(models)},
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="recipes/conll2003.toml")
    ap.add_argument("--max-time", help="override the recipe's training budget (e.g. 1m for a smoke run)")
    ap.add_argument("--init-from", help="start from this checkpoint's encoder (an LM trained by 'lstmtext train lm')")
    ap.add_argument(
        "--adapt-lm",
        metavar="LM_CKPT",
        help="first adapt this BiLM to eng.train's text (ULMFiT), then --init-from the result",
    )
    ap.add_argument("--adapt-time", default="10m", help="training budget of the adaptation (default 10m)")
    ap.add_argument("--force-adapt", action="store_true", help="adapt again even if the adapted LM exists")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override passed to train, e.g. encoder.hidden_dim=512 to match an --init-from LM",
    )
    ap.add_argument("--name", default="ner-conll2003", help="benchmark name in BENCHMARKS.md")
    ap.add_argument(
        "--only",
        choices=["all", "train", "speed", "startup", "stages", "batching", "context", "adapt", "soup"],
        default="all",
        help="startup: one line through tag from the checkpoint and its ONNX exports; stages: seconds per stage of `lstmtext tag` on a --checkpoint; batching: "
        "predict with batches of 8,192 pieces one at a time, in threads, and of 2,048 in threads; "
        "context: F1 of a --checkpoint trained with ner.context, by how much context it reads; adapt: only the --adapt-lm "
        "step and its row; soup: average --parts and score the mean beside them",
    )
    ap.add_argument("--parts", nargs="+", type=Path, help="checkpoints to average (--only soup)")
    ap.add_argument("--checkpoint", type=Path, help="checkpoint to write (train) or time (--only speed)")
    ap.add_argument("--quick", action="store_true", help="smoke test: 500/200/200 sentence subsets")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of lstmtext tag")
    ap.add_argument(
        "--precision",
        help="passed to lstmtext tag and evaluate (e.g. int8); several, comma-separated "
        "(fp32,int8), alternate run by run",
    )
    ap.add_argument("--format", choices=["conll", "jsonl", "inline"], default="jsonl", help="tag output format timed")
    ap.add_argument("--no-record", action="store_true", help="print only; no BENCHMARKS.md row (smoke runs)")
    a = ap.parse_args()
    if a.only == "soup" and len(a.parts or []) < 2:
        ap.error("--only soup needs --parts A.ckpt B.ckpt ...")
    if a.only == "adapt" and not a.adapt_lm:
        ap.error("--only adapt needs --adapt-lm LM_CKPT")
    OUT.mkdir(parents=True, exist_ok=True)
    for p in (TRAIN, DEV, TEST):
        if not p.exists():
            raise SystemExit(
                f"missing {p}: the benchmark reads CoNLL-2003 from $LSTMTEXT_DATA/conll2003 (default ../shared/data)"
            )
    if a.quick:
        a.name += "-quick"
        train, dev, test = subset(TRAIN, 500), subset(DEV, 200), subset(TEST, 200)
    else:
        train, dev, test = TRAIN, DEV, TEST
    ckpt = a.checkpoint or OUT / f"{a.name}.ckpt"
    save = not a.no_record
    if a.only in ("all", "train"):
        if a.adapt_lm:
            a.init_from = rel(adapt_lm(a, train, dev, save))
        train_and_score(a, ckpt, train, dev, test, save)
    if a.only in ("all", "speed"):
        speed(a, ckpt, test, save)
    if a.only == "startup":
        startup(a, ckpt, save)
    if a.only == "stages":
        stages(a, ckpt, test)
    if a.only == "batching":
        batching(a, ckpt, test, save)
    if a.only == "context":
        context_sides(ckpt, test)
    if a.only == "adapt":
        adapt_lm(a, train, dev, save)
    if a.only == "soup":
        soup(a, test, save)


if __name__ == "__main__":
    main()
