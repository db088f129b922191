"""Library functions behind ``evaluate``, ``predict`` and ``lstmtext.load``: one checkpoint in, the task's
Predictor out."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from lstmtext import checkpoint as ckpt
from lstmtext.config import check_precision
from lstmtext.errors import UsageError
from lstmtext.tasks import get_task


def read_meta(path: str | Path) -> dict:
    """A model file's metadata without loading the model: a checkpoint's (``checkpoint.read_meta``, no torch) or
    the one an ONNX export keeps (``export.read_meta``)."""
    from lstmtext.export import is_exported
    from lstmtext.export import read_meta as exported_meta

    return exported_meta(path) if is_exported(path) else ckpt.read_meta(path)


def load(path: str | Path, device: str = "cpu", task: str | None = None, command: str | None = None, overrides=()):
    """The task's Predictor for a checkpoint (the Predictor protocol of tasks/contract.py). ``overrides``
    (``--set SECTION.KEY=VALUE`` strings) change the settings the task lists in EVAL_OPTIONS, such as a
    translator's beam or an LM's cache; the rest of a recipe is fixed by the weights."""
    from lstmtext.export import is_exported

    if is_exported(path):  # an ONNX file of lstmtext export: onnxruntime, no torch
        if overrides:
            raise UsageError(f"--set: {path} is an exported model, whose settings were fixed when it was exported")
        from lstmtext.export import load as load_exported

        return load_exported(path, device, task, command)
    from lstmtext import ensemble
    from lstmtext.config import build_recipe
    from lstmtext.device import pick_device
    from lstmtext.tokenizer import Tokenizer

    dev = pick_device(device)  # before the file is read: a missing CUDA is the one line pick_device gives
    meta, state = ckpt.load(path, task=task, command=command)
    if meta.get("kind") == "resume":
        raise UsageError(f"{path} is resume state, not a model; pass the checkpoint written beside it")
    mod = get_task(meta["task"])
    check_eval_overrides(mod, overrides)
    recipe = build_recipe(meta["task"], mod.Options, stored=meta["recipe"], overrides=list(overrides))
    tok = Tokenizer(ckpt.tokenizer_proto(meta, path))
    labels = meta.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise UsageError(f"checkpoint {path}: its labels must be a list of strings")
    # The recipe a file claims is checked against the weights it holds before the model is built for real:
    # a small file claiming a huge encoder is refused instead of allocating that encoder.
    n = ensemble.members(meta, path)  # lstmtext ensemble: n models of one recipe, combined by the task
    shapes = model_shapes(mod, recipe, len(tok), labels)
    check_weights_fit(f"checkpoint {path}", ensemble.state_names(shapes, n) if n else shapes, state)
    with _no_weight_init():
        model = mod.build_model(recipe, len(tok), labels)
        if n:
            model = mod.ensemble([model] + [mod.build_model(recipe, len(tok), labels) for _ in range(n - 1)])
    model.load_state_dict(state)
    model.to(dev).eval()
    predictor = mod.Predictor(model, tok, labels, recipe, dev)
    predictor.meta = meta
    return predictor


def check_eval_overrides(mod, overrides) -> None:
    """Refuse a ``--set`` for a trained model that is not one of its task's EVAL_OPTIONS."""
    from lstmtext.config import parse_set

    for item in overrides:
        section, key, _ = parse_set(item)
        if section != mod.NAME or key not in mod.EVAL_OPTIONS:
            allowed = ", ".join(f"{mod.NAME}.{k}" for k in mod.EVAL_OPTIONS) or "none"
            raise UsageError(
                f"--set {section}.{key}: a trained {mod.NAME} model takes only its scoring settings here "
                f"({allowed}); the rest of its recipe is fixed by its weights"
            )


