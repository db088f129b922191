"""What every task's ONNX export shares (lstmtext export; export.py): a builder of nodes and initializers from
torch's weights, and the shared encoder's two stacks as ONNX recurrent nodes. (Running the batches is
tasks/common.py's ``length_groups`` and ``in_threads``, as for the torch model.)

The encoder's stacks are ONNX ``LSTM``/``GRU`` nodes with ``sequence_lens``: onnxruntime's CPU kernels reverse each
sequence within its own length for the reverse direction, as encoder.py's backward stack does, and leave zeros
past it. Nothing here imports torch; onnx only inside the builder.
"""

from __future__ import annotations

import numpy as np

# ONNX orders an LSTM's gates (i, o, f, c) and a GRU's (z, r, h); torch orders them (i, f, g, o) and (r, z, n).
GATE_ORDER = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2)}


class Graph:
    """Nodes and initializers of one graph, built from ``state`` (torch's weights as numpy arrays, by name)."""

    def __init__(self, state: dict):
        self.state, self.nodes, self.inits = state, [], []

    def const(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, kind: str, ins: list[str], out: str, outputs: list[str] | None = None, **attrs) -> str:
        """A node named ``out`` with the one output ``out``, or ``outputs`` ("" for one left unnamed)."""
        from onnx import helper

        self.nodes.append(helper.make_node(kind, ins, outputs or [out], name=out, **attrs))
        return out

    def rnn(
        self, x: str, lens: str, prefix: str, suffixes: list[str], direction: str, out: str, cell: str, final=False
    ) -> str:
        """One ONNX recurrent node over x (T, B, D) from torch's ``prefix.weight_ih{suffix}`` etc., one suffix per
        direction → (T, num_directions, B, hidden), or with ``final`` each sequence's last state in each
        direction (num_directions, B, hidden)."""
        hidden = self.state[f"{prefix}.weight_hh{suffixes[0]}"].shape[1]
        order = GATE_ORDER[cell]

        def gates(a: np.ndarray) -> np.ndarray:  # torch's gate blocks in ONNX's order
            return np.concatenate([a[k * hidden : (k + 1) * hidden] for k in order])

        def weights(kind: str) -> np.ndarray:
            return np.stack([gates(self.state[f"{prefix}.{kind}{s}"]) for s in suffixes])  # (D, G*h, in)

        bias = np.concatenate([weights("bias_ih"), weights("bias_hh")], axis=1)  # (D, 2*G*h)
        extra = {"linear_before_reset": 1} if cell == "gru" else {}  # torch's GRU applies r after the product
        ins = [x, self.const(f"{out}.W", weights("weight_ih")), self.const(f"{out}.R", weights("weight_hh"))]
        ins += [self.const(f"{out}.B", bias), lens]
        outputs = ["", out] if final else [out]
        return self.node(cell.upper(), ins, out, outputs, direction=direction, hidden_size=hidden, **extra)

    def encoder(self, enc) -> tuple[str, str]:
        """The shared encoder over inputs ``tokens`` (B, T) and ``lengths`` (B,) → the names of its forward and
        backward stacks' states, each (B, T, H)."""
        squeeze1 = self.const("axes1", np.array([1], dtype=np.int64))
        x = self.node("Gather", [self.const("embed", self.state["encoder.embed.weight"]), "tokens"], "embedded")
        x = self.node("Transpose", [x], "embedded_tb", perm=[1, 0, 2])  # (B, T, E) → (T, B, E)
        out = []
        for stack, direction in (("fwd", "forward"), ("bwd", "reverse")):
            h = x
            for k in range(enc.num_layers):
                y = self.rnn(h, "lengths", f"encoder.{stack}", [f"_l{k}"], direction, f"{stack}{k}", enc.cell)
                h = self.node("Squeeze", [y, squeeze1], f"{stack}{k}_out")  # (T, 1, B, H) → (T, B, H)
            out.append(self.node("Transpose", [h], f"{stack}_bt", perm=[1, 0, 2]))  # (B, T, H)
        return out[0], out[1]


def tensor(name: str, kind: str, dims: list):
    """A graph input or output: kind is "int64", "int32", "float" or "bool"."""
    from onnx import TensorProto, helper

    return helper.make_tensor_value_info(name, getattr(TensorProto, kind.upper()), dims)
