"""Every refusal clean: one table of bad inputs, each ending in exit 2 and one line ``lstmtext: error: ...``
naming what was wrong and what is allowed. Crafted checkpoints are written by hand (an 8-byte length, a JSON
header, the tensor bytes), the models they start from are built in memory, untrained: what is checked is the
refusal, not the model."""

from __future__ import annotations

import base64
import json
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import REPO, assert_usage_error, cli_env, run_cli

from lstmtext import checkpoint as ckpt
from lstmtext.config import resolve_recipe
from lstmtext.data import sample_path
from lstmtext.tasks import get_task
from lstmtext.tokenizer import Tokenizer

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where CUDA is missing")


def make_model(task: str, path: Path, *overrides: str, init_seed: int = 0, tamper=None) -> Path:
    """An untrained tiny model of ``task`` saved as a checkpoint; ``tamper(state, meta)`` edits it first."""
    mod = get_task(task)
    recipe = resolve_recipe(
        task, None, ["encoder.embed_dim=16", "encoder.hidden_dim=16", "tokenizer.vocab_size=400", *overrides]
    )
    examples = mod.read(str(sample_path(task, "train")), recipe.options, "train")[:300]
    tok = Tokenizer.train(mod.tokenizer_texts(examples), 400)
    labels = mod.make_labels(examples)
    torch.manual_seed(0)
    state = mod.build_model(recipe, len(tok), labels).state_dict()
    meta = {
        "task": task,
        "recipe": recipe.to_dict(),
        "labels": labels,
        "metrics": {},
        "provenance": {"seed": 1, "init_seed": init_seed or 1},
    }
    if tamper:
        tamper(state, meta)
    ckpt.save(path, state, meta, tok.model_proto)
    return path


def write_raw(path: Path, header, body: bytes = b"") -> Path:
    """A safetensors file written by hand: ``header`` (JSON-able, or bytes taken as they are) and ``body``."""
    data = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(data)) + data + body)
    return path


def lstm_meta(**changes) -> dict:
    meta = {"format": "lstmtext", "format_version": 1, "task": "sentiment", "recipe": {}, "tokenizer": ""}
    meta.update(changes)
    return {k: v for k, v in meta.items() if v is not None}


def crafted(tensors: dict | None = None, body: bytes = b"\0" * 8, **meta_changes):
    """A setup writing a one-tensor checkpoint with the given tensor entries and metadata changes."""
    entries = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}} if tensors is None else tensors

    def setup(c):
        header = {"__metadata__": {"lstmtext": json.dumps(lstm_meta(**meta_changes))}, **entries}
        return ["info", write_raw(c.tmp / "bad.ckpt", header, body)], None

    return setup


def raw(header: bytes):
    def setup(c):
        return ["info", write_raw(c.tmp / "bad.ckpt", header)], None

    return setup


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def model_with(task: str, *overrides: str, tamper=None, command=("predict", "-m")):
    def setup(c):
        path = make_model(task, c.tmp / f"{task}.ckpt", *overrides, tamper=tamper)
        return [*command, path], "a line\n"

    return setup


def nan_weight(state, meta):
    state["encoder.fwd.weight_hh_l0"][0, 0] = float("nan")


def inf_weight(state, meta):
    state["head.mlp.3.weight"][0, 0] = float("-inf")


def claim_wide(state, meta):
    meta["recipe"]["encoder"]["hidden_dim"] = 20000


def resume_state(drop: str = "", claim=None):
    """A resume file lacking ``drop`` (a meta key or a tensor), or with ``claim`` applied to its recipe, beside
    the output of ``train --resume``."""

    def setup(c):
        out = c.tmp / "run.ckpt"

        def tamper(state, meta):
            weights = {f"model.{k}": state.pop(k) for k in list(state)}
            state.update(weights, **{"rng.torch": torch.zeros(4, dtype=torch.uint8)})
            meta.update(kind="resume", optimizer={"param_groups": []}, loop={"step": 1})
            meta.pop(drop, None)
            state.pop(drop, None)
            if claim:
                claim(state, meta)

        make_model("sentiment", c.tmp / "run.resume.safetensors", tamper=tamper)
        return ["train", "sentiment", "-q", "-o", out, "--resume"], None

    return setup


