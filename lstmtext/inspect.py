"""Cell states and gates of the encoder's LSTMs over a text, and which units follow a feature of it.

The view of Karpathy, Johnson & Fei-Fei (2015), "Visualizing and understanding recurrent networks": for each
piece of a text, the input, forget and output gates (i, f, o), the candidate (g), the cell state (c) and the
hidden state (h) of chosen units, in the forward stack and in the backward stack. nn.LSTM returns only h, so
``lstm_steps`` re-runs the LSTM equations one step at a time from the layer's own weights (PyTorch's gate order
i, f, g, o); the h it computes equals nn.LSTM's output, which is what makes the gates it reports the model's.

The backward stack reads the text from its end; its states are reported aligned to the pieces in reading order
(position t: the state after reading pieces t … last), as ``Encoder.backward_stack`` returns them.

Ranking correlates each unit's cell state with a feature of the pieces (inside a quotation, position in the
line, matching a pattern, inside a predicted entity): the Pearson correlation over every piece read, from
running sums, so a long input file costs memory for one line at a time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from lstmtext.errors import UsageError

GATES = ("i", "f", "g", "o")  # PyTorch's order of the four blocks of weight_ih / weight_hh rows
SERIES = ("cell", "h", "i", "f", "g", "o")  # what a trace holds per direction: (T, H) each
FEATURES = ("quote", "position", "entity")  # --rank-by names; "regex:PATTERN" besides


# -- the LSTM equations ------------------------------------------------------------------------------------
def lstm_steps(lstm, x, layers: int | None = None) -> list[dict]:
    """x (T, E), one sequence → per layer {"i", "f", "g", "o", "cell", "h"}, each (T, H) float32, from the
    equations of nn.LSTM applied one step at a time with its own weights, from zero states; the first
    ``layers`` layers (default all), each reading the h of the one below (no dropout: inference)."""
    import torch

    if not isinstance(lstm, torch.nn.LSTM):
        raise UsageError(
            f"inspect: gates are shown for LSTM encoders; this checkpoint's encoder is a {type(lstm).__name__}"
        )
    H = lstm.hidden_size
    out: list[dict] = []
    inp = x.float()
    with torch.no_grad():
        for k in range(lstm.num_layers if layers is None else layers):
            w_ih, w_hh = getattr(lstm, f"weight_ih_l{k}").float(), getattr(lstm, f"weight_hh_l{k}").float()
            bias = torch.zeros(4 * H, device=x.device)
            if lstm.bias:
                bias = getattr(lstm, f"bias_ih_l{k}").float() + getattr(lstm, f"bias_hh_l{k}").float()
            pre_x = inp @ w_ih.T + bias  # (T, 4H): the input's share of every step at once
            h = torch.zeros(H, device=x.device)
            c = torch.zeros(H, device=x.device)
            rows: dict[str, list] = {name: [] for name in SERIES}
            for t in range(inp.shape[0]):
                i, f, g, o = (pre_x[t] + w_hh @ h).chunk(4)
                i, f, g, o = i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid()
                c = f * c + i * g
                h = o * c.tanh()
                for name, v in zip(SERIES, (c, h, i, f, g, o)):
                    rows[name].append(v)
            layer = {name: torch.stack(v) if v else torch.zeros(0, H) for name, v in rows.items()}
            out.append(layer)
            inp = layer["h"]
    return out


@dataclass
class Trace:
    """The states of one text: ``pieces`` (their strings), ``spans`` (character spans in the text), and per
    direction ("forward", "backward") per series (SERIES) a (T, H) tensor, of layer ``layer``."""

    text: str
    pieces: list[str]
    spans: list[tuple[int, int]]
    layer: int
    states: dict


def encoder_of(predictor):
    encoder = predictor.model.encoder
    if encoder.cell != "lstm":
        raise UsageError(
            f"inspect: gates are shown for LSTM encoders; this checkpoint's encoder is a {encoder.cell.upper()} "
            "(encoder.cell = lstm to train one)"
        )
    return encoder


def check_layer(encoder, layer: int | None) -> int:
    """The layer to show, 0-based; None is the last."""
    n = encoder.num_layers
    if layer is None:
        return n - 1
    if not 0 <= layer < n:
        raise UsageError(f"--layer {layer}: this encoder has {n} layer{'s' if n > 1 else ''} (0 to {n - 1})")
    return layer


def directions(encoder) -> tuple[str, ...]:
    """A forward-only LM never trained its backward stack: its states mean nothing, so only forward is shown."""
    return ("forward", "backward") if encoder.run_backward else ("forward",)


def piece_spans(tok, text: str) -> tuple[list[int], list[str], list[tuple[int, int]]]:
    """ids, piece strings and each piece's character span in ``text`` (SentencePiece's own offsets)."""
    m = tok.sp.EncodeAsOffsetMapping(text)  # offsets in characters of the text as given
    return list(m["ids"]), list(m["pieces"]), [tuple(span) for span in m["offsets"]]


def trace(predictor, text: str, layer: int | None = None) -> Trace:
    """The states of ``text``'s pieces in the encoder of a loaded checkpoint (lstmtext.load)."""
    import torch

    encoder = encoder_of(predictor)
    k = check_layer(encoder, layer)
    ids, pieces, spans = piece_spans(predictor.tok, text)
    if not ids:
        raise UsageError("inspect: the text is empty; pass some words with --text")
    device = next(encoder.parameters()).device
    with torch.no_grad():
        x = encoder.embed(torch.tensor(ids, device=device))  # (T, E), no dropout: inference
    states = {}
    for name in directions(encoder):
        back = name == "backward"  # reads from the end; its states are put back in reading order
        layers = lstm_steps(encoder.bwd if back else encoder.fwd, x.flip(0) if back else x, k + 1)
        states[name] = {s: (v.flip(0) if back else v).cpu() for s, v in layers[k].items()}
    return Trace(text, pieces, spans, k, states)


