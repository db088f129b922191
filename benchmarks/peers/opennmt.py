"""Eole (OpenNMT-py's successor) LSTM seq2seq beside lstmtext's Multi30k recipe, de→en, same budget and threads.

    python benchmarks/peers/opennmt.py                          # 60 min each, 1 thread
    python benchmarks/peers/opennmt.py --quick --budget 90s     # smoke test on subsets, prints, no rows

Why Eole: OpenNMT-py 3.5.1 (its last release) pins torch<2.3, which this setup cannot install beside a CPU
torch 2.13; Eole 0.6.4 accepts torch 2.13 as it is. Its CLI imports aiohttp (a tool's import), which its
requirements omit: the venv gets it too.

Peer: Eole's own defaults for its `rnn` architecture (2-layer LSTM, 512 units, 512-dim embeddings, Luong
"general" global attention with input feeding, dropout 0.3, SGD at learning rate 1, batches of 64 sentences)
with a bidirectional encoder (`brnn`, OpenNMT's usual choice for this baseline; lstmtext's encoder is a BiLSTM
too), on a joint SentencePiece BPE of the same size as lstmtext's recipe (8,000), trained here on train.de +
train.en. Two settings are not defaults: bucket_size = the training set's size (the default 262,144-example
bucket makes it cycle Multi30k nine times before the first step) and num_workers 0 (data workers would be
threads beyond --threads). `eole train` is stopped by Ctrl-C at the budget; the newest saved step (saved and
validated every --save-every steps, time inside the budget) is the model. lstmtext: `lstmtext train translate
--recipe multi30k --max-time BUDGET`.
Both translate test_2016_flickr.de with beam 5 as a user runs them (`eole predict ... -output FILE`, `lstmtext
translate --beam 5`), best of 3, alternated; sacreBLEU is computed here on both outputs the way lstmtext's
evaluate computes it (BLEU(force=True), cased, detokenized output against the raw references).
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
SPLITS = {"train": "train", "val": "val", "test": "test_2016_flickr"}


def prepare(a, work: Path) -> Path:
    """DIR/{train,val,test}.{de,en} (subsets with --quick)."""
    src = Path(a.data_dir) / "multi30k"
    d = work / "data"
    d.mkdir(parents=True, exist_ok=True)
    limits = {"train": 3000, "val": 200, "test": 200} if a.quick else {}
    for split, name in SPLITS.items():
        for lang in ("de", "en"):
            lines = (src / f"{name}.{lang}").read_text(encoding="utf-8").splitlines()[: limits.get(split)]
            (d / f"{split}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return d


SPM = """import sys, sentencepiece as spm
spm.SentencePieceTrainer.train(input=sys.argv[1], model_prefix=sys.argv[2], vocab_size=int(sys.argv[3]),
    model_type="bpe", character_coverage=1.0, minloglevel=2)"""


def eole_config(a, work: Path, data: Path, pairs: int) -> Path:
    """The YAML config (written as JSON, a subset of YAML)."""
    spm = str(work / "spm.model")
    cfg = {
        "seed": a.seed,
        "save_data": str(work / "run"),
        "overwrite": True,
        "src_vocab": str(work / "run" / "vocab.shared"),
        "share_vocab": True,
        "transforms": ["sentencepiece"],
        "transforms_configs": {"sentencepiece": {"src_subword_model": spm, "tgt_subword_model": spm}},
        "data": {
            "corpus_1": {"path_src": str(data / "train.de"), "path_tgt": str(data / "train.en")},
            "valid": {"path_src": str(data / "val.de"), "path_tgt": str(data / "val.en")},
        },
        "model": {"architecture": "rnn", "encoder": {"encoder_type": "brnn"}},
        "training": {
            "model_path": str(work / "run" / "model"),
            "train_steps": 1000000,
            "valid_steps": a.save_every,
            "save_checkpoint_steps": a.save_every,
            "keep_checkpoint": 3,
            "bucket_size": pairs,
            "num_workers": 0,
        },
    }
    path = work / "config.yaml"
    path.write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
    return path


def newest_step(model_dir: Path) -> Path | None:
    """The newest step_N directory that was saved whole (vocab.json is written last)."""
    steps = [p for p in model_dir.glob("step_*") if (p / "vocab.json").exists()]
    return max(steps, key=lambda p: int(p.name.split("_")[1]), default=None)


def parse_eole_log(log: Path) -> dict:
    text = log.read_text(encoding="utf-8", errors="replace")
    tok = [float(x) for x in re.findall(r"\s(\d+)/\s*\d+ tok/s", text)]
    tgt_tok = [float(x) for x in re.findall(r"\s\d+/\s*(\d+) tok/s", text)]
    valid = re.findall(r"Validation perplexity: ([\d.]+)", text)
    return {
        "src_tokens_per_s": round(statistics.median(tok)) if tok else None,
        "tgt_tokens_per_s": round(statistics.median(tgt_tok)) if tgt_tok else None,
        "valid_ppl": [float(v) for v in valid],
    }


def bleu(hyps: list[str], refs: list[str]) -> dict:
    """As lstmtext.tasks.translate.evaluate scores its own translations."""
    from sacrebleu.metrics import BLEU

    metric = BLEU(force=True)
    score = metric.corpus_score(hyps, [refs])
    return {"bleu": round(score.score, 2), "detail": str(score), "signature": str(metric.get_signature())}


def translate_both(a, py: Path | None, step: Path | None, ckpt: Path | None, data: Path, work: Path) -> dict:
    """Beam-5 translations of the test source by each side, best of 3 end to end (alternated) at each of
    --speed-threads, and their BLEU; each side's row is its best thread count."""
    src, refs = data / "test.de", (data / "test.en").read_text(encoding="utf-8").splitlines()
    cmds = {}
    for n in peers.thread_counts(a):
        if step:
            out = work / f"peer.test.{n}.en"
            cmd = [py, "-m", "eole.bin.main", "predict", "-model_path", step, "-src", src, "-output", out]
            cmds[("peer", n)] = ([*cmd, "-beam_size", "5"], peers.thread_env(n), None, out)
        if ckpt:
            cmd = [sys.executable, "-m", "lstmtext", "translate", "-m", ckpt, "--beam", "5", src]
            cmds[("lstmtext", n)] = (cmd, peers.lstmtext_env(n), None, None)
    best, outputs = peers.time_sides(cmds)
    res = {}
    for side, b in best.items():
        hyps = outputs[side].split("\n")[: len(refs)]
        assert len(hyps) == len(refs), f"{side}: {len(hyps)} lines for {len(refs)} sentences"
        res[side] = {**bleu(hyps, refs), **b, "sentences_per_s": round(len(refs) / b["best_s"], 2)}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    peers.add_common_args(ap, ISSUE_BUDGET)
    ap.add_argument("--eole", default="eole==0.6.4", help="pip requirement for Eole (default eole==0.6.4)")
    ap.add_argument("--save-every", type=int, default=250, help="Eole's valid_steps and save_checkpoint_steps")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--speed-threads",
        help="thread counts to time translating at, comma-separated (e.g. 1,2); each side's best is its row "
        "(default: --threads)",
    )
    ap.add_argument(
        "--no-train", action="store_true", help="score and time the models an earlier run left in the work dir"
    )
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="lstmtext recipe override")
    a = ap.parse_args()
    work = Path(a.work_dir) / "opennmt" / ("quick" if a.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    data = prepare(a, work)
    pairs = len((data / "train.de").read_text(encoding="utf-8").splitlines())
    budget_s = peers.seconds(a.budget)
    sides, py, ckpt = [], None, None
    if a.no_train:  # score and time what an earlier run left here; its models stay as they are
        py = (
            peers.venv(Path(a.work_dir), "venv-eole", [peers.TORCH, a.eole, "aiohttp"])
            if a.only != "lstmtext"
            else None
        )
        ckpt = work / f"lstmtext-translate-s{a.seed}.ckpt" if a.only != "peer" else None
        r = json.loads((work / "result.json").read_text())
        step = Path(r["peer_train"]["model"]) if py and r.get("peer_train", {}).get("model") else None
        r["test"] = translate_both(a, py, step, ckpt, data, work)
        (work / "result.json").write_text(json.dumps(r, indent=2) + "\n")
        report(a, r)
        return
    if a.only in ("both", "peer"):
        py = peers.venv(Path(a.work_dir), "venv-eole", [peers.TORCH, a.eole, "aiohttp"])
        env = peers.thread_env(a.threads)
        vocab = 2000 if a.quick else 8000
        peers.run(
            [py, "-c", SPM, f"{data / 'train.de'},{data / 'train.en'}", work / "spm", vocab], env, work / "spm.log"
        )
        cfg = eole_config(a, work, data, pairs)
        peers.run(
            [py, "-m", "eole.bin.main", "build_vocab", "-config", cfg, "-n_sample", "-1"], env, work / "vocab.log"
        )
        for old in (work / "run" / "model").glob("step_*"):
            for f in old.iterdir():
                f.unlink()
            old.rmdir()
        cmd = [py, "-m", "eole.bin.main", "train", "-config", cfg]
        sides.append(("peer", cmd, env, work / "peer.train.log", budget_s, {"grace": 30}))
    if a.only in ("both", "lstmtext"):
        ckpt = work / f"lstmtext-translate-s{a.seed}.ckpt"
        extra = [
            "--train",
            data / "train",
            "--dev",
            data / "val",
            "--seed",
            str(a.seed),
            *[f"--set={kv}" for kv in a.set],
        ]
        cmd = peers.lstmtext_train_args("translate", "multi30k", ckpt, a.budget, extra)
        sides.append(("lstmtext", cmd, peers.lstmtext_env(a.threads), work / "lstmtext.train.log", None, {}))
    runs = peers.run_sides(sides, a.parallel)
    print(json.dumps(runs), flush=True)
    r: dict = {"runs": runs, "budget": a.budget, "threads": a.threads, "parallel": a.parallel}
    step = None
    if py:
        step = newest_step(work / "run" / "model")
        r["peer_train"] = {
            **parse_eole_log(work / "peer.train.log"),
            "model": str(step) if step else None,
            "eole": peers.version(py, "eole"),
            "torch": peers.version(py, "torch"),
        }
    if ckpt:
        info, minutes, tok_s = peers.lstmtext_cost(ckpt, a.threads)
        ev = peers.lstmtext_json("evaluate", ckpt, data / "test", "--format", "json", threads=a.threads)
        r["lstmtext_train"] = {
            "train_min": minutes,
            "pieces_per_s": tok_s,
            "dev": info.get("metrics"),
            "evaluate_bleu": ev.get("bleu"),
            "evaluate_beam": ev.get("beam"),
        }
    r["test"] = translate_both(a, py, step, ckpt, data, work)
    (work / "result.json").write_text(json.dumps(r, indent=2) + "\n")
    print(json.dumps(r, indent=2), flush=True)
    report(a, r)


def report(a, r: dict) -> None:
    t = r["test"]
    if "peer" not in t or "lstmtext" not in t:
        return
    note = "; ".join(x for x in (a.note, "in parallel, each on its own threads" if a.parallel else "") if x)
    lab = peers.label("eole-rnn vs lstmtext translate (multi30k)", a.budget, ISSUE_BUDGET, a.threads, note)
    pt, lt = r["peer_train"], r["lstmtext_train"]
    ds = "Multi30k de→en test_2016_flickr" + (" (quick subset)" if a.quick else "") + f", eole {pt['eole']}"
    peer_min = round(r["runs"]["peer"]["train_s"] / 60, 1)
    speed = peers.speed_metric(a, "sentences/s end to end, beam 5 (process start to last output", t, "eole")
    rows = [
        peers.Row(
            "eole-rnn-bleu", lab, ds, "sacreBLEU, beam 5 (same sacrebleu call on both outputs)",
            t["peer"]["bleu"], t["lstmtext"]["bleu"],
            peer_min, lt["train_min"], pt["src_tokens_per_s"], lt["pieces_per_s"],
        ),
        peers.Row("eole-rnn-speed", lab, ds, speed, t["peer"]["sentences_per_s"], t["lstmtext"]["sentences_per_s"]),
    ]  # fmt: skip
    peers.record_side_by_side(a, rows, {"result": r})


if __name__ == "__main__":
    main()