def with_model(task: str, *args: str, input: str | None = "x\n"):
    """``args`` after the command, with {m} standing for a tiny model of ``task``."""

    def setup(c):
        path = c.models[task]
        return [a.format(m=path, tmp=c.tmp) for a in args], input

    return setup


def init_from_wide(c):
    src = make_model("lm", c.tmp / "lm.ckpt", tamper=claim_wide)
    data = c.tmp / "train.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"line {i} good\t{i % 2}\n" for i in range(40)))
    return ["train", "sentiment", "-q", "--init-from", src, "-o", c.tmp / "s.ckpt", "--set", f"data.train={data}"], None


def average_different_starts(c):
    a = make_model("sentiment", c.tmp / "a.ckpt", init_seed=3)
    b = make_model("sentiment", c.tmp / "b.ckpt", init_seed=4)
    return ["average", a, b, "-o", c.tmp / "soup.ckpt"], None


def file_input(text: str, *args: str):
    """A command on a file holding ``text``; {f} stands for the file, {m} for a sentiment model."""

    def setup(c):
        f = c.tmp / "input.txt"
        f.write_bytes(text.encode())
        names = {"m": c.models["sentiment"], "lm": c.models["lm"], "tr": c.models["translate"], "ner": c.models["ner"]}
        return [a.format(f=f, **names) for a in args], None

    return setup


def train_file(name: str, text: str, encoding: str = "utf-8"):
    def setup(c):
        f = c.tmp / name
        f.write_bytes(text.encode(encoding))
        return ["train", "sentiment", "-o", c.tmp / "out.ckpt", "--set", f"data.train={f}"], None

    return setup


OFFSETS_OUT = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 800]}}
OVERLAP = {
    "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
}


def dev_in_train(task: str, link: bool = False):
    """train with the task's sample as training data and as --dev (through a symlink with ``link``)."""

    def setup(c):
        train = sample_path(task, "train")
        dev = train
        if link:
            dev = c.tmp / f"again{train.suffix}"
            dev.symlink_to(train)
        return ["train", task, "-q", "-o", c.tmp / "out.ckpt", "--train", train, "--dev", dev], None

    return setup


