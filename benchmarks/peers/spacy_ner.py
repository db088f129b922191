"""spaCy NER beside lstmtext's from-scratch NER recipe on CoNLL-2003, same budget and threads.

    python benchmarks/peers/spacy_ner.py                        # 25 min each, 1 thread, --optimize efficiency
    python benchmarks/peers/spacy_ner.py --optimize accuracy    # spaCy's accuracy config (no static vectors)
    python benchmarks/peers/spacy_ner.py --quick --budget 90s   # smoke test on subsets, prints, no rows

spaCy: a blank English pipeline with `ner` only (`spacy init config -p ner -o OPTIMIZE`), `spacy train` on
eng.train with eng.testa as its dev set (model-best is kept), stopped by Ctrl-C at the budget. lstmtext:
`lstmtext train ner --recipe conll2003 --max-time BUDGET` without --init-from (from scratch; the recipe's best
score comes from a pretrained BiLM, reported apart in BENCHMARKS.md) and without the character BiLSTM, which ties
on dev from scratch and costs time. Both are scored on eng.testb by the same
code: lstmtext's entity_metrics (seqeval strict spans over BIO tags; IOB1 gold converted as lstmtext converts
it), spaCy tagging the gold words. Speed: the raw text of eng.testb (words joined by spaces, one sentence per
line) through each as a user runs it, process start to last output line, best of 3, alternated.
spaCy's accuracy config wants the en_core_web_lg vectors, which this setup cannot download: it runs with
--paths.vectors null and include_static_vectors false (the wider, deeper tok2vec only).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as peers  # noqa: E402

SIDE = Path(__file__).resolve().parent / "spacy_side.py"
ISSUE_BUDGET = "25m"


def read_conll(path: Path, limit: int | None) -> list[dict]:
    """Sentences of a CoNLL-2003 file ({words, tags}; -DOCSTART- dropped), tags IOB1 → BIO as lstmtext reads them."""
    from lstmtext.tasks.ner_data import to_bio

    sents, words, tags = [], [], []
    for line in path.read_text(encoding="utf-8").splitlines() + [""]:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                sents.append({"words": words, "tags": to_bio(tags)})
                words, tags = [], []
            continue
        cols = line.split()
        words.append(cols[0])
        tags.append(cols[-1])
    return sents[:limit] if limit else sents


def prepare(a, work: Path) -> dict:
    """JSONL of each split (and CoNLL copies of the subsets with --quick), eng.testb's raw text."""
    src = Path(a.data_dir) / "conll2003"
    limits = {"eng.train": 600, "eng.testa": 200, "eng.testb": 300} if a.quick else {}
    files = {}
    for name in ("eng.train", "eng.testa", "eng.testb"):
        sents = read_conll(src / name, limits.get(name))
        (work / f"{name}.jsonl").write_text("".join(json.dumps(s) + "\n" for s in sents), encoding="utf-8")
        conll = src / name
        if a.quick:
            conll = work / name
            blocks = ["\n".join(f"{w} _ _ {t}" for w, t in zip(s["words"], s["tags"])) for s in sents]
            conll.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")
        files[name] = {"jsonl": work / f"{name}.jsonl", "conll": conll, "sents": sents}
    raw = work / "eng.testb.raw.txt"
    raw.write_text("".join(" ".join(s["words"]) + "\n" for s in files["eng.testb"]["sents"]), encoding="utf-8")
    files["raw"] = raw
    return files


def spacy_sides(a, py: Path, work: Path, files: dict) -> tuple:
    """(the spaCy training command, its log, its model dir) after writing the DocBins and the config."""
    env = peers.thread_env(a.threads)
    for name in ("eng.train", "eng.testa"):
        peers.run([py, SIDE, "docbin", files[name]["jsonl"], work / f"{name}.spacy"], env, work / "docbin.log")
    cfg = work / f"{a.optimize}.cfg"
    peers.run(
        [py, "-m", "spacy", "init", "config", cfg, "-l", "en", "-p", "ner", "-o", a.optimize, "-F"],
        env,
        work / "init.log",
    )
    out = work / f"spacy-{a.optimize}"
    cmd = [
        py,
        "-m",
        "spacy",
        "train",
        cfg,
        "--output",
        out,
        "--paths.train",
        work / "eng.train.spacy",
        "--paths.dev",
        work / "eng.testa.spacy",
    ]
    if a.optimize == "accuracy":
        cmd += ["--paths.vectors", "null", "--components.tok2vec.model.embed.include_static_vectors", "false"]
    return cmd, work / f"spacy-{a.optimize}.train.log", out


