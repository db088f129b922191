"""A trained tagger as an ONNX graph, and the model object that runs it without torch: the module a task
names as its ``ONNX`` for lstmtext export (export.py calls ``graph`` and ``model``).

The graph is the encoder and the tag head up to the CRF's emissions: the piece embedding, the forward and the
backward LSTM stacks (ONNX ``LSTM``/``GRU`` nodes, which take each sequence's own length, so the backward stack
starts on each sentence's last piece as in encoder.py), the word states, the word BiLSTM and the projection.
Viterbi decoding runs on the emissions in numpy here: a loop over words of (B, L, L) maxima, cheaper outside
the graph than inside it. The word states are picked with row indices the host computes (``rows``), so the
graph has no shape arithmetic of its own.

Everything in this module except ``graph`` imports neither torch nor onnx: ``lstmtext tag -m model.onnx``
loads onnxruntime, numpy and SentencePiece only, which is what makes its start-up short.
"""

from __future__ import annotations

import numpy as np

from lstmtext.heads import allowed_moves, bioes_labels

# ONNX orders an LSTM's gates (i, o, f, c) and a GRU's (z, r, h); torch orders them (i, f, g, o) and (r, z, n).
GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}


# -- export: torch weights → graph (called by lstmtext/export.py, which imports onnx) -------------------------
def graph(state: dict, recipe, labels: list[str]):
    """(nodes, initializers, inputs, outputs, extra) of the tagger whose weights are ``state`` (numpy arrays by
    name); ``extra`` {"crf": ...} is what decoding needs beside the emissions, kept in the file's metadata."""
    from onnx import helper, numpy_helper

    opts, enc = recipe.options, recipe.encoder
    H = enc.hidden_dim
    nodes, inits = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(kind: str, ins: list[str], out: str, **attrs) -> str:
        nodes.append(helper.make_node(kind, ins, [out], name=out, **attrs))
        return out

    def rnn(
        x: str, lens: str, prefix: str, suffixes: list[str], direction: str, hidden: int, out: str, cell: str
    ) -> str:
        """One ONNX recurrent node over x (T, B, D) from torch's weights ``prefix.weight_ih{suffix}`` etc., one
        suffix per direction → (T, num_directions, B, hidden)."""
        order = GATE_ORDER[cell]

        def gates(a: np.ndarray) -> np.ndarray:  # torch's gate blocks in ONNX's order
            return np.concatenate([a[k * hidden : (k + 1) * hidden] for k in order])

        W = np.stack([gates(state[f"{prefix}.weight_ih{s}"]) for s in suffixes])  # (D, G*h, in)
        R = np.stack([gates(state[f"{prefix}.weight_hh{s}"]) for s in suffixes])  # (D, G*h, h)
        Bias = np.stack(
            [
                np.concatenate([gates(state[f"{prefix}.bias_ih{s}"]), gates(state[f"{prefix}.bias_hh{s}"])])
                for s in suffixes
            ]
        )  # (D, 2*G*h)
        extra = {"linear_before_reset": 1} if cell == "gru" else {}  # torch's GRU applies r after the product
        ins = [x, const(f"{out}.W", W), const(f"{out}.R", R), const(f"{out}.B", Bias), lens]
        return node(cell.upper(), ins, out, direction=direction, hidden_size=hidden, **extra)

    squeeze1 = const("axes1", np.array([1], dtype=np.int64))
    x = node("Gather", [const("embed", state["encoder.embed.weight"]), "tokens"], "embedded")  # (B, T, E)
    x = node("Transpose", [x], "embedded_tb", perm=[1, 0, 2])  # (T, B, E)
    halves = []
    for stack, direction in (("fwd", "forward"), ("bwd", "reverse")):
        h = x
        for k in range(enc.num_layers):
            y = rnn(h, "lengths", f"encoder.{stack}", [f"_l{k}"], direction, H, f"{stack}{k}", enc.cell)  # (T, 1, B, H)
            h = node("Squeeze", [y, squeeze1], f"{stack}{k}_out")  # (T, B, H)
        h = node("Transpose", [h], f"{stack}_bt", perm=[1, 0, 2])  # (B, T, H)
        h = node("Reshape", [h, const(f"{stack}_flat_shape", np.array([-1, H], dtype=np.int64))], f"{stack}_rows")
        halves.append(node("Gather", [h, f"{stack}_index"], f"{stack}_words"))  # (B, W, H)
    words = node("Concat", halves, "words", axis=-1)  # (B, W, 2H)
    if opts.shape_dim:
        shapes = node("Gather", [const("shape_embed", state["head.shape_embed.weight"]), "shape"], "shapes")
        words = node("Concat", [words, shapes], "words_shapes", axis=-1)  # (B, W, 2H + S)
    if opts.word_hidden:
        h = opts.word_hidden
        x = node("Transpose", [words], "words_tb", perm=[1, 0, 2])  # (W, B, D)
        y = rnn(x, "word_lengths", "head.word_lstm", ["_l0", "_l0_reverse"], "bidirectional", h, "word_lstm", "lstm")
        y = node("Transpose", [y], "word_lstm_bt", perm=[2, 0, 1, 3])  # (W, 2, B, h) → (B, W, 2, h)
        words = node("Reshape", [y, const("word_lstm_shape", np.array([0, 0, -1], dtype=np.int64))], "word_out")
    proj = node("MatMul", [words, const("proj_w", state["head.proj.weight"].T.copy())], "proj")
    node("Add", [proj, const("proj_b", state["head.proj.bias"])], "emissions")  # (B, W, L)

    inputs, outputs = io_tensors(opts.shape_dim > 0)
    crf = {
        "labels": bioes_labels(labels) if opts.scheme == "bioes" else list(labels),
        "transitions": state["head.crf.transitions"].tolist(),
        "start": state["head.crf.start"].tolist(),
        "end": state["head.crf.end"].tolist(),
    }
    return nodes, inits, inputs, outputs, {"crf": crf}


