"""`lstmtext export`: an NER checkpoint as ONNX that tags without torch, exactly as the checkpoint tags."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, assert_usage_error, cli_env, run_cli

from lstmtext import api
from lstmtext import checkpoint as ckpt
from lstmtext.config import resolve_recipe
from lstmtext.data import sample_path
from lstmtext.heads.tag import CRF
from lstmtext.tasks import get_task, ner
from lstmtext.tasks.ner_onnx import OnnxTagger, viterbi
from lstmtext.tokenizer import Tokenizer

pytest.importorskip("onnx", reason="the [onnx] extra; the test extra installs it")
pytest.importorskip("onnxruntime", reason="the [onnx] extra; the test extra installs it")

TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
    "",
    "Shares in Siemens fell 3 % after Lars Becker , the chief executive of Siemens AG , resigned in Munich.",
    "EU rejects German call to boycott British lamb .",
    "Peter",
    "a " * 300,  # longer than data.max_length below: several windows
]


@pytest.fixture(scope="module")
def sample():
    mod = get_task("ner")
    examples = mod.read(str(sample_path("ner", "train")), ner.Options(), "train")[:300]
    return Tokenizer.train(mod.tokenizer_texts(examples), 400), mod.make_labels(examples)


def make_ckpt(path: Path, sample, *overrides: str, seed: int = 0) -> Path:
    """A tiny NER model with random weights (CRF scores included, so paths are not all O), saved as a checkpoint."""
    tok, labels = sample
    mod = get_task("ner")
    sets = ["encoder.embed_dim=16", "encoder.hidden_dim=12", "tokenizer.vocab_size=400", "data.max_length=64"]
    recipe = resolve_recipe("ner", None, [*sets, *overrides])
    torch.manual_seed(seed)
    model = mod.build_model(recipe, len(tok), labels)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("head.crf", "head.proj")) or name.endswith("bias"):
                p.normal_(0, 1.0)
    meta = {"task": "ner", "recipe": recipe.to_dict(), "labels": labels, "metrics": {}, "provenance": {"seed": seed}}
    ckpt.save(path, model.state_dict(), meta, tok.model_proto)
    return path


VARIANTS = {  # every part of the tagger the graph reproduces
    "first": [],
    "span-wordlstm-bioes": ["ner.word_state=span", "ner.word_hidden=8", "ner.scheme=bioes"],
    "two-layers-shape": ["encoder.num_layers=2", "ner.word_state=span", "ner.shape_dim=4"],
    "gru-span-wordlstm": ["encoder.cell=gru", "ner.word_state=span", "ner.word_hidden=8", "encoder.num_layers=2"],
    "lm-weight": ["ner.lm_weight=0.2", "ner.word_state=span", "ner.word_hidden=8", "ner.scheme=bioes"],
    "context": ["ner.context=8", "ner.word_state=span"],
    "chars-shape-wordlstm": ["ner.char_dim=6", "ner.char_hidden=5", "ner.shape_dim=4", "ner.word_hidden=8"],
    "chars-span-bioes": ["ner.char_dim=6", "ner.char_hidden=3", "ner.word_state=span", "ner.scheme=bioes"],
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_export_tags_as_the_checkpoint_does(variant, sample, tmp_path):
    """Emissions within float rounding of torch's, the same Viterbi paths and the same predictions, for every
    part of the tagger the graph has to reproduce (both word states, two layers, GRUs, shapes, BIOES)."""
    from lstmtext.export import export

    path = make_ckpt(tmp_path / "m.ckpt", sample, *VARIANTS[variant])
    export(path, tmp_path / "m.onnx")
    theirs, ours = api.load(path), api.load(tmp_path / "m.onnx")
    assert ours.exported == "fp32" and isinstance(ours.model, OnnxTagger)

    feats = ner.featurize([{"tokens": t.split()} for t in TEXTS if t], theirs.tok, theirs.labels, theirs.recipe)
    batch = ner.collate(feats)
    with torch.inference_mode():
        em, _ = theirs.model(batch)  # (B, W, L)
        want = theirs.model.head.decode(em, batch["word_lengths"])
    feed = ours.model.feed(feats)
    (got,) = ours.model.session.run(["emissions"], feed)
    mask = np.arange(em.shape[1])[None, :] < batch["word_lengths"].numpy()[:, None]  # (B, W)
    np.testing.assert_allclose(got[mask], em.numpy()[mask], rtol=1e-4, atol=1e-5)
    assert [p[: len(f["first"])] for p, f in zip(want.tolist(), feats)] == ours.model.decode(feats)

    a, b = theirs.predict(TEXTS), ours.predict(TEXTS)
    assert a == b
    assert any(r["entities"] for r in b)  # the random CRF scores make the comparison say something
    theirs.context = ours.context = True  # tag --context: each line after the earlier ones of its paragraph
    assert theirs.predict(TEXTS) == ours.predict(TEXTS)


def test_viterbi_is_the_best_valid_path_by_brute_force():
    """numpy Viterbi against every path of a small lattice, with forbidden moves, ragged lengths."""
    rng = np.random.default_rng(3)
    B, W, L = 4, 5, 3
    em = rng.normal(size=(B, W, L)).astype(np.float32)
    trans = rng.normal(size=(L, L)).astype(np.float32)
    trans[0, 2] = trans[2, 1] = -np.inf
    start, end = rng.normal(size=L).astype(np.float32), rng.normal(size=L).astype(np.float32)
    start[1] = end[0] = -np.inf
    lengths = np.array([5, 3, 1, 4])
    paths = viterbi(em, lengths, trans, start, end)

    def score(b: int, p: tuple) -> float:
        n = len(p)
        emitted = sum(em[b, t, p[t]] for t in range(n))
        return start[p[0]] + emitted + sum(trans[x, y] for x, y in zip(p, p[1:])) + end[p[-1]]

    for b, n in enumerate(lengths):
        best = max(itertools.product(range(L), repeat=int(n)), key=lambda p: score(b, p))  # noqa: B023
        assert tuple(paths[b, :n]) == best
        assert (paths[b, n:] == paths[b, n - 1]).all()  # padding repeats the last tag, as CRF.decode


def test_viterbi_equals_the_torch_crf():
    labels = ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC", "B-PER", "I-PER", "E-PER", "S-PER"]
    crf = CRF(labels)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    em = torch.randn(6, 9, len(labels))
    lengths = torch.tensor([9, 1, 4, 7, 2, 9])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    trans, start, end = (t.detach().numpy() for t in crf._scores(float("-inf")))
    np.testing.assert_array_equal(viterbi(em.numpy(), lengths.numpy(), trans, start, end), crf.decode(em, mask).numpy())


@pytest.fixture(scope="module")
def exported(sample, tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    path = make_ckpt(d / "m.ckpt", sample, *VARIANTS["span-wordlstm-bioes"])
    proc = run_cli("export", path, "-o", d / "m.onnx")
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stderr and (d / "m.onnx").exists()
    return path, d / "m.onnx"


def test_cli_tag_evaluate_info_from_the_export(exported, tmp_path):
    path, onnx = exported
    text = "\n".join(TEXTS) + "\n"
    for fmt in ("jsonl", "conll", "inline"):
        want = run_cli("tag", "-m", path, "--format", fmt, input=text)
        got = run_cli("tag", "-m", onnx, "--format", fmt, input=text)
        assert want.returncode == got.returncode == 0, got.stderr
        assert got.stdout == want.stdout
    want = run_cli("evaluate", path, "data/ner/dev.conll", "--format", "json")
    got = run_cli("evaluate", onnx, "data/ner/dev.conll", "--format", "json")
    w, g = json.loads(want.stdout), json.loads(got.stdout)
    assert {k: g[k] for k in ("precision", "recall", "f1", "per_type")} == {
        k: w[k] for k in ("precision", "recall", "f1", "per_type")
    }
    fixed = run_cli("evaluate", onnx, "data/ner/dev.conll", "--set", "ner.word_hidden=8")
    assert_usage_error(fixed, "--set", "exported model")
    proc = run_cli("info", onnx, "--format", "json")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(proc.stdout)
    assert meta["task"] == "ner" and meta["export"]["precision"] == "fp32"
    proc = run_cli("info", onnx)
    assert proc.returncode == 0 and "precision=fp32" in proc.stderr and "opset=17" in proc.stderr


NO_TORCH = (
    "import sys\n"
    "from lstmtext.cli import main\n"
    "sys.argv, code = ['lstmtext'] + sys.argv[1:], 0\n"
    "try:\n    main()\n"
    "except SystemExit as e:\n    code = e.code\n"
    "sys.stderr.write('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    "sys.exit(code)\n"
)


def run_watched(*args, stdin: str = "", hide_onnxruntime: bool = False) -> subprocess.CompletedProcess:
    """The CLI in a fresh process that says at the end whether torch was imported; hide_onnxruntime runs it as
    where onnxruntime is not installed."""
    code = ("import sys; sys.modules['onnxruntime'] = None\n" if hide_onnxruntime else "") + NO_TORCH
    return subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], input=stdin, capture_output=True, text=True,
        env=cli_env(), cwd=REPO, timeout=120,
    )  # fmt: skip


def test_the_export_runs_without_importing_torch(exported, tmp_path):
    """What makes its start-up short: tag, predict, evaluate, info and benchmark speed on onnxruntime alone."""
    _, onnx = exported
    proc = run_watched("tag", "-m", onnx, "--format", "jsonl", stdin="Angela Merkel visited Paris.\n")
    assert proc.stderr.endswith("NO-TORCH"), proc.stderr
    assert json.loads(proc.stdout)["tokens"] == ["Angela", "Merkel", "visited", "Paris", "."]
    proc = run_watched("predict", onnx, "--format", "jsonl", stdin="Angela Merkel visited Paris.\n")
    assert proc.stderr.endswith("NO-TORCH") and json.loads(proc.stdout)["tokens"][0] == "Angela", proc.stderr
    proc = run_watched("evaluate", onnx, "data/ner/dev.conll", "--format", "json")
    assert proc.stderr.endswith("NO-TORCH") and "loss" not in json.loads(proc.stdout), proc.stderr
    assert run_watched("info", onnx).stderr.endswith("NO-TORCH")
    data = tmp_path / "lines.txt"
    data.write_text("Angela Merkel visited Paris.\n")
    proc = run_watched("benchmark", "speed", onnx, data, "--repeats", "2", "--format", "json")
    assert proc.stderr.endswith("NO-TORCH"), proc.stderr
    assert "onnxruntime" in json.loads(proc.stdout)["machine"]


def test_without_onnxruntime_the_export_is_one_error_line(exported, tmp_path):
    path, onnx = exported
    for args in (
        ("tag", "-m", onnx),
        ("predict", onnx),
        ("export", path, "-o", tmp_path / "q.onnx", "--precision", "int8"),
    ):
        proc = run_watched(*args, stdin="Paris\n", hide_onnxruntime=True)
        assert proc.returncode == 2, proc.stderr
        lines = proc.stderr.replace("NO-TORCH", "").replace("TORCH", "").strip().splitlines()
        assert lines == [lines[0]] and lines[0].startswith("lstmtext: error:"), proc.stderr
        assert "pip install 'lstmtext[onnx]'" in lines[0]
    assert not (tmp_path / "q.onnx").exists()


def test_int8_export_quantizes_the_recurrent_and_projection_weights(exported, tmp_path):
    import onnx as onnx_lib

    path, plain = exported
    proc = run_cli("export", path, "-o", tmp_path / "q.onnx", "--precision", "int8")
    assert proc.returncode == 0, proc.stderr
    ops = {n.op_type for n in onnx_lib.load(str(tmp_path / "q.onnx")).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops and "MatMul" not in ops
    got = run_cli("tag", "-m", tmp_path / "q.onnx", "--format", "jsonl", input="\n".join(TEXTS) + "\n")
    assert got.returncode == 0, got.stderr
    rows = [json.loads(line) for line in got.stdout.splitlines()]
    assert len(rows) == len(TEXTS) and all(len(r["tags"]) == len(r["tokens"]) for r in rows)
    fp32 = run_cli("tag", "-m", plain, "--format", "jsonl", input="\n".join(TEXTS) + "\n")
    want = [json.loads(line) for line in fp32.stdout.splitlines()]
    pairs = [(a, b) for r, w in zip(rows, want) for a, b in zip(r["tags"], w["tags"])]
    assert sum(a == b for a, b in pairs) >= 0.9 * len(pairs)  # int8 weights move few tags (a broken graph, most)
    assert api.load(tmp_path / "q.onnx").exported == "int8"


def test_export_refusals(exported, tmp_path, sample):
    path, onnx = exported
    assert_usage_error(run_cli("export", path, "-o", onnx), "exists; pass --force")
    assert_usage_error(run_cli("export", path, "-o", tmp_path / "m.bin"), "name it *.onnx")
    assert_usage_error(run_cli("export", path, "-o", tmp_path / "b.onnx", "--precision", "bf16"), "fp32 or int8")
    assert_usage_error(run_cli("export", tmp_path / "none.ckpt", "-o", tmp_path / "c.onnx"), "file not found")
    assert not (tmp_path / "b.onnx").exists() and not (tmp_path / "c.onnx").exists()
    assert_usage_error(
        run_cli("tag", "-m", onnx, "--precision", "int8", input="Paris\n"), "exported in fp32", "--precision int8"
    )
    assert_usage_error(run_cli("tag", "-m", onnx, "--explain", input="Paris\n"), "--explain", "not its ONNX export")
    assert_usage_error(run_cli("tag", "-m", onnx, "--device", "cuda", input="Paris\n"), "runs on the CPU")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert_usage_error(run_cli("tag", "-m", junk, input="Paris\n"), "junk.onnx", "not an ONNX model")
    assert_usage_error(run_cli("translate", "-m", onnx, input="Hallo\n"), "is a 'ner' model")
    assert_usage_error(run_cli("predict", onnx, "--explain", input="Paris\n"), "--explain", "not its ONNX export")
    assert_usage_error(run_cli("export", onnx, "-o", tmp_path / "d.onnx"), "is an ONNX export already")
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX model that lstmtext export did not write
    import onnx as onnx_lib
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    onnx_lib.save(helper.make_model(graph), str(foreign))
    assert_usage_error(run_cli("tag", "-m", foreign, input="Paris\n"), "foreign.onnx", "lstmtext export did not write")
    gru = make_ckpt(tmp_path / "gru.ckpt", sample, "encoder.cell=gru")
    assert_usage_error(run_cli("export", gru, "-o", tmp_path / "g.onnx", "--precision", "int8"), "not a GRU", "fp32")


def test_export_refuses_a_task_without_a_graph(sample, tmp_path):
    tok, _ = sample
    lm = tmp_path / "lm.ckpt"
    ckpt.save(lm, {"w": torch.zeros(2)}, {"task": "lm", "recipe": {}, "labels": []}, tok.model_proto)
    proc = run_cli("export", lm, "-o", tmp_path / "lm.onnx")
    assert_usage_error(proc, "sentiment and ner models export to ONNX", "this is a lm model")
    assert not (tmp_path / "lm.onnx").exists()


# -- sentiment ---------------------------------------------------------------------------------------------
def make_sentiment_ckpt(path: Path, *overrides: str) -> Path:
    """A tiny sentiment model with random weights, saved as a checkpoint."""
    mod = get_task("sentiment")
    recipe = resolve_recipe("sentiment", None, ["encoder.embed_dim=16", "encoder.hidden_dim=12", *overrides])
    examples = mod.read(str(sample_path("sentiment", "train")), recipe.options, "train")[:300]
    tok, labels = Tokenizer.train(mod.tokenizer_texts(examples), 400), mod.make_labels(examples)
    torch.manual_seed(0)
    model = mod.build_model(recipe, len(tok), labels)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("head.") or name.endswith("bias"):
                p.normal_(0, 1.0)
    meta = {"task": "sentiment", "recipe": recipe.to_dict(), "labels": labels, "metrics": {}, "provenance": {}}
    ckpt.save(path, model.state_dict(), meta, tok.model_proto)
    return path


REVIEWS = ["a gorgeous, witty film", "", "dull , lifeless and far too long", "the cast is great but the plot"]


@pytest.mark.parametrize(
    "overrides",
    [[], ["sentiment.pooling=max"], ["sentiment.pooling=mean"], ["sentiment.pooling=attention"],
     ["encoder.cell=gru", "encoder.num_layers=2"]],
    ids=["maxmean", "max", "mean", "attention", "gru-two-layers"],
)  # fmt: skip
def test_sentiment_export_classifies_as_the_checkpoint_does(overrides, tmp_path):
    from lstmtext.export import export
    from lstmtext.tasks import sentiment

    path = make_sentiment_ckpt(tmp_path / "s.ckpt", *overrides)
    export(path, tmp_path / "s.onnx")
    theirs, ours = api.load(path), api.load(tmp_path / "s.onnx")
    texts = REVIEWS + ["x " * 90]  # a long one beside short ones: padding inside a batch
    feats = sentiment.featurize([{"text": t} for t in texts if t], theirs.tok, theirs.labels, theirs.recipe)
    with torch.inference_mode():
        want = theirs.model(sentiment.collate(feats))[0].softmax(-1).numpy()  # (B, L)
    got = np.array(ours.model.probabilities(feats))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    a, b = theirs.predict(texts), ours.predict(texts)
    assert [r and r["label"] for r in a] == [r and r["label"] for r in b] and b[1] is None
    for r, s in zip(a, b):
        if r:
            assert all(abs(r["scores"][k] - s["scores"][k]) <= 1e-4 for k in r["scores"])


def test_sentiment_export_cli_predict_and_evaluate(tmp_path):
    path = make_sentiment_ckpt(tmp_path / "s.ckpt")
    assert run_cli("export", path, "-o", tmp_path / "s.onnx").returncode == 0
    want = run_cli("evaluate", path, "data/sentiment/dev.tsv", "--format", "json")
    got = run_cli("evaluate", tmp_path / "s.onnx", "data/sentiment/dev.tsv", "--format", "json")
    assert want.returncode == got.returncode == 0, got.stderr
    w, g = json.loads(want.stdout), json.loads(got.stdout)
    assert g["accuracy"] == w["accuracy"] and "loss" not in g
    proc = run_watched("predict", tmp_path / "s.onnx", "--format", "jsonl", stdin="a gorgeous, witty film\n")
    assert proc.stderr.endswith("NO-TORCH"), proc.stderr
    assert json.loads(proc.stdout)["label"] in ("negative", "positive", "0", "1")
    assert_usage_error(
        run_cli("predict", tmp_path / "s.onnx", "--attention", "--format", "jsonl", input="good\n"),
        "not its ONNX export",
    )
