"""A trained classifier as an ONNX graph, and the model object that runs it without torch: the module sentiment
names as its ``ONNX`` for lstmtext export (export.py calls ``graph`` and ``model``).

The graph is the encoder and heads/classify.py's head up to the logits: the pooling over each text's real
pieces (max, mean, both, or attention; the host gives the mask of real pieces) and the MLP, whose GELU is the
exact one (erf), as torch's default. The softmax runs on the host.
"""

from __future__ import annotations

import math

import numpy as np

from lstmtext.onnx_parts import Graph, tensor
from lstmtext.tasks.common import in_threads, length_groups
from lstmtext.tasks.common import pad_ids as pad


def graph(state: dict, recipe, labels: list[str]):
    """(nodes, initializers, inputs, outputs, {}) of the classifier whose weights are ``state``."""
    pooling = recipe.options.pooling
    g = Graph(state)
    states = g.node("Concat", list(g.encoder(recipe.encoder)), "states", axis=-1)  # (B, T, 2H)
    axis1 = g.const("pool_axis", np.array([1], dtype=np.int64))
    minus_inf = g.const("minus_inf", np.array(-np.inf, dtype=np.float32))
    one = g.const("one", np.array(1.0, dtype=np.float32))
    real = g.node("Cast", ["mask"], "mask_f", to=1)  # (B, T, 1) bool → float
    parts = []
    if pooling in ("max", "maxmean"):
        masked = g.node("Where", ["mask", states, minus_inf], "masked")  # (B, T, 2H)
        parts.append(g.node("ReduceMax", [masked], "max_pool", axes=[1], keepdims=0))  # (B, 2H)
    if pooling in ("mean", "maxmean"):
        total = g.node("ReduceSum", [g.node("Mul", [states, real], "kept"), axis1], "sum", keepdims=0)  # (B, 2H)
        count = g.node("ReduceSum", [real, axis1], "count", keepdims=0)  # (B, 1)
        count = g.node("Max", [count, one], "count_1")
        parts.append(g.node("Div", [total, count], "mean_pool"))
    if pooling == "attention":
        score = g.node("MatMul", [states, g.const("score_w", state["head.score.weight"].T.copy())], "score_xw")
        score = g.node("Add", [score, g.const("score_b", state["head.score.bias"])], "score")  # (B, T, 1)
        weights = g.node("Softmax", [g.node("Where", ["mask", score, minus_inf], "score_m")], "attn", axis=1)
        parts.append(
            g.node("ReduceSum", [g.node("Mul", [weights, states], "weighted"), axis1], "attn_pool", keepdims=0)
        )
    pooled = g.node("Concat", parts, "pooled", axis=-1) if len(parts) > 1 else parts[0]  # (B, P)
    h = g.node("MatMul", [pooled, g.const("mlp0_w", state["head.mlp.0.weight"].T.copy())], "mlp0_xw")
    h = g.node("Add", [h, g.const("mlp0_b", state["head.mlp.0.bias"])], "mlp0")  # (B, hidden)
    # GELU(h) = h/2 (1 + erf(h / sqrt 2))
    erf = g.node("Erf", [g.node("Mul", [h, g.const("rsqrt2", np.float32(1 / math.sqrt(2)))], "h_s")], "erf")
    gate = g.node("Mul", [g.node("Add", [erf, one], "erf_1"), g.const("half", np.float32(0.5))], "gate")
    h = g.node("Mul", [h, gate], "gelu")
    logits = g.node("MatMul", [h, g.const("mlp3_w", state["head.mlp.3.weight"].T.copy())], "mlp3_xw")
    g.node("Add", [logits, g.const("mlp3_b", state["head.mlp.3.bias"])], "logits")  # (B, L)
    inputs = [tensor("tokens", "int64", ["B", "T"]), tensor("lengths", "int32", ["B"])]
    inputs.append(tensor("mask", "bool", ["B", "T", 1]))  # True on real pieces
    return g.nodes, g.inits, inputs, [tensor("logits", "float", ["B", "L"])], {}


def model(session, decode: dict, recipe, labels: list[str], threads: int) -> OnnxClassifier:
    return OnnxClassifier(session, threads)


class OnnxClassifier:
    """The sentiment Predictor's model when it comes from an ONNX file: ``classify`` stands in for map_batches
    over the torch model in sentiment.py's predict and evaluate."""

    def __init__(self, session, threads: int):
        self.session, self.threads = session, threads

    def probabilities(self, features: list[dict]) -> list[list[float]]:
        tokens = pad([f["ids"] for f in features])
        lengths = np.array([max(1, f["length"]) for f in features], dtype=np.int32)
        mask = (np.arange(tokens.shape[1])[None, :] < lengths[:, None])[:, :, None]  # (B, T, 1)
        (logits,) = self.session.run(["logits"], {"tokens": tokens, "lengths": lengths, "mask": mask})
        z = np.exp(logits - logits.max(-1, keepdims=True))  # (B, L), softmax as torch's, in float32
        return (z / z.sum(-1, keepdims=True)).tolist()

    def classify(self, features: list[dict], batch_tokens: int, workers: int | None = None):
        """[(indices, class probabilities of each)] over length-bucketed batches."""
        return in_threads(self.probabilities, features, length_groups(features, batch_tokens), workers or self.threads)