def dump(tr: Trace, units: list[tuple[str, int]]) -> dict:
    """The JSON form: pieces, then per direction per unit (as a string key) its series as lists."""
    out: dict = {
        "text": tr.text,
        "pieces": tr.pieces,
        "spans": [list(span) for span in tr.spans],
        "layer": tr.layer,
        "directions": {},
    }
    for direction, unit in units:
        series = tr.states[direction]
        out["directions"].setdefault(direction, {})[str(unit)] = {
            s: [round(float(v), 6) for v in series[s][:, unit]] for s in SERIES
        }
    return out


def labels(pieces: list[str], spans: list[tuple[int, int]], text: str) -> list[str]:
    """What to print for each piece: its text in the line; a lone word-start mark '▁' as '_', and the bytes of a
    character spelled in byte pieces as '<0xNN>' but the last, which shows the character."""
    return [
        text[s:e].strip() or p.replace("\u2581", "_") if e > s else p.replace("\u2581", "_")
        for p, (s, e) in zip(pieces, spans)
    ]


# -- features and ranking ----------------------------------------------------------------------------------
def check_feature(name: str, predictor) -> str:
    if name in ("quote", "position") or name.startswith("regex:"):
        if name.startswith("regex:"):
            try:
                re.compile(name[len("regex:") :])
            except re.error as e:
                raise UsageError(f"--rank-by {name}: not a regular expression ({e})") from None
        return name
    if name == "entity":
        # a model that tags entities says so in its results (asked of the model, not of its task's name)
        probe = predictor.predict("A")
        if not (isinstance(probe, dict) and "entities" in probe):
            raise UsageError(f"--rank-by entity: needs a model that tags entities (this is a {predictor.task} model)")
        return name
    raise UsageError(f"--rank-by {name}: expected quote, position, entity (NER models) or regex:PATTERN")


def quote_mask(text: str) -> list[bool]:
    """Per character: inside a "…" span (the quote marks themselves count as inside). Straight quotes pair up
    in order; curly quotes open and close."""
    inside, out = False, []
    for ch in text:
        if ch in '"“”':
            opening = ch == "“" or (ch == '"' and not inside)
            out.append(True)
            inside = opening
            continue
        out.append(inside)
    return out


def feature_values(name: str, text: str, spans: list[tuple[int, int]], predictor=None) -> list[float]:
    """One number per piece: 1/0 for quote, regex and entity (any character of the piece inside), the
    piece's index in the line for position."""
    if name == "position":
        return [float(t) for t in range(len(spans))]
    if name == "quote":
        mask = quote_mask(text)
    elif name == "entity":
        mask = [False] * len(text)
        for ent in predictor.predict(text)["entities"]:
            mask[ent["start"] : ent["end"]] = [True] * (ent["end"] - ent["start"])
    else:
        mask = [False] * len(text)
        for m in re.finditer(name[len("regex:") :], text):
            mask[m.start() : m.end()] = [True] * (m.end() - m.start())
    return [1.0 if any(mask[s:e]) else 0.0 for s, e in spans]


class Correlation:
    """Pearson correlation of every unit's cell state with a feature, from running sums over the pieces."""

    def __init__(self):
        self.n = 0
        self.sums: dict = {}

    def add(self, tr: Trace, feature: list[float]) -> None:
        import torch

        y = torch.tensor(feature, dtype=torch.float64)  # (T,)
        self.n += len(feature)
        for direction, series in tr.states.items():
            x = series["cell"].double()  # (T, H)
            add = {"x": x.sum(0), "xx": (x * x).sum(0), "xy": (x * y[:, None]).sum(0), "y": y.sum(), "yy": y @ y}
            acc = self.sums.setdefault(direction, {k: 0 for k in add})
            for k, v in add.items():
                acc[k] = acc[k] + v

    def ranking(self, name: str) -> list[dict]:
        """Every (direction, unit), strongest |r| first; a unit whose cell never changes has r = 0."""
        if self.n < 2:
            raise UsageError(f"--rank-by {name}: needs at least two pieces of text")
        rows = []
        for direction, s in self.sums.items():
            n = self.n
            var_y = float(s["yy"]) / n - (float(s["y"]) / n) ** 2
            if var_y <= 1e-12:
                raise UsageError(
                    f"--rank-by {name}: the feature is the same on every piece of the text, so nothing can follow "
                    "it; give text where it varies"
                )
            cov = s["xy"] / n - (s["x"] / n) * (float(s["y"]) / n)
            var_x = (s["xx"] / n - (s["x"] / n) ** 2).clamp(min=0)
            for unit, (c, v) in enumerate(zip(cov.tolist(), var_x.tolist())):
                r = c / math.sqrt(v * var_y) if v > 1e-12 else 0.0
                rows.append({"direction": direction, "unit": unit, "r": round(max(-1.0, min(1.0, r)), 6)})
        rows.sort(key=lambda row: (-abs(row["r"]), row["direction"], row["unit"]))
        return rows


def most_active(tr: Trace, n: int) -> list[tuple[str, int]]:
    """Without a feature, the units whose cell state varies most over the text, strongest first."""
    scored = []
    for direction, series in tr.states.items():
        spread = series["cell"].std(0, unbiased=False) if series["cell"].shape[0] > 1 else series["cell"][0].abs()
        scored += [(-float(v), direction, u) for u, v in enumerate(spread)]
    return [(d, u) for _, d, u in sorted(scored)[:n]]