# id, setup(c) -> (args, stdin), fragments of the one error line
ROWS = [
    # 1. malformed checkpoints
    ("header-not-object", raw(b"[1, 2, 3]"), ["not an lstmtext checkpoint"]),
    ("header-not-json", raw(b"{nope"), ["header is not valid JSON"]),
    ("header-deeply-nested", raw(nested(200_000)), ["header is not valid JSON"]),
    (
        "metadata-deeply-nested",
        raw(json.dumps({"__metadata__": {"lstmtext": "[" * 200_000}}).encode()),
        ["metadata is not valid JSON"],
    ),
    ("metadata-not-object", raw(json.dumps({"__metadata__": {"lstmtext": "[1]"}}).encode()), ["no lstmtext metadata"]),
    ("tensor-no-offsets", crafted({"w": {"dtype": "F32", "shape": [2]}}), ["'w'", "data_offsets"]),
    ("tensor-not-object", crafted({"w": [1, 2]}), ["'w'", "expected dtype, shape and data_offsets"]),
    (
        "tensor-dtype-type",
        crafted({"w": {"dtype": 5, "shape": [2], "data_offsets": [0, 8]}}),
        ["dtype '5'", "expected one of"],
    ),
    (
        "tensor-shape-type",
        crafted({"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}}),
        ["shape must be a list of non-negative integers"],
    ),
    (
        "tensor-shape-vs-bytes",
        crafted({"w": {"dtype": "F32", "shape": [100000, 100000], "data_offsets": [0, 8]}}),
        ["does not fit its 8 bytes"],
    ),
    (
        "tensor-offsets-type",
        crafted({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, "8"]}}),
        ["data_offsets must be two integers"],
    ),
    (
        "tensor-offsets-reversed",
        crafted({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}}),
        ["out of order"],
    ),
    ("tensor-offsets-out-of-range", crafted(OFFSETS_OUT), ["truncated", "'w'"]),
    ("tensors-overlap", crafted(OVERLAP, body=b"\0" * 12), ["'a' and 'b' overlap"]),
    ("metadata-no-task", crafted(task=None), ["names no task", "sentiment"]),
    ("metadata-unknown-task", crafted(task="poetry"), ["'poetry' is not one", "ner"]),
    ("metadata-no-recipe", crafted(recipe=None), ["its recipe must be a JSON object"]),
    ("tokenizer-not-base64", crafted(tokenizer="@@not base64@@"), ["tokenizer", "not valid base64"]),
    ("tokenizer-not-string", crafted(tokenizer=17), ["tokenizer", "not valid base64"]),
    ("format-newer", crafted(format_version=2), ["format version 2 is newer", "upgrade"]),
    ("format-version-type", crafted(format_version="1"), ["format version 1 is newer"]),
    ("resume-no-rng", resume_state("rng.torch"), ["'rng.torch'"]),
    ("resume-no-optimizer", resume_state("optimizer"), ["optimizer"]),
    ("resume-no-loop", resume_state("loop"), ["'loop'"]),
    (
        "resume-claims-wider",
        resume_state(claim=claim_wide),
        ["--resume state: weights do not fit", "(64, 16) in the file, (80000, 16) by its recipe"],
    ),
    ("weights-nan", model_with("sentiment", tamper=nan_weight), ["weight 'encoder.fwd.weight_hh_l0' has NaN"]),
    ("weights-inf", model_with("sentiment", tamper=inf_weight), ["weight 'head.mlp.3.weight' has infinite"]),
    (
        "recipe-claims-wider",
        model_with("sentiment", tamper=claim_wide),
        ["do not fit its own recipe", "is (64, 16) in the file, (80000, 16) by its recipe"],
    ),
    # 2. --init-from claiming a wider encoder than its weights
    ("init-from-claims-wider", init_from_wide, ["--init-from", "encoder weight", "drop the --set"]),
    # 3. --device cuda without CUDA
    *[
        (f"{cmd}-cuda", with_model(task, *pre, "{m}", *post, "--device", "cuda"), ["--device cuda"])
        for cmd, task, pre, post in [
            ("predict", "sentiment", ["predict", "-m"], []),
            ("evaluate", "sentiment", ["evaluate"], [str(sample_path("sentiment", "dev"))]),
            ("tag", "sentiment", ["tag", "-m"], []),
            ("generate", "lm", ["generate", "-m"], ["-p", "The"]),
            ("translate", "translate", ["translate", "-m"], []),
        ]
    ],
    # 4. generate
    *[
        (f"generate{opt}={v}", with_model("lm", "generate", "-m", "{m}", "-p", "The", opt, v), [f"{opt} ", want])
        for opt, v, want in [
            ("--temperature", "inf", "0 (greedy) or a number from 0.01 to 100"),
            ("--temperature", "nan", "0 (greedy)"),
            ("--temperature", "-1", "0 (greedy)"),
            ("--temperature", "1e-300", "0 (greedy)"),
            ("--top-p", "0", "(0, 1]"),
            ("--top-p", "1.5", "(0, 1]"),
            ("--top-p", "nan", "(0, 1]"),
            ("--top-k", "-1", "0 (off)"),
            ("--max-tokens", "0", "from 1 to 10,000"),
            ("--max-tokens", "1000000000", "from 1 to 10,000"),
            ("--num-samples", "1000000000", "from 1 to 1,000"),
            ("--num-samples", "0", "from 1 to 1,000"),
            ("--seed", str(2**64 + 1), "from 0 to 2**64 - 1"),
            ("--seed", "-1", "from 0 to 2**64 - 1"),
        ]
    ],
    # 5. translate
    (
        "translate-beam-huge",
        with_model("translate", "translate", "-m", "{m}", "--beam", "100000"),
        ["1 (greedy) to 64"],
    ),
    ("translate-beam-zero", with_model("translate", "translate", "-m", "{m}", "--beam", "0"), ["1 (greedy) to 64"]),
    (
        "translate-n-best-over-beam",
        with_model("translate", "translate", "-m", "{m}", "--beam", "2", "--n-best", "3"),
        ["--n-best 3", "--beam (2)"],
    ),
    ("translate-n-best-huge", with_model("translate", "translate", "-m", "{m}", "--n-best", "999"), ["1 to 64"]),
    ("translate-batch-zero", with_model("translate", "translate", "-m", "{m}", "--batch-size", "0"), ["at least 1"]),
    # 6. average
    (
        "average-output-folder",
        with_model("sentiment", "average", "{m}", "{m}", "-o", "{tmp}"),
        ["is a folder", "soup.ckpt"],
    ),
    ("average-different-starts", average_different_starts, ["init_seed 4", "init_seed 3", "same weights"]),
    # 8. NUL bytes in text, wherever text is read
    ("nul-predict-stdin", with_model("sentiment", "predict", "-m", "{m}", input="good\0film\n"), ["stdin line 1"]),
    ("nul-tag-file", file_input("ok\nbad\0\n", "tag", "-m", "{ner}", "{f}"), ["input.txt line 2", "NUL byte"]),
    ("nul-translate-file", file_input("a\0b\n", "translate", "-m", "{tr}", "{f}"), ["input.txt line 1", "NUL"]),
    ("nul-generate-stdin", with_model("lm", "generate", "-m", "{m}", input="The\0town\n"), ["stdin line 1", "NUL"]),
    ("nul-training-file", train_file("nul.tsv", "sentence\tlabel\ngood\0\t1\n"), ["nul.tsv line 2", "UTF-16"]),
    # 9. more of the same kind
    (
        "utf16-training-file",
        train_file("u16.tsv", "sentence\tlabel\ngood\t1\n", "utf-16-le"),
        ["u16.tsv line 1", "NUL byte at column 2", "UTF-16"],
    ),
    ("empty-evaluate-file", file_input("", "evaluate", "{m}", "{f}"), ["input.txt"]),
    ("binary-data-file", file_input("\x7fELF\0\0\0", "evaluate", "{lm}", "{f}"), ["input.txt line 1", "NUL"]),
    ("checkpoint-is-data-file", file_input("x", "predict", "-m", "{f}"), ["input.txt", "not an lstmtext checkpoint"]),
    # 10. dev data that the run also trains on (a final recipe's data.train holds the dev split; --dev names it)
    (
        "dev-in-train",
        dev_in_train("sentiment"),
        ["data.dev ", "is also training data", "leave it out of the training data (--train replaces"],
    ),
    ("dev-in-train-streamed", dev_in_train("lm"), ["data.dev ", "is also training data"]),
    ("dev-in-train-other-spelling", dev_in_train("ner", link=True), ["data.dev ", "is also training data"]),
]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return {
        "sentiment": make_model("sentiment", base / "s.ckpt"),
        "lm": make_model("lm", base / "lm.ckpt"),
        "translate": make_model("translate", base / "tr.ckpt", "translate.hidden_dim=16"),
        "ner": make_model("ner", base / "ner.ckpt"),
    }