def check_weights_fit(what: str, want: dict[str, tuple[int, ...]], state: dict) -> None:
    """Refuse weights whose names or shapes differ from ``want`` (model_shapes of the recipe they came with)."""
    odd = sorted(want.keys() ^ state.keys())
    if odd:
        where = "lacks" if odd[0] in want else "has an extra"
        raise UsageError(f"{what}: weights do not fit its own recipe (it {where} weight '{odd[0]}')")
    for name, shape in want.items():
        if tuple(state[name].shape) != shape:
            raise UsageError(
                f"{what}: weights do not fit its own recipe (weight '{name}' is "
                f"{tuple(state[name].shape)} in the file, {shape} by its recipe)"
            )


def model_shapes(mod, recipe, vocab_size: int, labels: list[str]) -> dict[str, tuple[int, ...]]:
    """The shape of every weight of ``mod``'s model for ``recipe``, found without allocating it (built on
    torch's meta device, where tensors have shapes and no storage)."""
    import torch

    with torch.device("meta"), _no_weight_init():
        model = mod.build_model(recipe, vocab_size, labels)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@contextmanager
def _no_weight_init():
    """Skip torch.nn.init's random draws while building a model whose every weight the checkpoint then sets
    (load_state_dict is strict): for a wide model they are a sizeable share of the load time, and all wasted."""
    from torch.nn import init

    names = [n for n in dir(init) if n.endswith("_") and not n.startswith("_") and callable(getattr(init, n))]
    saved = {n: getattr(init, n) for n in names}
    try:
        for n in names:
            setattr(init, n, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for n, fn in saved.items():
            setattr(init, n, fn)


def inference_precision(predictor, precision: str = "auto"):
    """The context to run a loaded predictor in: ``auto`` is bf16 autocast on CUDA and fp32 on CPU, as in
    training. bf16 runs the encoder faster only on a CPU with bf16 instructions (BENCHMARKS.md); weights stay
    fp32. ``int8`` first converts the predictor's LSTMs in place (quantize_int8), then runs it as fp32."""
    from contextlib import nullcontext

    check_precision(precision)
    exported = getattr(predictor, "exported", None)  # an ONNX file runs in the precision it was exported in
    if exported:
        from lstmtext.export import require_precision

        require_precision(exported, precision)
        return nullcontext()
    if precision == "int8":
        quantize_int8(predictor)
        return nullcontext()
    from lstmtext.device import autocast_for

    return autocast_for(predictor.device, precision, option="--precision")[0]()


def quantize_int8(predictor) -> None:
    """Dynamic int8 quantization of every LSTM or GRU in the predictor's model (weights int8, activations quantized
    as they come, gates in fp32): the recurrent layers are the time of tagging and classifying, and on a CPU with
    AVX-512 VNNI int8 GEMMs run faster than fp32 ones (benchmarks/bench_ner.py --precision int8 measures the
    speed and the F1 it costs). The embedding, heads and CRF stay fp32. Only a task whose PRECISIONS list
    int8 takes it: generation and beam search step LSTM cells, which dynamic quantization leaves alone."""
    import warnings

    import torch
    from torch import nn

    from lstmtext.tasks import TASKS

    if "int8" not in get_task(predictor.task).PRECISIONS:
        takers = [name for name in TASKS if "int8" in get_task(name).PRECISIONS]
        raise UsageError(
            f"--precision int8: for {' and '.join(takers)} models; this is a {predictor.task} model "
            "(use fp32, or bf16 on a CPU with bf16 instructions)"
        )
    if predictor.device.type != "cpu":
        raise UsageError("--precision int8 runs on the CPU; on CUDA use bf16 or fp16")
    engines = torch.backends.quantized.supported_engines
    quantize = getattr(getattr(torch, "ao", None), "quantization", None)
    if quantize is None or not any(e in engines for e in ("x86", "fbgemm", "qnnpack", "onednn")):
        raise UsageError(f"--precision int8: torch {torch.__version__} here has no int8 LSTM/GRU kernels; use fp32")
    with warnings.catch_warnings():  # torch.ao's eager quantization warns that it will move to torchao
        warnings.simplefilter("ignore")
        quantize.quantize_dynamic(predictor.model, {nn.LSTM, nn.GRU}, dtype=torch.qint8, inplace=True)


def evaluate(path: str | Path, data: str, device: str = "cpu", precision: str = "auto", overrides=()) -> dict:
    """Metrics of a checkpoint on a labelled file or ``hf:`` dataset (the test split unless @SPLIT is given);
    ``overrides`` as for ``load``."""
    from lstmtext.data import resolve_source

    check_precision(precision)
    p = load(path, device=device, overrides=overrides)
    mod = get_task(p.task)
    examples = mod.read(resolve_source(data), p.recipe.options, "test")
    feats = mod.featurize(examples, p.tok, p.labels, p.recipe)
    with inference_precision(p, precision):
        # in the batches the predictor predicts in: int8 scales activations batch by batch
        return mod.evaluate(p.model, feats, p.labels, p.device, p.batch_tokens, p.tok)


def _check_same_start(first_path, first_meta: dict, path, meta: dict) -> None:
    """Runs drawn from different initial weights (provenance init_seed) are refused: they lie in different
    basins, and the mean of their weights is a broken model. Checkpoints that do not record it pass."""
    a = (first_meta.get("provenance") or {}).get("init_seed")
    b = (meta.get("provenance") or {}).get("init_seed")
    if a is not None and b is not None and a != b:
        raise UsageError(
            f"{path} started from init_seed {b}, {first_path} from init_seed {a}: only runs that start from the "
            "same weights can be averaged (train them with the same --set train.init_seed=N)"
        )


def average(paths: list[str | Path], output: str | Path, force: bool = False) -> dict:
    """Write the element-wise mean of several checkpoints' weights to ``output`` (a "model soup",
    Wortsman et al. 2022) and return its meta. The runs must share task, labels, tokenizer and shapes, and
    should share their starting weights (``--init-from`` and ``train.init_seed``): runs from different random
    starts are not in one basin, and their mean is a broken model.

    The mean is a new model: its dev metrics are unknown (``lstmtext evaluate`` it); each part's are kept
    in its provenance."""
    import time

    import torch

    from lstmtext import __version__
    from lstmtext.data import sha256_file
    from lstmtext.ensemble import check_single

    output = ckpt.check_combined_output("average", paths, output, force, "soup.ckpt")
    first_meta, total, dtypes, parts = None, {}, {}, []
    for path in paths:
        meta, state = ckpt.load(path)
        if meta.get("kind") == "resume":
            raise UsageError(f"{path} is resume state, not a model; pass the checkpoint written beside it")
        check_single(path, meta, "lstmtext average")
        if first_meta is None:
            first_meta, dtypes = meta, {k: v.dtype for k, v in state.items()}
            total = {k: v.double() if v.is_floating_point() else v for k, v in state.items()}
        else:
            for what in ("task", "labels", "tokenizer"):
                if meta.get(what) != first_meta.get(what):
                    raise UsageError(
                        f"{path}: its {what} differs from {paths[0]}'s; only runs of one model can be averaged"
                    )
            if state.keys() != total.keys() or any(state[k].shape != total[k].shape for k in state):
                raise UsageError(f"{path}: its weights' names or shapes differ from {paths[0]}'s")
            _check_same_start(paths[0], first_meta, path, meta)
            for k, v in state.items():
                if v.is_floating_point():
                    total[k] += v.double()
                elif not torch.equal(v, total[k]):
                    raise UsageError(f"{path}: its integer tensor {k} differs from {paths[0]}'s")
        parts.append(
            {
                "path": str(path),
                "sha256": sha256_file(path),
                "metrics": meta.get("metrics") or {},
                "seed": (meta.get("provenance") or {}).get("seed"),
            }
        )
    state = {k: (v / len(paths)).to(dtypes[k]) if v.is_floating_point() else v for k, v in total.items()}
    meta = {k: v for k, v in first_meta.items() if k not in ("format", "format_version", "tokenizer")}
    meta["metrics"] = {}
    first = first_meta.get("provenance") or {}
    meta["provenance"] = {
        **{k: first[k] for k in ("data", "init_from", "init_seed") if k in first},
        "averaged": parts,
        "lstmtext": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    ckpt.save(output, state, meta, ckpt.tokenizer_proto(first_meta))
    return meta
