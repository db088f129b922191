"""Check that two checkouts of lstmtext behave the same: same weights from the same seeded training, and
byte-identical outputs from every inference verb on the same checkpoints.

    python benchmarks/check_unchanged.py OLD_DIR NEW_DIR [--work DIR] [--epochs N] [--set KEY=VALUE ...]

For example, to compare the commit before a change with the working tree:

    git worktree add --detach /tmp/lstmtext-old COMMIT
    python benchmarks/check_unchanged.py /tmp/lstmtext-old . --work /tmp/check

OLD_DIR and NEW_DIR are repository roots (each has lstmtext/ and data/); each side runs as
``python -m lstmtext`` with PYTHONPATH set to its root, OMP_NUM_THREADS=1 and its own LSTMTEXT_HOME.

1. train: each side trains one tiny model per task on its embedded sample with --seed 3 (--epochs 2 unless
   --epochs says otherwise; --set adds recipe values, e.g. --epochs 10 --set train.lr=0.01 gives models that
   tag entities and translate, so that more of each output format is exercised); the weights must be
   bitwise equal tensor by tensor, and so must the metadata (recipe, labels, metrics, tokenizer) apart from the
   provenance fields a run cannot repeat (creation time, train seconds, sample paths), the metrics log apart
   from its time and tokens_per_s, and the resume file's tensors.
2. inference: every command runs as old code on the old checkpoint (the reference), new code on the old
   checkpoint, old code on the new checkpoint and new code on the new checkpoint; stdout and the exit status
   must match the reference byte for byte (for the table formats, stderr is the output and is compared).

One line per check: ``OK`` or ``DIFF`` with the first differing line. The exit status is 1 when any check
differs. With --work, the reference outputs stay in WORK/out/ for reading.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

TASKS = ["sentiment", "ner", "lm", "translate"]
TRAIN = ["--seed", "3", "-q"]
TINY = ["encoder.embed_dim=32", "encoder.hidden_dim=32", "tokenizer.vocab_size=400", "train.batch_tokens=2000"]
# provenance fields that differ between any two runs, whatever the code
VOLATILE_PROVENANCE = {"created", "train_seconds"}
VOLATILE_METRICS = {"time", "tokens_per_s"}

failures = 0


def report(ok: bool, name: str, detail: str = "") -> None:
    global failures
    failures += not ok
    print(f"{'OK  ' if ok else 'DIFF'} {name}{'  ' + detail if detail else ''}", flush=True)


def run(code: Path, args: list[str], cwd: Path, home: Path, stdin: bytes | None = None):
    env = dict(os.environ, PYTHONPATH=str(code), OMP_NUM_THREADS="1", LSTMTEXT_HOME=str(home), COLUMNS="200")
    env.pop("LSTMTEXT_DATA", None)
    return subprocess.run(
        [sys.executable, "-m", "lstmtext", *args], cwd=cwd, env=env, input=stdin, capture_output=True, timeout=900
    )


def first_diff(a: bytes, b: bytes) -> str:
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb), 1):
        if x != y:
            return f"line {i}: {x[:200]!r} != {y[:200]!r}"
    if len(la) != len(lb):
        return f"{len(la)} lines != {len(lb)} lines"
    return "line endings differ"


def header(path: Path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def meta(path: Path) -> dict:
    return json.loads(header(path)["__metadata__"]["lstmtext"])


def json_diff(a, b, where: str = "") -> str:
    """The first path at which two JSON values differ, or ''."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{where}.{k}: only in {'new' if k in b else 'old'}"
            d = json_diff(a[k], b[k], f"{where}.{k}")
            if d:
                return d
        return ""
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := json_diff(x, y, f"{where}[{i}]"))), "")
    return "" if a == b and type(a) is type(b) else f"{where}: {json.dumps(a)[:120]} != {json.dumps(b)[:120]}"