def _param(row):
    return pytest.param(*row, id=row[0], marks=[NO_CUDA] if row[0].endswith("-cuda") else [])


@pytest.mark.parametrize("rid, setup, fragments", [_param(r) for r in ROWS])
def test_refusal(rid, setup, fragments, models, tmp_path):
    args, stdin = setup(SimpleNamespace(tmp=tmp_path, models=models))
    proc = run_cli(*args, input=stdin)
    assert_usage_error(proc, *fragments)


def test_refused_generation_prints_nothing(models):
    proc = run_cli("generate", "-m", models["lm"], "--temperature", "inf", input="The town\n")
    assert proc.stdout == ""
    assert_usage_error(proc, "--temperature inf")


def test_int8_quantizes_gru_models_too(tmp_path):
    from lstmtext.api import inference_precision, load

    path = make_model("sentiment", tmp_path / "gru.ckpt", "encoder.cell=gru")
    texts = ["a gorgeous, witty film", "dull", "fine"]
    p = load(path)
    want = [r["scores"] for r in p.predict(texts)]
    with inference_precision(p, "int8"):
        got = [r["scores"] for r in p.predict(texts)]
    assert type(p.model.encoder.fwd).__module__ == "torch.ao.nn.quantized.dynamic.modules.rnn"
    for w, g in zip(want, got):
        assert w.keys() == g.keys() and all(abs(w[k] - g[k]) < 0.02 for k in w)
    proc = run_cli("predict", "-m", path, "--precision", "int8", input="\n".join(texts) + "\n")
    assert proc.returncode == 0 and len(proc.stdout.splitlines()) == 3, proc.stderr