def score_spacy(py: Path, model: Path, files: dict, threads: int) -> dict:
    from lstmtext.tasks.ner_data import entity_metrics

    test = files["eng.testb"]
    res = peers.end_to_end([py, SIDE, "tags", model, test["jsonl"]], peers.thread_env(threads), repeats=1)
    pred = [json.loads(line) for line in res["output"].splitlines()]
    gold = [s["tags"] for s in test["sents"]]
    assert len(pred) == len(gold), "spaCy lost sentence alignment"
    return entity_metrics(gold, pred)


def speeds(a, py, spacy_model, ckpt, files) -> dict:
    """Best-of-3 seconds for each side over eng.testb's raw text at each of --speed-threads, alternated so both
    meet the same machine; each side's row is its best thread count."""
    raw, lines = files["raw"], len(files["eng.testb"]["sents"])
    cmds = {}
    for n in peers.thread_counts(a):
        if spacy_model:
            cmds[("peer", n)] = ([py, SIDE, "tag", spacy_model], peers.thread_env(n), raw, None)
        if ckpt:
            lt = [sys.executable, "-m", "lstmtext", "tag", raw, "-m", exported(a, ckpt), "--format", "jsonl"]
            cmds[("lstmtext", n)] = (lt, peers.lstmtext_env(n), None, None)

    def aligned(key, output: str) -> None:
        assert len(output.splitlines()) == lines, f"{key} lost line alignment"

    best, _ = peers.time_sides(cmds, aligned)
    words = sum(len(s["words"]) for s in files["eng.testb"]["sents"])
    return {side: {**b, "words": words, "words_per_s": round(words / b["best_s"])} for side, b in best.items()}


