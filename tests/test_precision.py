"""train.precision = "fastest": the choice by timing, what the timing leaves alone, and a run that resumes."""

from __future__ import annotations

import itertools

import pytest
import torch
from conftest import TINY, run_cli

from lstmtext.checkpoint import read_meta
from lstmtext.training import precision


def test_faster_takes_the_fastest_pass_and_fp32_on_a_tie():
    assert precision.faster({"fp32": [1.0, 2.0, 3.0], "bf16": [0.5, 0.6, 9.0]}) == "bf16"
    assert precision.faster({"fp32": [1.0, 1.1, 5.0], "bf16": [0.2, 1.2, 1.3]}) == "bf16"  # not by the median
    assert precision.faster({"fp32": [0.9, 1.1, 1.0], "bf16": [1.0, 0.95, 1.0]}) == "fp32"
    assert precision.faster({"fp32": [1.0, 1.0, 1.0], "bf16": [1.0, 1.5, 1.0]}) == "fp32"  # a tie: the exact one


def test_time_model_alternates_skips_the_warm_up_and_leaves_model_and_rng_alone():
    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import lm

    recipe = resolve_recipe("lm", None, ["encoder.embed_dim=16", "encoder.hidden_dim=16"])
    torch.manual_seed(0)
    model = lm.build_model(recipe, 300, [])
    batch = lm.collate([{"ids": torch.randint(5, 300, (12,)).tolist(), "length": 12}] * 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # Each pass reads the clock twice; the passes run fp32, bf16, fp32, bf16, ... and last 100 s (the warm-ups),
    # then 2 s (fp32) and 1 s (bf16).
    lengths = itertools.chain([100, 100], itertools.cycle([2, 1]))
    ticks = itertools.chain.from_iterable((0.0, float(n)) for n in lengths)
    rng = torch.get_rng_state()
    times = precision.time_model(model, batch, torch.device("cpu"), clock=lambda: next(ticks))
    assert times == {"fp32": [2.0] * precision.REPEATS, "bf16": [1.0] * precision.REPEATS}
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("bf16_seconds, chosen", [(0.5, "bf16"), (2.0, "fp32")])
def test_train_fastest_trains_in_the_faster_and_a_resumed_run_keeps_it(tmp_path, monkeypatch, bf16_seconds, chosen):
    monkeypatch.setattr(precision, "native_bf16", lambda: True)
    timed = []

    def fake_times(model, batch, device):
        timed.append(batch["tokens"].shape)
        return {"fp32": [1.0, 1.0, 1.0], "bf16": [bf16_seconds] * 3}

    monkeypatch.setattr(precision, "time_model", fake_times)
    out = tmp_path / "m.ckpt"
    args = [
        "train",
        "sentiment",
        "-o",
        out,
        "--epochs",
        "2",
        "--set",
        "train.precision=fastest",
        "--set",
        "train.eval_every=5",
        *TINY,
    ]
    first = run_cli(*args, "--set", "train.max_steps=7")
    assert first.returncode == 0, first.stderr
    assert f"train.precision fastest: {chosen} (the first batch, forward and backward: fp32 1000 ms" in first.stderr
    assert read_meta(out)["provenance"]["precision"] == chosen
    assert read_meta(tmp_path / "m.resume.safetensors")["precision"] == chosen
    assert len(timed) == 1
    # resumed: the stored choice, not timed again, even where the timing would now say otherwise
    monkeypatch.setattr(precision, "time_model", lambda *a: pytest.fail("timed again on resuming"))
    second = run_cli("train", "sentiment", "-o", out, "--resume", "--set", "train.max_steps=0")
    assert second.returncode == 0, second.stderr
    meta = read_meta(out)
    assert meta["provenance"]["precision"] == chosen and meta["recipe"]["train"]["precision"] == "fastest"


def test_train_fastest_without_bf16_instructions_is_fp32_untimed(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "native_bf16", lambda: False)
    monkeypatch.setattr(precision, "time_model", lambda *a: pytest.fail("timed on a CPU without bf16"))
    out = tmp_path / "m.ckpt"
    run = run_cli("train", "sentiment", "-o", out, "--epochs", "1", "--set", "train.precision=fastest", *TINY)
    assert run.returncode == 0, run.stderr
    assert "train.precision fastest: fp32 (this CPU has no bf16 instructions)" in run.stderr
    assert read_meta(out)["provenance"]["precision"] == "fp32"


def test_fastest_is_a_training_precision_only():
    from conftest import assert_usage_error

    assert_usage_error(run_cli("evaluate", "x.ckpt", "y.tsv", "--precision", "fastest"), "'fastest' is not one of")
    typo = run_cli("train", "sentiment", "-o", "x.ckpt", "--set", "train.precision=fastes")
    assert_usage_error(typo, "train.precision", "fastest")