def test_a_long_prompt_is_read_from_its_last_pieces(models):
    from lstmtext.api import load
    from lstmtext.tasks.lm_generate import MAX_PROMPT_PIECES

    prompt = "the town river " * 3000
    p = load(models["lm"])
    assert len(p.tok.encode_one(prompt.strip())) > MAX_PROMPT_PIECES
    tail = p.tok.decode(p.tok.encode_one(prompt.strip())[-MAX_PROMPT_PIECES:])
    kw = dict(max_tokens=8, temperature=0, seed=1)
    assert (
        p.generate_text([prompt], **kw)[0][0][len(prompt.rstrip()) :]
        == (p.generate_text([tail], **kw)[0][0][len(tail.rstrip()) :])
    )
    proc = run_cli("generate", "-m", models["lm"], "--max-tokens", "3", "--seed", "1", input=prompt + "\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(prompt.rstrip()) and proc.stdout.count("\n") == 1
    assert f"generating from its last {MAX_PROMPT_PIECES}" in proc.stderr


def test_generate_into_a_closed_pipe_ends_quietly(models):
    """``lstmtext generate ... | head -1``: the reader goes away while samples still stream; exit 0, no error."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lstmtext", "generate", "-m", str(models["lm"]), "-p", "The"]
        + ["--num-samples", "400", "--max-tokens", "400", "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
        env=cli_env(),
    )
    first = proc.stdout.readline()
    proc.stdout.close()
    rc = proc.wait(timeout=120)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert first.startswith(b"The") and rc == 0 and err == "", (rc, err)


def test_checkpoint_fragments_match_what_read_meta_accepts(tmp_path):
    """The hand-written header format of this module is the real one: a well-formed file passes."""
    w = torch.arange(2.0).numpy().tobytes()
    header = {
        "__metadata__": {"lstmtext": json.dumps(lstm_meta(tokenizer=base64.b64encode(b"x").decode()))},
        "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
    }
    path = write_raw(tmp_path / "ok.ckpt", header, w)
    meta, state = ckpt.load(path)
    assert meta["task"] == "sentiment" and state["w"].tolist() == [0.0, 1.0]
    assert ckpt.tokenizer_proto(meta) == b"x"


def test_dev_in_train_compares_only_sources_that_name_one_thing_either_way(tmp_path):
    """A file (by real path) and an hf: source with its split are refused as both; a folder, a PREFIX and an
    hf: source without a split stand for the train split as training data and another as dev, so they pass."""
    from lstmtext.corpus import named_sources, refuse_dev_in_train
    from lstmtext.errors import UsageError

    (tmp_path / "train.de").write_text("a\n")
    (tmp_path / "val.de").write_text("b\n")
    (tmp_path / "link.de").symlink_to(tmp_path / "val.de")
    for dev, train in [
        (str(tmp_path), [str(tmp_path)]),  # translation folder: train.* to train, val.* as dev
        (str(tmp_path / "val"), [str(tmp_path / "val")]),  # a PREFIX
        ("hf:stanfordnlp/sst2", ["hf:stanfordnlp/sst2"]),  # read as @train to train, @validation as dev
        (str(tmp_path / "val.de"), [str(tmp_path / "train.de")]),
    ]:
        refuse_dev_in_train(dev, named_sources(train, folders=False))
    for dev, train in [
        (str(tmp_path / "link.de"), [str(tmp_path / "val.de")]),
        ("hf:stanfordnlp/sst2@validation", ["hf:stanfordnlp/sst2@train", "hf:stanfordnlp/sst2@validation"]),
        (str(tmp_path / "val.de"), [str(tmp_path)]),  # a streamed task's folder is read file by file
    ]:
        with pytest.raises(UsageError, match="is also training data"):
            refuse_dev_in_train(dev, named_sources(train, folders=True))