def tensor_diff(a: Path, b: Path) -> str:
    from safetensors.torch import load_file

    ta, tb = load_file(str(a)), load_file(str(b))
    if set(ta) != set(tb):
        return f"tensor names differ: {sorted(set(ta) ^ set(tb))[:5]}"
    for k in sorted(ta):
        x, y = ta[k], tb[k]
        if x.dtype != y.dtype or x.shape != y.shape:
            return f"{k}: {x.dtype}{tuple(x.shape)} != {y.dtype}{tuple(y.shape)}"
        if x.contiguous().view(-1).view(dtype=__import__("torch").uint8).tolist() != (
            y.contiguous().view(-1).view(dtype=__import__("torch").uint8).tolist()
        ):
            return f"{k}: values differ (max abs {float((x.double() - y.double()).abs().max()):.3g})"
    return ""


def normal_meta(m: dict) -> dict:
    m = json.loads(json.dumps(m))
    prov = m.get("provenance", {})
    for k in VOLATILE_PROVENANCE:
        prov.pop(k, None)
    for d in prov.get("data", []):
        if isinstance(d, dict) and "source" in d:
            d["source"] = Path(d["source"]).name  # each side trains on the sample in its own checkout
    return m


def compare_training(task: str, old: Path, new: Path) -> None:
    a, b = old / f"{task}.ckpt", new / f"{task}.ckpt"
    d = tensor_diff(a, b)
    report(not d, f"train {task}: checkpoint weights bitwise equal", d)
    d = json_diff(normal_meta(meta(a)), normal_meta(meta(b)))
    report(not d, f"train {task}: checkpoint metadata equal (ignoring provenance created/train_seconds/paths)", d)
    la, lb = ((p / f"{task}.metrics.jsonl").read_text().splitlines() for p in (old, new))
    strip = [[{k: v for k, v in json.loads(l).items() if k not in VOLATILE_METRICS} for l in ls] for ls in (la, lb)]
    d = json_diff(*strip)
    report(not d, f"train {task}: metrics.jsonl equal (ignoring time, tokens_per_s)", d)
    ra, rb = old / f"{task}.resume.safetensors", new / f"{task}.resume.safetensors"
    if ra.exists() and rb.exists():
        d = tensor_diff(ra, rb)
        report(not d, f"train {task}: resume file tensors (model and optimizer) bitwise equal", d)
    else:
        report(ra.exists() == rb.exists(), f"train {task}: resume file written by both or neither")


def inputs(data: Path, work: Path) -> dict[str, Path]:
    """Inference inputs derived from the sample's dev sets, the same bytes for every run."""
    inp = work / "inputs"
    inp.mkdir(exist_ok=True)
    dev = [l.split("\t") for l in (data / "sentiment/dev.tsv").read_text().splitlines()[1:]]
    (inp / "sentiment.txt").write_text("".join(f"{t}\n" for t, _ in dev[:60]) + "\n")
    sents, words = [], []
    for line in (data / "ner/dev.conll").read_text().splitlines():
        if not line.strip():
            if words:
                sents.append(" ".join(words))
            words = []
        elif not line.startswith("-DOCSTART-"):
            words.append(line.split()[0])
    raw = (
        "Angela Merkel met Emmanuel Macron in Paris on Monday, said Reuters.\n\nThe U.N. (in New York) didn't agree.\n"
    )
    (inp / "ner.txt").write_text("\n".join(sents[:40]) + "\n" + raw)
    src = [l.split("\t")[0] for l in (data / "translate/dev.tsv").read_text().splitlines()[1:]]
    (inp / "translate.txt").write_text("\n".join(src[:30]) + "\n\n" + "\n".join(src[30:40]) + "\n")
    (inp / "prompts.txt").write_text("The river\n= Penmel =\n\nIt is\n")
    return {
        "sentiment": inp / "sentiment.txt",
        "reviews": data / "sentiment/reviews.txt",
        "ner": inp / "ner.txt",
        "translate": inp / "translate.txt",
        "prompts": inp / "prompts.txt",
    }