def exported(a, ckpt: Path) -> Path:
    """The model lstmtext tags and is scored with: the checkpoint, or with --export its ONNX file (written
    here if missing or older than the checkpoint)."""
    if a.export == "none":
        return ckpt
    out = ckpt.with_suffix(f".{a.export}.onnx")
    if not out.exists() or out.stat().st_mtime < ckpt.stat().st_mtime:
        peers.lstmtext_json("info", ckpt, "--format", "json", threads=a.threads)  # a readable checkpoint first
        subprocess.run(
            [sys.executable, "-m", "lstmtext", "export", ckpt, "-o", out, "--precision", a.export, "--force"],
            check=True, env=peers.lstmtext_env(a.threads),
        )  # fmt: skip
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    peers.add_common_args(ap, ISSUE_BUDGET)
    ap.add_argument("--optimize", choices=["efficiency", "accuracy"], default="efficiency")
    ap.add_argument("--spacy", default="spacy", help="pip requirement for spaCy (default: the newest)")
    ap.add_argument("--seed", type=int, default=1, help="lstmtext's train.seed")
    ap.add_argument(
        "--export",
        choices=["none", "fp32", "int8"],
        default="none",
        help="score and time lstmtext's model as an ONNX export of this precision (lstmtext export), not the checkpoint",
    )
    ap.add_argument(
        "--speed-threads",
        help="thread counts to time tagging at, comma-separated (e.g. 1,2); each side's best is its row "
        "(default: --threads)",
    )
    ap.add_argument(
        "--no-train",
        action="store_true",
        help="score and time the models an earlier run left in the work dir (same --optimize and --seed)",
    )
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="lstmtext recipe override (e.g. to keep the run from scratch where the recipe names a pretrained start)",
    )
    a = ap.parse_args()
    work = Path(a.work_dir) / "spacy_ner" / ("quick" if a.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    files = prepare(a, work)
    budget_s = peers.seconds(a.budget)
    py = peers.venv(Path(a.work_dir), "venv-spacy", [a.spacy])
    sides, spacy_model, ckpt = [], None, None
    if a.only in ("both", "peer"):
        cmd, log, out = spacy_sides(a, py, work, files)
        sides.append(("peer", cmd, peers.thread_env(a.threads), log, budget_s, {}))
        spacy_model = out / "model-best"
    if a.only in ("both", "lstmtext"):
        ckpt = work / f"lstmtext-ner-s{a.seed}.ckpt"
        extra = [
            "--train",
            files["eng.train"]["conll"],
            "--dev",
            files["eng.testa"]["conll"],
            "--seed",
            str(a.seed),
            '--set=init.recipe=""',  # from scratch, as spaCy trains: the recipe's pretrained start is its own row
            "--set=ner.char_dim=0",  # from scratch, dev ties with and without it: the cheaper (recipe's comment)
            "--set=train.members=1",  # one tagger in the budget, as spaCy trains one (the recipe keeps three)
            *[f"--set={kv}" for kv in a.set],
        ]
        cmd = peers.lstmtext_train_args("ner", "conll2003", ckpt, a.budget, extra)
        sides.append(("lstmtext", cmd, peers.lstmtext_env(a.threads), work / "lstmtext-ner.train.log", None, {}))
    if a.no_train:
        runs = json.loads((work / f"result-{a.optimize}.json").read_text())["runs"]
    else:
        runs = peers.run_sides(sides, a.parallel)
    print(json.dumps(runs), flush=True)
    result: dict = {"runs": runs, "budget": a.budget, "threads": a.threads, "parallel": a.parallel}
    if spacy_model:
        result["peer"] = score_spacy(py, spacy_model, files, a.threads)
        result["spacy_version"] = peers.version(py, "spacy")
    if ckpt:
        result["lstmtext"] = peers.lstmtext_json(
            "evaluate", exported(a, ckpt), files["eng.testb"]["conll"], "--format", "json", threads=a.threads
        )
        result["lstmtext_model"] = "checkpoint" if a.export == "none" else f"ONNX export, {a.export}"
        info, minutes, tok_s = peers.lstmtext_cost(ckpt, a.threads)
        result["lstmtext_cost"] = {"train_min": minutes, "pieces_per_s": tok_s, "dev": info.get("metrics")}
    result["speed"] = speeds(a, py, spacy_model, ckpt, files)
    (work / f"result-{a.optimize}.json").write_text(json.dumps(result, indent=2) + "\n")
    report(a, result)


def report(a, r: dict) -> None:
    for side in ("peer", "lstmtext"):
        if side in r:
            print(f"{side}: eng.testb F1 {100 * r[side]['f1']:.2f}; speed {r['speed'][side]}", flush=True)
    if "peer" not in r or "lstmtext" not in r:
        return
    exported_note = f"lstmtext tags with its ONNX export ({a.export})" if a.export != "none" else ""
    parallel = "in parallel, each on its own threads" if a.parallel else ""
    note = "; ".join(x for x in (a.note, parallel, exported_note) if x)
    lab = peers.label(f"spacy-ner-{a.optimize} vs lstmtext ner from scratch", a.budget, ISSUE_BUDGET, a.threads, note)
    sp = "spaCy " + r.get("spacy_version", "?")
    dataset = "CoNLL-2003 eng.testb" + (" (quick subset)" if a.quick else "") + f", {sp}"
    words = r["speed"]["peer"]["words"]
    peer_min = round(r["runs"]["peer"]["train_s"] / 60, 1)
    speed = peers.speed_metric(a, "words/s end to end (process start to last line", r["speed"], "spaCy")
    rows = [
        peers.Row(
            f"spacy-ner-{a.optimize}-f1", lab, dataset, "entity F1 (seqeval strict, lstmtext's entity_metrics)",
            round(100 * r["peer"]["f1"], 2), round(100 * r["lstmtext"]["f1"], 2),
            peer_min, r["lstmtext_cost"]["train_min"], None, r["lstmtext_cost"]["pieces_per_s"],
        ),
        peers.Row(
            f"spacy-ner-{a.optimize}-speed", lab, f"CoNLL-2003 eng.testb raw text ({words} words), {sp}", speed,
            r["speed"]["peer"]["words_per_s"], r["speed"]["lstmtext"]["words_per_s"],
        ),
    ]  # fmt: skip
    peers.record_side_by_side(a, rows, {"result": r})


if __name__ == "__main__":
    main()
