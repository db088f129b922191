"""PyTorch's word_language_model (examples repository) beside lstmtext's WikiText-2 LM, same budget and threads.

    python benchmarks/peers/word_lm.py --peer-dir DIR/word_language_model          # 60 min each, 1 thread
    python benchmarks/peers/word_lm.py --peer-dir DIR/word_language_model --quick --budget 90s   # smoke test

The examples repository is not on PyPI: put a snapshot's word_language_model/ (main.py, data.py, model.py)
somewhere outside this repository and pass it as --peer-dir; it runs in its own venv with torch only.

Peer: `python main.py --data D --tied --save M` with all its other defaults (2 layers of 200 LSTM units,
embeddings 200, SGD at lr 20 divided by 4 when the validation loss stops improving, batch 20 × bptt 35,
dropout 0.2), stopped by Ctrl-C at the budget: its own handler then loads the best model saved at the end of an
epoch and scores the test file. main.py runs unchanged under word_lm_runner.py, which only adds this: when the
budget ends before the first epoch has, it saves the model as it stands (main.py saves nothing mid-epoch), so
the handler has a model to score; the row says when that happened.
lstmtext: `lstmtext train lm --recipe wikitext2 --set lm.bidirectional=false --max-time BUDGET` (the recipe's forward
LM: the peer is one, and a BiLM spends half its steps on the backward LM, which test perplexity does not read; a
later --set lm.bidirectional=true wins), then `lstmtext evaluate` on the test file.

Same units: the peer's vocabulary is WikiText-2's words, and it appends <eos> to every line, blank lines
included; lstmtext's per-word perplexity (lstmtext/tasks/lm.py count_words) counts each line's
whitespace-separated tokens plus one for its end, blank lines kept. So both are perplexity per word over the
same count of units (the JSON carries lstmtext's count beside the file's). The peer scores the test text in 10
parallel columns (its eval batch), each column starting from a zero state; lstmtext carries one state through.
Training speed: the peer's ms/batch log lines (batch × bptt words per batch; logged every 50 batches
instead of 200, which changes nothing else); lstmtext's pieces/s converted to
words/s with the test file's pieces per word.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common as peers  # noqa: E402

ISSUE_BUDGET = "60m"
RUNNER = Path(__file__).resolve().parent / "word_lm_runner.py"
BATCH, BPTT = 20, 35  # main.py's defaults: words per training batch = BATCH * BPTT


def prepare(a, work: Path) -> Path:
    """DIR/{train,valid,test}.txt as main.py reads them (subsets with --quick)."""
    src = Path(a.data_dir) / "wikitext2"
    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    limits = {"train": 3000, "valid": 200, "test": 200} if a.quick else {}
    for split in ("train", "valid", "test"):
        lines = (src / f"wiki.{split}.tokens").read_text(encoding="utf-8").splitlines(keepends=True)
        (d / f"{split}.txt").write_text("".join(lines[: limits.get(split)]), encoding="utf-8")
    return d


def file_words(path: Path) -> int:
    """Units the peer scores: whitespace tokens plus one <eos> per line."""
    with open(path, encoding="utf-8") as f:
        return sum(len(line.split()) + 1 for line in f)


def parse_peer_log(log: Path) -> dict:
    text = log.read_text(encoding="utf-8", errors="replace")
    ms = [float(x) for x in re.findall(r"ms/batch\s+([\d.]+)", text)]
    epochs = re.findall(r"end of epoch\s+(\d+).*?valid ppl\s+([\d.]+)", text)
    test = re.search(r"End of training \| test loss\s+([\d.]+) \| test ppl\s+([\d.]+)", text)
    return {
        "words_per_s": round(BATCH * BPTT * 1000 / statistics.median(ms)) if ms else None,
        "epochs_done": len(epochs),
        "valid_ppl_by_epoch": [float(p) for _, p in epochs],
        "test_ppl": float(test.group(2)) if test else None,
        "interrupted": "Exiting from training early" in text,
        "model_mid_epoch": "runner: budget reached before an epoch ended" in text,
        "stopped_at": (re.findall(r"runner: Ctrl-C in (epoch \S+ at batch \S+)", text) or [None])[0],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    peers.add_common_args(ap, ISSUE_BUDGET)
    ap.add_argument("--peer-dir", required=True, help="the examples snapshot's word_language_model/ directory")
    ap.add_argument("--recipe", default="wikitext2", help="lstmtext's LM recipe (default wikitext2)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="lstmtext recipe override")
    ap.add_argument("--seed", type=int, default=1, help="lstmtext's train.seed (the peer keeps its own 1111)")
    a = ap.parse_args()
    peer_dir = Path(a.peer_dir).resolve()
    if not (peer_dir / "main.py").exists():
        raise SystemExit(f"{peer_dir}/main.py not found: --peer-dir takes word_language_model/ of pytorch/examples")
    work = Path(a.work_dir) / "word_lm" / ("quick" if a.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    data = prepare(a, work)
    budget_s = peers.seconds(a.budget)
    sides = []
    if a.only in ("both", "peer"):
        py = peers.venv(Path(a.work_dir), "venv-torch", [peers.TORCH])
        model = work / "peer-model.pt"
        model.unlink(missing_ok=True)
        cmd = [py, RUNNER, peer_dir / "main.py", "--data", data, "--tied", "--save", model, "--log-interval", "50"]
        sides.append(("peer", cmd, peers.thread_env(a.threads), work / "peer.train.log", budget_s, {"cwd": peer_dir}))
    ckpt = work / f"lstmtext-lm-s{a.seed}.ckpt"
    if a.only in ("both", "lstmtext"):
        extra = [
            "--train",
            data / "train.txt",
            "--dev",
            data / "valid.txt",
            "--seed",
            str(a.seed),
            *[f"--set={kv}" for kv in ["lm.bidirectional=false", *a.set]],  # a forward LM, as the peer is
        ]
        cmd = peers.lstmtext_train_args("lm", a.recipe, ckpt, a.budget, extra)
        sides.append(("lstmtext", cmd, peers.lstmtext_env(a.threads), work / "lstmtext.train.log", None, {}))
    runs = peers.run_sides(sides, a.parallel)
    print(json.dumps(runs), flush=True)
    test = data / "test.txt"
    r: dict = {
        "runs": runs,
        "budget": a.budget,
        "threads": a.threads,
        "parallel": a.parallel,
        "test_file_words": file_words(test),
    }
    if a.only in ("both", "peer"):
        r["peer"] = parse_peer_log(work / "peer.train.log")
        r["peer"]["torch"] = peers.version(py, "torch")
        r["peer"]["examples_files"] = str(peer_dir)
    if a.only in ("both", "lstmtext"):
        m = peers.lstmtext_json("evaluate", ckpt, test, "--format", "json", threads=a.threads)
        info, minutes, tok_s = peers.lstmtext_cost(ckpt, a.threads)
        words_per_s = round(tok_s * m["words"] / m["pieces"]) if tok_s and m.get("pieces") else None
        r["lstmtext"] = {k: m.get(k) for k in ("ppl_word", "ppl_piece", "bpc", "words", "pieces")}
        r["lstmtext"].update(train_min=minutes, pieces_per_s=tok_s, words_per_s=words_per_s, dev=info.get("metrics"))
        if m.get("words") != r["test_file_words"]:
            print(f"warning: lstmtext counts {m.get('words')} words, the peer {r['test_file_words']}", file=sys.stderr)
    (work / "result.json").write_text(json.dumps(r, indent=2) + "\n")
    print(json.dumps(r, indent=2), flush=True)
    report(a, r)


def report(a, r: dict) -> None:
    if "peer" not in r or "lstmtext" not in r:
        return
    p, lt = r["peer"], r["lstmtext"]
    notes = [a.note, "in parallel, each on its own threads" if a.parallel else ""]
    if p["test_ppl"] is None:
        notes.append("the peer produced no test score")
    elif p["model_mid_epoch"]:
        notes.append("the peer's budget ended inside its first epoch: its model as it stood then")
    lab = peers.label(
        f"word_language_model vs lstmtext lm ({a.recipe})",
        a.budget,
        ISSUE_BUDGET,
        a.threads,
        "; ".join(x for x in notes if x),
    )
    dataset = f"WikiText-2 test ({r['test_file_words']} words incl. one <eos> per line)" + (
        " (quick subset)" if a.quick else ""
    )
    peer_min = round(r["runs"]["peer"]["train_s"] / 60, 1)
    rows = [
        peers.Row(
            "word-lm-ppl", lab, dataset,
            f"test perplexity per word (peer: {p['epochs_done']} epochs, its own test ppl)",
            p["test_ppl"], round(lt["ppl_word"], 2),
            peer_min, lt["train_min"], p["words_per_s"], lt["pieces_per_s"], higher_is_better=False,
        ),
        peers.Row(
            "word-lm-train-speed", lab, "WikiText-2 train", "training words/s (lstmtext: pieces/s × words/piece)",
            p["words_per_s"], lt["words_per_s"],
        ),
    ]  # fmt: skip
    peers.record_side_by_side(a, rows, {"result": r})


if __name__ == "__main__":
    main()
