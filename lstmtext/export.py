"""``lstmtext export``: a checkpoint as one ONNX file that predicts without torch, and loading it back.

The file holds the graph (``graph`` of the module the task names as ``ONNX``: the encoder and the head up to
what decoding needs), the checkpoint's metadata (recipe, labels, tokenizer, provenance) under the metadata key
``lstmtext``, and what the task decodes with beside the graph (a CRF's scores). ``lstmtext tag -m model.onnx`` (and ``predict``,
``evaluate``, ``benchmark speed``) then run it on onnxruntime: its start-up is onnxruntime's import rather than
torch's, which is most of a short command's time.

``int8`` quantizes the weights of the graph's LSTM and MatMul nodes dynamically (onnxruntime.quantization:
weights int8, activations quantized as they come). Like ``--precision int8`` on a checkpoint it quantizes the
LSTMs; unlike it, the projection too (a MatMul), and onnxruntime has no int8 GRU, so a GRU model exports in fp32.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from lstmtext import checkpoint as ckpt
from lstmtext.errors import UsageError

SUFFIX = ".onnx"
META_KEY = "lstmtext"  # the checkpoint's metadata, and what the export was
DECODE_KEY = "lstmtext.decode"  # what the task decodes with beside the graph (a CRF's scores)
OPSET = 17
PRECISIONS = ("fp32", "int8")
MISSING = "needs onnxruntime (and onnx to export): pip install 'lstmtext[onnx]' (or pip install onnx onnxruntime)"


def is_exported(path: str | Path) -> bool:
    return str(path).endswith(SUFFIX)


def exportable(task: str) -> bool:
    from lstmtext.tasks import get_task

    return hasattr(get_task(task), "ONNX")


def _task_onnx(mod):
    """The module of a task's ONNX graph (its ``ONNX``), with ``graph(weights, recipe, labels)`` → (nodes,
    initializers, inputs, outputs, decoding data) and ``model(session, decoding data, recipe, labels, threads)``
    → what its Predictor runs in place of the torch model."""
    import importlib

    return importlib.import_module(mod.ONNX)


def export(path: str | Path, output: str | Path, precision: str = "fp32", force: bool = False) -> dict:
    """Write ``output`` (.onnx) from the checkpoint at ``path``; return the stored metadata."""
    from lstmtext.config import build_recipe
    from lstmtext.tasks import TASKS, get_task

    output = Path(output)
    if precision not in PRECISIONS:
        raise UsageError(f"--precision {precision}: export writes {' or '.join(PRECISIONS)}")
    if is_exported(path):
        raise UsageError(f"{path} is an ONNX export already; export the checkpoint it came from")
    if not is_exported(output):
        raise UsageError(f"output {output}: name it *{SUFFIX}")
    if output.is_dir():
        raise UsageError(f"output {output} is a folder; pass a file path such as {output / ('model' + SUFFIX)}")
    if output.exists() and not force:
        raise UsageError(f"output {output} exists; pass --force to overwrite it")
    try:
        from onnx import helper

        if precision == "int8":
            import onnxruntime.quantization  # noqa: F401
    except ImportError:
        raise UsageError(f"export {MISSING}") from None
    meta, state = ckpt.load(path)
    if meta.get("kind") == "resume":
        raise UsageError(f"{path} is resume state, not a model; pass the checkpoint written beside it")
    from lstmtext.ensemble import check_single

    check_single(path, meta, "export")
    task = meta["task"]
    mod = get_task(task)
    if not exportable(task):
        takers = [name for name in TASKS if exportable(name)]
        raise UsageError(f"export: {' and '.join(takers)} models export to ONNX so far; this is a {task} model")
    recipe = build_recipe(task, mod.Options, stored=meta["recipe"])
    if precision == "int8" and recipe.encoder.cell != "lstm":
        cell = recipe.encoder.cell.upper()
        raise UsageError(f"--precision int8: onnxruntime quantizes LSTMs, not a {cell}; export this model in fp32")
    weights = {k: v.detach().float().numpy() for k, v in state.items() if v.is_floating_point()}
    nodes, inits, inputs, outputs, extra = _task_onnx(mod).graph(weights, recipe, meta.get("labels") or [])
    graph = helper.make_graph(nodes, f"lstmtext-{task}", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="lstmtext")
    stored = {**meta, "export": {"precision": precision, "opset": OPSET, "source": str(path)}}
    helper.set_model_props(model, {META_KEY: json.dumps(stored), DECODE_KEY: json.dumps(extra)})
    ckpt.atomic_write(output, lambda tmp: _save(model, tmp, precision))
    return stored


def _save(model, path: str, precision: str) -> None:
    """Check and write the graph; int8: onnxruntime's dynamic quantization of its LSTM and MatMul weights
    (weights int8, activations quantized as they come; the embedding and the CRF stay fp32)."""
    import logging
    import os
    import tempfile

    import onnx

    onnx.checker.check_model(model)
    if precision == "fp32":
        onnx.save(model, path)
        return
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process a vision model goes to the root logger
    try:
        with tempfile.TemporaryDirectory() as d:
            plain = os.path.join(d, "fp32.onnx")
            onnx.save(model, plain)
            quantize_dynamic(plain, path, op_types_to_quantize=["LSTM", "MatMul"], weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def require_precision(exported: str, precision: str) -> None:
    """An exported file runs in the precision it was exported in (``auto`` means that one)."""
    if precision not in ("auto", exported):
        again = f", or export the checkpoint again with --precision {precision}" if precision in PRECISIONS else ""
        raise UsageError(
            f"--precision {precision}: this ONNX model was exported in {exported}; run it without --precision{again}"
        )


def read_meta(path: str | Path) -> dict:
    """The checkpoint metadata an exported file keeps (``api.read_meta`` of a .onnx path)."""
    return _meta(_session(path), path)


def _session(path: str | Path):
    """The onnxruntime session of an exported file. ``evaluate`` reads the metadata first and then loads the
    model, so sessions are kept per (file, size, mtime) and the graph is built once for both."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"model {path}: file not found")
    st = path.stat()
    return _open_session(str(path.resolve()), st.st_size, st.st_mtime_ns, str(path))


