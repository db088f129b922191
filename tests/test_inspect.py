"""lstmtext inspect (lstmtext/inspect.py): gates and cell states recomputed from the LSTM equations match the
encoder's own output, units are ranked by how they follow a feature, and the heatmap is a real picture."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import assert_usage_error, run_cli

import lstmtext
from lstmtext import inspect as core
from lstmtext.encoder import Encoder
from lstmtext.errors import UsageError

TEXT = 'She said "the film was 2 hours long" and left at 9.'


@pytest.fixture(scope="module")
def predictor(sentiment_ckpt):
    return lstmtext.load(sentiment_ckpt)


def test_recomputed_h_equals_the_encoder_output_in_both_directions(predictor):
    tr = core.trace(predictor, TEXT)
    ids = predictor.tok.encode_one(TEXT)
    with torch.no_grad():
        states = predictor.model.encoder(torch.tensor([ids]), torch.tensor([len(ids)]))[0]  # (T, 2H)
    H = predictor.model.encoder.hidden_dim
    assert tr.pieces == predictor.tok.pieces(TEXT) and len(tr.spans) == len(ids)
    assert (tr.states["forward"]["h"] - states[:, :H]).abs().max() < 1e-5
    assert (tr.states["backward"]["h"] - states[:, H:]).abs().max() < 1e-5


def test_every_layer_matches_nn_lstm_and_gates_are_gates():
    torch.manual_seed(0)
    enc = Encoder(50, embed_dim=12, hidden_dim=8, num_layers=2).eval()
    x = enc.embed(torch.randint(4, 50, (1, 9)))  # (1, T, E)
    layers = core.lstm_steps(enc.fwd, x[0])
    with torch.no_grad():
        assert (layers[1]["h"] - enc.fwd(x)[0][0]).abs().max() < 1e-5  # the top layer: nn.LSTM's output
        first = torch.nn.LSTM(12, 8, batch_first=True)
        first.load_state_dict({k[:-1] + "0": v for k, v in enc.fwd.state_dict().items() if k.endswith("_l0")})
        assert (layers[0]["h"] - first(x)[0][0]).abs().max() < 1e-5  # the layer below, on its own
    for layer in layers:
        assert all(tuple(layer[s].shape) == (9, 8) for s in core.SERIES)
        for gate in "ifo":
            assert layer[gate].min() >= 0 and layer[gate].max() <= 1
        assert layer["g"].min() >= -1 and layer["g"].max() <= 1
        # c_t = f_t * c_{t-1} + i_t * g_t, and h_t = o_t * tanh(c_t)
        prev = torch.cat([torch.zeros(1, 8), layer["cell"][:-1]])
        assert torch.allclose(layer["cell"], layer["f"] * prev + layer["i"] * layer["g"], atol=1e-6)
        assert torch.allclose(layer["h"], layer["o"] * layer["cell"].tanh(), atol=1e-6)


def test_a_unit_made_to_follow_a_feature_ranks_first(sentiment_ckpt):
    """Forward unit 5 is wired to hold 'this piece has a digit': input gate open, forget gate shut, its
    candidate the embedding's column 0, which is set to 1 on digit pieces and 0 elsewhere."""
    p = lstmtext.load(sentiment_ckpt)
    enc, H, u = p.model.encoder, p.model.encoder.hidden_dim, 5
    digit = torch.tensor([any(c.isdigit() for c in p.tok.decode([i])) for i in range(len(p.tok))])  # '<0x32>' is 2
    with torch.no_grad():
        enc.embed.weight[:, 0] = digit.float()
        for k in range(4):  # i, f, g, o rows of unit u: only the embedding's column 0 reaches it
            enc.fwd.weight_ih_l0[k * H + u] = 0
            enc.fwd.weight_hh_l0[k * H + u] = 0
        enc.fwd.bias_hh_l0[[u, H + u, 2 * H + u, 3 * H + u]] = 0
        enc.fwd.bias_ih_l0[[u, H + u, 2 * H + u, 3 * H + u]] = torch.tensor([30.0, -30.0, -3.0, 0.0])
        enc.fwd.weight_ih_l0[2 * H + u, 0] = 6.0  # g = tanh(6 * digit - 3): about +1 on a digit, -1 elsewhere
    corr = core.Correlation()
    for text in (TEXT, "4 stars out of 5", "no numbers here at all"):
        tr = core.trace(p, text)
        corr.add(tr, core.feature_values("regex:[0-9]", text, tr.spans))
    ranking = corr.ranking("regex:[0-9]")
    assert ranking[0]["direction"] == "forward" and ranking[0]["unit"] == u and ranking[0]["r"] > 0.99
    assert len(ranking) == 2 * H and all(abs(a["r"]) >= abs(b["r"]) for a, b in zip(ranking, ranking[1:]))