def io_tensors(shapes: bool) -> tuple[list, list]:
    """The graph's inputs (what OnnxTagger.feed gives) and its one output."""
    from onnx import TensorProto, helper

    def tensor(name: str, kind, dims: list):
        return helper.make_tensor_value_info(name, kind, dims)

    inputs = [
        tensor("tokens", TensorProto.INT64, ["B", "T"]),
        tensor("lengths", TensorProto.INT32, ["B"]),
        tensor("fwd_index", TensorProto.INT64, ["B", "W"]),  # rows of (B*T) states: see OnnxTagger.feed
        tensor("bwd_index", TensorProto.INT64, ["B", "W"]),
        tensor("word_lengths", TensorProto.INT32, ["B"]),
    ]
    if shapes:
        inputs.append(tensor("shape", TensorProto.INT64, ["B", "W"]))
    return inputs, [tensor("emissions", TensorProto.FLOAT, ["B", "W", "L"])]


# -- run: the ONNX session as the NER Predictor's model ----------------------------------------------------
def viterbi(em: np.ndarray, lengths: np.ndarray, trans: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The best tag path (B, W) of emissions (B, W, L), as CRF.decode in heads/tag.py (forbidden moves -inf)."""
    B, W, L = em.shape
    score = start + em[:, 0]  # (B, L)
    keep = np.broadcast_to(np.arange(L), (B, L))  # backpointer that leaves padding unchanged
    pointers = []
    for t in range(1, W):
        cand = score[:, :, None] + trans  # (B, L_from, L_to)
        ptr = cand.argmax(1)  # (B, L)
        best = np.take_along_axis(cand, ptr[:, None, :], 1)[:, 0]  # (B, L)
        m = (lengths > t)[:, None]  # (B, 1)
        score = np.where(m, best + em[:, t], score)
        pointers.append(np.where(m, ptr, keep))
    last = (score + end).argmax(-1)  # (B,)
    path = [last]
    for ptr in reversed(pointers):
        last = np.take_along_axis(ptr, last[:, None], 1)[:, 0]
        path.append(last)
    return np.stack(path[::-1], axis=1)  # (B, W)


def pad(seqs: list[list[int]], value: int = 0) -> np.ndarray:
    """Right-pad lists of ids to one (B, T) int64 array."""
    out = np.full((len(seqs), max(1, max(map(len, seqs), default=1))), value, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


def model(session, decode: dict, recipe, labels: list[str], threads: int) -> OnnxTagger:
    """What an exported tagger's Predictor runs: the session, and Viterbi over the CRF scores kept beside it."""
    return OnnxTagger(session, decode["crf"], recipe.options.word_state, labels, threads)


class OnnxTagger:
    """The NER Predictor's model when it comes from an ONNX file: ``decode_features`` is what ner.py's
    ``decode_features`` hands to it. Batches go to onnxruntime from a thread pool, one batch per thread and one
    thread per core (onnxruntime releases the GIL), as map_batches does with torch."""

    def __init__(self, session, crf: dict, word_state: str, bio: list[str], threads: int):
        self.session, self.threads, self.word_state = session, threads, word_state
        crf_labels = crf["labels"]
        allowed, start_ok, end_ok = allowed_moves(crf_labels)
        inf = np.float32(-np.inf)
        self.trans = np.where(allowed, np.asarray(crf["transitions"], dtype=np.float32), inf)
        self.start = np.where(start_ok, np.asarray(crf["start"], dtype=np.float32), inf)
        self.end = np.where(end_ok, np.asarray(crf["end"], dtype=np.float32), inf)
        index = {t: i for i, t in enumerate(bio)}
        # BIOES → BIO (E-X is inside, S-X begins), as TagHead's _to_bio; a BIO CRF's paths are BIO already
        bioes = any(t[:2] in ("E-", "S-") for t in crf_labels)
        self.to_bio = (
            None
            if not bioes
            else np.array(
                [index.get(t if t == "O" else f"{'I' if t[0] in 'IE' else 'B'}-{t[2:]}", 0) for t in crf_labels]
            )
        )
        self.inputs = {i.name for i in session.get_inputs()}

    def feed(self, features: list[dict]) -> dict:
        tokens = pad([f["ids"] for f in features])
        B, T = tokens.shape
        first, last = pad([f["first"] for f in features]), pad([f["last"] for f in features])
        base = (np.arange(B) * T)[:, None]  # (B, 1): a sequence's first row in the (B*T) rows of states
        feed = {
            "tokens": tokens,
            "lengths": np.array([max(1, f["length"]) for f in features], dtype=np.int32),
            # span: the forward stack at a word's last piece, the backward at its first (heads/tag.py)
            "fwd_index": base + (last if self.word_state == "span" else first),
            "bwd_index": base + first,
            "word_lengths": np.array([max(1, len(f["first"])) for f in features], dtype=np.int32),
        }
        if "shape" in self.inputs:
            feed["shape"] = pad([f["shape"] for f in features])
        return feed

    def decode(self, features: list[dict]) -> list[list[int]]:
        feed = self.feed(features)
        (em,) = self.session.run(["emissions"], feed)
        paths = viterbi(em, feed["word_lengths"], self.trans, self.start, self.end)  # (B, W)
        if self.to_bio is not None:
            paths = self.to_bio[paths]
        return [p[: len(f["first"])].tolist() for p, f in zip(paths, features)]

    def decode_features(self, features: list[dict], batch_tokens: int, workers: int | None = None):
        """Best BIO ids for every feature, in order, and no loss (the graph computes none)."""
        from concurrent.futures import ThreadPoolExecutor

        from lstmtext.data import bucket_batches

        groups = [g.tolist() for g in bucket_batches([f["length"] for f in features], batch_tokens, 256, False)]
        out: list = [None] * len(features)
        n = max(1, min(self.threads if workers is None else workers, len(groups)))

        def one(idx: list[int]) -> tuple[list[int], list[list[int]]]:
            return idx, self.decode([features[i] for i in idx])

        with ThreadPoolExecutor(n) as pool:
            for idx, paths in pool.map(one, groups):
                for j, p in zip(idx, paths):
                    out[j] = p
        return out, None