@functools.lru_cache(maxsize=4)
def _open_session(real: str, size: int, mtime: int, shown: str):
    path = shown
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError(f"model {path}: an ONNX model {MISSING}") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # one batch per thread, threads side by side (ner_onnx.OnnxTagger)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: its warnings about unused initializers are not the user's business
    try:
        return ort.InferenceSession(real, opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf classes
        why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UsageError(f"model {path}: not an ONNX model onnxruntime can load ({why})") from None


def _meta(session, path) -> dict:
    text = session.get_modelmeta().custom_metadata_map.get(META_KEY)
    try:
        meta = json.loads(text) if text else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("export"), dict):
        raise UsageError(f"model {path}: an ONNX file that lstmtext export did not write (no lstmtext metadata)")
    ckpt.check_meta(Path(path), meta)
    if not exportable(meta["task"]) or meta["export"].get("precision") not in PRECISIONS:
        raise UsageError(
            f"model {path}: its export metadata is not one this lstmtext reads; export the checkpoint again"
        )
    return meta


def load(path: str | Path, device: str = "cpu", task: str | None = None, command: str | None = None):
    """The task's Predictor for an exported file, built without torch."""
    import os

    from lstmtext.config import build_recipe
    from lstmtext.tasks import get_task
    from lstmtext.tokenizer import Tokenizer

    if device not in ("cpu", "auto"):
        raise UsageError(f"--device {device}: an exported ONNX model runs on the CPU (onnxruntime)")
    # batches side by side, one per core, or OMP_NUM_THREADS of them where it is set (as torch's threads)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    omp = os.environ.get("OMP_NUM_THREADS", "")
    threads = int(omp) if omp.isdigit() and int(omp) > 0 else cores
    session = _session(path)
    meta = _meta(session, path)
    if task is not None and meta.get("task") != task:
        what = f"'lstmtext {command}'" if command else f"task '{task}'"
        raise UsageError(f"model {path} is a '{meta.get('task')}' model; {what} needs a '{task}' model")
    mod = get_task(meta["task"])
    recipe = build_recipe(meta["task"], mod.Options, stored=meta["recipe"])
    tok = Tokenizer(ckpt.tokenizer_proto(meta, path))
    labels = meta.get("labels") or []
    try:
        decode = json.loads(session.get_modelmeta().custom_metadata_map.get(DECODE_KEY) or "null")
    except ValueError:
        decode = None
    if not isinstance(decode, dict):
        raise UsageError(f"model {path}: what it decodes with is missing; export the checkpoint again")
    model = _task_onnx(mod).model(session, decode, recipe, labels, threads)
    predictor = mod.Predictor(model, tok, labels, recipe, "cpu")
    predictor.meta = meta
    predictor.exported = meta["export"]["precision"]
    return predictor
