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

from lstmtext.heads import allowed_moves, bio_ids, bioes_labels
from lstmtext.onnx_parts import Graph, tensor
from lstmtext.tasks.common import in_threads, length_groups
from lstmtext.tasks.common import pad_ids as pad
from lstmtext.tasks.ner_data import pad_chars


# -- export: torch weights → graph (called by lstmtext/export.py, which imports onnx) -------------------------
def graph(state: dict, recipe, labels: list[str]):
    """(nodes, initializers, inputs, outputs, extra) of the tagger whose weights are ``state`` (numpy arrays by
    name); ``extra`` {"crf": ...} is what decoding needs beside the emissions, kept in the file's metadata."""
    opts, H = recipe.options, recipe.encoder.hidden_dim
    g = Graph(state)
    halves = []
    for name, stack in zip(("fwd", "bwd"), g.encoder(recipe.encoder)):  # (B, T, H) each
        flat = g.const(f"{name}_flat", np.array([-1, H], dtype=np.int64))
        rows = g.node("Reshape", [stack, flat], f"{name}_rows")  # (B*T, H)
        halves.append(g.node("Gather", [rows, f"{name}_index"], f"{name}_words"))  # (B, W, H)
    words = g.node("Concat", halves, "words", axis=-1)  # (B, W, 2H)
    if opts.shape_dim:
        shapes = g.node("Gather", [g.const("shape_embed", state["head.shape_embed.weight"]), "shape"], "shapes")
        words = g.node("Concat", [words, shapes], "words_shapes", axis=-1)  # (B, W, 2H + S)
    if opts.char_dim:  # the host feeds the words' bytes as rows (B*W, C), and each word's byte count
        x = g.node("Gather", [g.const("char_embed", state["head.char_embed.weight"]), "chars"], "char_vecs")
        x = g.node("Transpose", [x], "char_vecs_tb", perm=[1, 0, 2])  # (N, C, E) → (C, N, E)
        lstm = ("head.char_lstm", ["_l0", "_l0_reverse"], "bidirectional", "char_lstm", "lstm")
        h = g.rnn(x, "char_lengths", *lstm, final=True)  # (2, N, c)
        h = g.node("Transpose", [h], "char_final", perm=[1, 0, 2])  # (N, 2, c)
        minus1 = g.const("minus1", np.array([-1], dtype=np.int64))
        bw = g.node("Concat", [g.node("Shape", ["fwd_index"], "bw"), minus1], "spellings_shape", axis=0)  # [B, W, -1]
        spellings = g.node("Reshape", [h, bw], "spellings")  # (B, W, 2c)
        words = g.node("Concat", [words, spellings], "words_spellings", axis=-1)
    if opts.word_hidden:
        x = g.node("Transpose", [words], "words_tb", perm=[1, 0, 2])  # (W, B, D)
        y = g.rnn(x, "word_lengths", "head.word_lstm", ["_l0", "_l0_reverse"], "bidirectional", "word_lstm", "lstm")
        y = g.node("Transpose", [y], "word_lstm_bt", perm=[2, 0, 1, 3])  # (W, 2, B, h) → (B, W, 2, h)
        words = g.node("Reshape", [y, g.const("word_lstm_shape", np.array([0, 0, -1], dtype=np.int64))], "word_out")
    proj = g.node("MatMul", [words, g.const("proj_w", state["head.proj.weight"].T.copy())], "proj")
    g.node("Add", [proj, g.const("proj_b", state["head.proj.bias"])], "emissions")  # (B, W, L)
    nodes, inits = g.nodes, g.inits

    inputs, outputs = io_tensors(opts.shape_dim > 0, opts.char_dim > 0)
    crf = {
        "labels": bioes_labels(labels) if opts.scheme == "bioes" else list(labels),
        "transitions": state["head.crf.transitions"].tolist(),
        "start": state["head.crf.start"].tolist(),
        "end": state["head.crf.end"].tolist(),
    }
    return nodes, inits, inputs, outputs, {"crf": crf}


def io_tensors(shapes: bool, chars: bool) -> tuple[list, list]:
    """The graph's inputs (what OnnxTagger.feed gives) and its one output."""
    inputs = [
        tensor("tokens", "int64", ["B", "T"]),
        tensor("lengths", "int32", ["B"]),
        tensor("fwd_index", "int64", ["B", "W"]),  # rows of (B*T) states: see OnnxTagger.feed
        tensor("bwd_index", "int64", ["B", "W"]),
        tensor("word_lengths", "int32", ["B"]),
    ]
    if shapes:
        inputs.append(tensor("shape", "int64", ["B", "W"]))
    if chars:
        inputs += [tensor("chars", "int64", ["N", "C"]), tensor("char_lengths", "int32", ["N"])]  # N = B*W
    return inputs, [tensor("emissions", "float", ["B", "W", "L"])]


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
        # a BIOES CRF's paths map back to BIO ids, as TagHead.decode does; a BIO CRF's are BIO already
        bioes = any(t[:2] in ("E-", "S-") for t in crf_labels)
        self.to_bio = np.array(bio_ids(crf_labels, bio)) if bioes else None
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
        if "chars" in self.inputs:
            chars = pad_chars([f["chars"] for f in features])  # (B, W, C), W as in first
            feed["chars"] = chars.reshape(-1, chars.shape[-1])  # (B*W, C)
            feed["char_lengths"] = np.maximum(1, (feed["chars"] != 0).sum(1)).astype(np.int32)  # as heads/tag.py
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
        out: list = [None] * len(features)
        groups = length_groups(features, batch_tokens)
        for idx, paths in in_threads(self.decode, features, groups, workers or self.threads):
            for j, p in zip(idx, paths):
                out[j] = p
        return out, None