def test_features():
    text = 'a "bc" d'
    assert core.quote_mask(text) == [False, False, True, True, True, True, False, False]
    spans = [(0, 1), (2, 3), (3, 5), (5, 6), (7, 8)]
    assert core.feature_values("quote", text, spans) == [0, 1, 1, 1, 0]
    assert core.feature_values("position", text, spans) == [0, 1, 2, 3, 4]
    assert core.feature_values("regex:[bd]", text, spans) == [0, 0, 1, 0, 1]


def test_cli_json_dump_and_ranking(sentiment_ckpt, predictor):
    proc = run_cli("inspect", sentiment_ckpt, "--text", TEXT, "--units", "0,3", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    tr = core.trace(predictor, TEXT)
    assert out["pieces"] == tr.pieces and out["layer"] == 0 and set(out["directions"]) == {"forward", "backward"}
    for direction in ("forward", "backward"):
        assert set(out["directions"][direction]) == {"0", "3"}
        unit = out["directions"][direction]["3"]
        assert set(unit) == set(core.SERIES)
        assert unit["cell"] == pytest.approx(tr.states[direction]["cell"][:, 3].tolist(), abs=1e-5)
    proc = run_cli("inspect", sentiment_ckpt, "--text", TEXT, "--rank-by", "quote", "--top", "3", "-f", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["rank_by"] == "quote" and len(out["ranking"]) == 3
    shown = [(d, int(u)) for d, units in out["directions"].items() for u in units]
    assert sorted(shown) == sorted((r["direction"], r["unit"]) for r in out["ranking"])


def test_cli_table_and_plot(sentiment_ckpt, tmp_path):
    from matplotlib.image import imread

    png = tmp_path / "cells.png"
    proc = run_cli("inspect", sentiment_ckpt, "--text", TEXT, "--top", "2", "--rank-by", "position", "--plot", png)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and "cell state" in proc.stderr and "Pearson r" in proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = imread(png)
    assert pixels.shape[0] > 200 and pixels.shape[1] > 400
    assert len(torch.from_numpy(pixels[..., :3]).reshape(-1, 3).unique(dim=0)) > 50  # a picture, not one colour


def test_cli_ranks_over_an_input_file(sentiment_ckpt, tmp_path):
    src = tmp_path / "lines.txt"
    src.write_text('he said "yes" then\n\nshe said "no" again\n', encoding="utf-8")
    proc = run_cli("inspect", sentiment_ckpt, "--input", src, "--rank-by", "quote", "--top", "4", "-f", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["ranking"]) == 4 and "pieces" not in out


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--text", "no quotes here", "--rank-by", "quote"], "the feature is the same on every piece"),
        (["--text", "x y", "--rank-by", "entity"], "needs a model that tags entities (this is a sentiment model)"),
        (["--text", "x y", "--rank-by", "colour"], "expected quote, position, entity"),
        (["--text", "x y", "--rank-by", "regex:("], "not a regular expression"),
        (["--text", "x y", "--layer", "3"], "this encoder has 1 layer"),
        (["--text", "x y", "--units", "0,99"], "32 units per direction"),
        (["--text", "x y", "--units", "a"], "expected unit numbers"),
        (["--text", "x y", "--units", "1", "--top", "2"], "pass one"),
        (["--input", "x.txt"], "needs --rank-by"),
        ([], "pass --text"),
    ],
)
def test_cli_bad_input(sentiment_ckpt, args, fragment):
    assert_usage_error(run_cli("inspect", sentiment_ckpt, *args), fragment)


def test_a_gru_encoder_is_refused_in_one_line():
    enc = Encoder(50, embed_dim=12, hidden_dim=8, cell="gru")
    with pytest.raises(UsageError, match="gates are shown for LSTM encoders; this checkpoint's encoder is a GRU"):
        core.encoder_of(SimpleNamespace(model=SimpleNamespace(encoder=enc)))
    with pytest.raises(UsageError, match="encoder is a GRU"):
        core.lstm_steps(enc.fwd, torch.zeros(3, 12))