def commands(data: Path, inp: dict[str, Path]) -> list[tuple[str, list[str], Path | None, str]]:
    """(name, argv, stdin file, compared stream) for every inference check; 'CKPT/' prefixes a checkpoint."""
    cmds = []
    for fmt in ("text", "jsonl"):
        cmds.append(
            (f"predict sentiment -f {fmt} reviews.txt", ["predict", "sentiment.ckpt", "-f", fmt], inp["reviews"])
        )
        cmds.append(
            (f"predict sentiment -f {fmt} dev texts", ["predict", "-m", "sentiment.ckpt", "-f", fmt], inp["sentiment"])
        )
    cmds.append(
        (
            "predict sentiment --precision int8 -f jsonl",
            ["predict", "sentiment.ckpt", "-f", "jsonl", "--precision", "int8"],
            inp["reviews"],
        )
    )
    for fmt in ("conll", "jsonl", "inline"):
        cmds.append((f"tag -f {fmt}", ["tag", "-m", "ner.ckpt", "-f", fmt], inp["ner"]))
        cmds.append((f"predict ner -f {fmt}", ["predict", "ner.ckpt", "-f", fmt], inp["ner"]))
    cmds.append(("tag -f jsonl --pretokenized", ["tag", "-m", "ner.ckpt", "-f", "jsonl", "--pretokenized"], inp["ner"]))
    cmds.append(("tag -f conll --context", ["tag", "-m", "ner.ckpt", "-f", "conll", "--context"], inp["ner"]))
    cmds.append(
        ("tag -f inline --precision int8", ["tag", "-m", "ner.ckpt", "-f", "inline", "--precision", "int8"], inp["ner"])
    )
    cmds.append(("tag FILE -f conll", ["tag", str(inp["ner"]), "-m", "ner.ckpt"], None))
    for beam in ("1", "4"):
        for fmt in ("text", "jsonl"):
            cmds.append(
                (
                    f"translate --beam {beam} -f {fmt}",
                    ["translate", "-m", "translate.ckpt", "-b", beam, "-f", fmt],
                    inp["translate"],
                )
            )
    cmds.append(
        (
            "translate --beam 4 --n-best 3 -f jsonl",
            ["translate", "-m", "translate.ckpt", "-b", "4", "-n", "3", "-f", "jsonl"],
            inp["translate"],
        )
    )
    cmds.append(
        (
            "translate (model's beam) --batch-size 7",
            ["translate", "-m", "translate.ckpt", "--batch-size", "7"],
            inp["translate"],
        )
    )
    cmds.append(("predict translate", ["predict", "translate.ckpt"], inp["translate"]))
    gen = ["generate", "-m", "lm.ckpt", "--seed", "1", "--max-tokens", "30"]
    for prompt in ("The river", "It is a", "= Penmel ="):
        cmds.append((f"generate --seed 1 -p {prompt!r}", [*gen, "-p", prompt], None))
    cmds.append(("generate --seed 1 (stdin prompts)", gen, inp["prompts"]))
    cmds.append(
        (
            "generate --seed 1 --num-samples 3 --top-k 20",
            [*gen, "-p", "The", "--num-samples", "3", "--top-k", "20"],
            None,
        )
    )
    cmds.append(("generate --temperature 0", [*gen, "-p", "The river", "-t", "0"], None))
    cmds.append(("generate --seed 1 --top-p 1 --stop ' .'", [*gen, "-p", "It", "--top-p", "1", "--stop", " ."], None))
    cmds.append(("predict lm", ["predict", "lm.ckpt"], inp["prompts"]))
    dev = {
        "sentiment": "sentiment/dev.tsv",
        "ner": "ner/dev.conll",
        "lm": "lm/dev.txt",
        "translate": "translate/dev.tsv",
    }
    for task in TASKS:
        cmds.append(
            (
                f"evaluate {task} --format json",
                ["evaluate", f"{task}.ckpt", str(data / dev[task]), "--format", "json", "--device", "cpu"],
                None,
            )
        )
    cmds.append(
        (
            "evaluate ner --format json --precision int8",
            ["evaluate", "ner.ckpt", str(data / dev["ner"]), "-f", "json", "--precision", "int8"],
            None,
        )
    )
    for task in TASKS:
        cmds.append((f"info {task} --format json", ["info", f"{task}.ckpt", "--format", "json"], None))
    out = [(n, a, s, "stdout") for n, a, s in cmds]
    out.append(
        (
            "evaluate sentiment (table, stderr)",
            ["evaluate", "sentiment.ckpt", str(data / dev["sentiment"]), "--device", "cpu"],
            None,
            "stderr",
        )
    )
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("old_dir", type=Path)
    p.add_argument("new_dir", type=Path)
    p.add_argument("--work", type=Path, help="Scratch folder (kept). Default: a temporary one, removed at the end.")
    p.add_argument("--epochs", type=int, default=2, help="Training epochs per task (default 2).")
    p.add_argument("--set", dest="sets", action="append", default=[], help="Extra recipe value for every training.")
    a = p.parse_args()
    old, new = a.old_dir.resolve(), a.new_dir.resolve()
    work = a.work.resolve() if a.work else Path(tempfile.mkdtemp(prefix="check_unchanged."))
    work.mkdir(parents=True, exist_ok=True)
    code = {"old": old, "new": new}
    ckpts = {side: work / f"ckpt-{side}" for side in code}
    try:
        for side, root in code.items():
            ckpts[side].mkdir(exist_ok=True)
            for task in TASKS:
                sets = [x for s in [*TINY, *a.sets] for x in ("--set", s)]
                args = ["train", task, "--epochs", str(a.epochs), *TRAIN, *sets]
                args += ["-o", str(ckpts[side] / f"{task}.ckpt"), "--force"]
                r = run(root, args, ckpts[side], work / f"home-{side}")
                report(r.returncode == 0, f"train {task} with {side} code exits 0", r.stderr.decode()[-300:].strip())
        for task in TASKS:
            compare_training(task, ckpts["old"], ckpts["new"])
        inp = inputs(old / "data", work)
        combos = [("new", "old"), ("old", "new"), ("new", "new")]
        (work / "out").mkdir(exist_ok=True)
        for name, args, stdin, stream in commands(old / "data", inp):
            data = stdin.read_bytes() if stdin else None
            res = {}
            for c, k in [("old", "old"), *combos]:
                r = run(code[c], args, ckpts[k], work / f"home-{c}", data)
                res[c, k] = (r.returncode, r.stdout if stream == "stdout" else r.stderr, r.stderr)
            ref = res["old", "old"]
            slug = "".join(ch if ch.isalnum() else "_" for ch in name).strip("_")
            (work / "out" / f"{slug}.{stream}").write_bytes(ref[1])
            if ref[0] != 0:
                print(f"NOTE {name}: the reference run exits {ref[0]}: {ref[2].decode()[-200:].strip()}")
            for c, k in combos:
                if name.startswith("info") and c == k == "new":
                    continue  # provenance differs between two trainings; the metadata check covers it
                # info on the new checkpoint: compared with the same checkpoint read by the new code
                ref_ = res["new", "new"] if name.startswith("info") and (c, k) == ("old", "new") else ref
                got = res[c, k]
                label = f"{name}  [{c} code, {k} ckpt]"
                if got[0] != ref_[0]:
                    report(False, label, f"exit {got[0]} != {ref_[0]}: {got[2].decode()[-200:].strip()}")
                elif got[1] != ref_[1]:
                    report(False, label, first_diff(ref_[1], got[1]))
                else:
                    report(True, label, f"({len(got[1])} bytes)")
        print(f"{'ALL OK' if not failures else f'{failures} DIFF'}; work folder: {work}")
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
