"""lm.carry_state: truncated BPTT. Batches in text order, and a training step that continues the last one's rows
from their final state, which equals reading each run of windows as one sequence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY, run_cli

from lstmtext.config import build_recipe
from lstmtext.model import Model
from lstmtext.tasks import lm
from lstmtext.tasks.lm_carry import CarryLM, carry_batches
from lstmtext.tokenizer import Tokenizer

SAMPLE = REPO / "data" / "lm" / "train.txt"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:400]
    return Tokenizer.train((l for l in lines if l.strip()), vocab_size=400)


@pytest.mark.parametrize("n,rows,world", [(10, 3, 1), (7, 1, 1), (23, 3, 2), (40, 4, 3), (1, 4, 1)])
def test_carry_batches_give_each_process_rows_that_continue_the_text(n, rows, world):
    batches = [b.tolist() for b in carry_batches(n, rows, world)]
    seen = [i for b in batches for i in b]
    assert len(seen) == len(set(seen)) and all(0 <= i < n for i in seen)
    assert sorted(seen) == list(range(n // world * world))  # under torchrun fewer than `world` are left out
    if world == 1:
        assert batches == lm.stream_rows(n, rows)
    assert len(batches) % world == 0  # every process gets the same number of steps
    for rank in range(world):
        mine = batches[rank::world]
        for j in range(1, len(mine)):  # row b of a step is the window after row b of the step before
            assert [i - 1 for i in mine[j]] == mine[j - 1][: len(mine[j])]


def _recipe(*extra: str):
    over = ["encoder.embed_dim=16", "encoder.hidden_dim=24", "encoder.embed_dropout=0", "encoder.dropout=0"]
    return build_recipe("lm", lm.Options, lm.DEFAULTS, overrides=over + ["lm.dropout=0", "lm.carry_state=true", *extra])


@pytest.mark.parametrize(
    "extra", [["encoder.num_layers=2", "lm.bidirectional=false"], ["encoder.cell=gru"], ["encoder.num_layers=1"]]
)
def test_carried_steps_equal_each_run_read_as_one_sequence(tok, extra):
    recipe = _recipe("lm.chunk_length=6", "train.batch_tokens=18", *extra)  # 3 rows of 6
    torch.manual_seed(0)
    model = lm.build_model(recipe, len(tok), [])
    assert isinstance(model, CarryLM)
    texts = ["the old town is by a river .", "", "x y z", "a small river"] * 3
    feats = lm.featurize([{"text": t} for t in texts], tok, [], recipe)
    for f, (s, _) in zip(feats, lm.chunk_stream([0] * (sum(f["length"] - 1 for f in feats) + 1), 6)):
        f["start"] = s  # as corpus.Windows gives them
    model.train()
    got: dict[int, list] = {}
    for step in lm.stream_batches(feats_windows(feats), recipe, epoch=0):
        logits, _ = model(lm.collate([feats[i] for i in step]))  # (B, T-1, V)
        for row, i in enumerate(step):
            got[i] = logits[row, : feats[i]["length"] - 1]
    model.eval()  # no dropout anywhere, so training and evaluation compute alike
    runs = [[step[r] for step in lm.stream_rows(len(feats), 3) if r < len(step)] for r in range(3)]
    with torch.no_grad():
        for run in runs:
            ids = feats[run[0]]["ids"] + [p for i in run[1:] for p in feats[i]["ids"][1:]]
            whole, _ = model(lm.collate([{"ids": ids, "length": len(ids)}]))  # (1, len-1, V)
            pieced = torch.cat([got[i] for i in run])  # each window's forward logits, in text order
            torch.testing.assert_close(pieced, whole[0], atol=1e-5, rtol=1e-4)


def feats_windows(feats):
    """What stream_batches reads of a corpus.Windows: its length and (bucketing) its lengths."""

    class W(list):
        lengths = [f["length"] for f in feats]

    return W(feats)


def test_a_window_that_does_not_continue_the_last_batch_starts_blank(tok):
    recipe = _recipe("lm.chunk_length=6")
    torch.manual_seed(0)
    model = lm.build_model(recipe, len(tok), []).train()
    feats = lm.featurize([{"text": "the old town is by a river . x y z " * 3}], tok, [], recipe)
    assert len(feats) >= 4
    for k, f in enumerate(feats):
        f["start"] = k * 5
    model(lm.collate([feats[0], feats[1]]))
    later = lm.collate([feats[3], feats[0]])  # row 0 does not follow window 0, nor row 1 window 1
    carried, _ = model(later)
    blank, _ = Model.forward(model, later)
    torch.testing.assert_close(carried, blank)
    model(lm.collate([feats[0], feats[3]]))
    follows = lm.collate([feats[1], feats[2]])  # row 0 follows window 0; row 1 does not follow window 3
    carried, _ = model(follows)
    blank, _ = Model.forward(model, follows)
    assert not torch.allclose(carried[0], blank[0])
    torch.testing.assert_close(carried[1], blank[1])


CARRY = ["lm.carry_state=true", "lm.bidirectional=false", "train.epochs=2", "train.eval_every=10", "train.patience=0"]


def _train(out, *overrides, **kw):
    from lstmtext.training import train

    settings = [a for a in TINY if a != "--set"]
    return train("lm", overrides=[*settings, *CARRY, *overrides], out=out, show_progress=False, **kw)


def test_training_carries_every_row_after_an_epochs_first_batch(tmp_path, monkeypatch):
    """Through the real loop: batches come in text order and each one after an epoch's first continues every row
    but the ones past the end of a run; the checkpoint keeps the setting, and evaluate reads it."""
    real, kept = CarryLM._carried, []

    def spy(self, starts):
        hx = real(self, starts)
        kept.append((0 if hx is None else int((hx[0].abs().sum((0, 2)) > 0).sum()), len(starts)))
        return hx

    monkeypatch.setattr(CarryLM, "_carried", spy)
    out = tmp_path / "carry.ckpt"
    summary = _train(out)
    per_epoch = summary["steps"] // 2
    assert per_epoch > 5 and len(kept) == summary["steps"]
    for epoch in range(2):
        steps = kept[epoch * per_epoch : (epoch + 1) * per_epoch]
        assert steps[0][0] == 0  # an epoch starts blank
        assert all(k == n for k, n in steps[1:])  # then every row continues (the rows still going are a prefix)
    info = run_cli("info", out, "--format", "json")
    assert info.returncode == 0 and json.loads(info.stdout)["recipe"]["lm"]["carry_state"] is True
    ev = run_cli("evaluate", out, REPO / "data" / "lm" / "dev.txt", "--format", "json")
    assert ev.returncode == 0 and json.loads(ev.stdout)["ppl_word"] > 1


def test_a_resumed_carry_run_continues_exactly(tmp_path):
    from test_resume import _assert_same_run

    torch.set_num_threads(1)
    full = tmp_path / "full.ckpt"
    steps = _train(full)["steps"]
    out = tmp_path / "part.ckpt"
    assert _train(out, "train.max_steps=7")["steps"] == 7  # mid-epoch, the state carried into step 8
    assert _train(out, "train.max_steps=0", resume=True)["steps"] == steps
    _assert_same_run(full, out)


TORCHRUN = Path(sys.executable).parent / "torchrun"


@pytest.mark.skipif(not TORCHRUN.exists(), reason=f"torchrun missing: no {TORCHRUN} beside this Python")
def test_under_torchrun_each_process_trains_a_stream_of_its_own(tmp_path):
    from conftest import cli_env

    args = ["train", "lm", "-o", str(tmp_path / "ddp.ckpt"), "--epochs", "1", *TINY]
    args += ["--set", "lm.carry_state=true", "--set", "lm.bidirectional=false"]
    probe = [str(TORCHRUN), "--standalone", "--nproc_per_node", "2", str(REPO / "tests" / "ddp_probe.py")]
    proc = subprocess.run(
        [*probe, str(tmp_path), *args], capture_output=True, text=True, env=cli_env(), cwd=REPO, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    n = len(ranks[0]["lengths"])
    trained = [[b for _, b in r["steps"]] for r in ranks]
    assert len(trained[0]) == len(trained[1]) > 2
    for mine in trained:  # row b of each step is the window after row b of the step before
        for j in range(1, len(mine)):
            assert [i - 1 for i in mine[j]] == mine[j - 1][: len(mine[j])]
    first, second = ({i for b in mine for i in b} for mine in trained)
    assert not first & second and sorted(first | second) == list(range(n // 2 * 2))
