"""Exact resume at every stop (Ctrl-C at any step, kill -9, train.max_steps, the time limit), and the files of
a run: the output lock, --force starting over, stale temp files, checkpoint file modes."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

import pytest
import torch
from conftest import REPO, TINY, assert_usage_error, cli_env, run_cli
from safetensors.torch import load_file

from lstmtext.checkpoint import read_meta
from lstmtext.errors import UsageError

SETTINGS = [a for a in TINY if a != "--set"]
COMPANIONS = ("resume.safetensors", "metrics.jsonl")


@pytest.fixture(autouse=True)
def one_thread():
    """In-process runs with one thread, as the CLI runs of the suite: two threads on two busy cores crawl."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _train(out, *overrides, **kw):
    from lstmtext.training import train

    return train("sentiment", overrides=[*SETTINGS, *overrides], out=out, show_progress=False, **kw)


def _same_files(a, b) -> bool:
    x, y = load_file(str(a)), load_file(str(b))
    return x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)


def _rows(path) -> list[dict]:
    """The metrics log without its timing values."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("time", "tokens_per_s")} for r in rows]


def _companion(out, kind):
    return out.with_name(f"{out.stem}.{kind}")


def _assert_same_run(a, b):
    """Two runs ended in the same checkpoint, resume state (model, optimizer, average, RNG) and metrics log."""
    assert _same_files(a, b)
    assert _same_files(_companion(a, "resume.safetensors"), _companion(b, "resume.safetensors"))
    assert _rows(_companion(a, "metrics.jsonl")) == _rows(_companion(b, "metrics.jsonl"))


@pytest.fixture
def step_hook(monkeypatch):
    """hook(k, action): run ``action()`` inside the k-th training step, before its update."""
    import lstmtext.training.loop as loop

    real = loop.train_step
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    def hook(k, action):
        calls = []

        def step(*args, **kwargs):
            calls.append(1)
            if len(calls) == k:
                action()
            return real(*args, **kwargs)

        monkeypatch.setattr(loop, "train_step", step)

    yield hook
    monkeypatch.setattr(loop, "train_step", real)
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_at_any_step_resumes_exactly(tmp_path, step_hook):
    from lstmtext.training import Interrupted

    args = ["train.epochs=2", "train.eval_every=5", "train.patience=0", "train.ema=0.9"]
    full = tmp_path / "full.ckpt"
    assert _train(full, *args)["steps"] == 36  # 18 steps an epoch
    for k in (1, 5, 7, 18):  # the first step, an evaluation's step, mid-span, the end of the first epoch
        out = tmp_path / f"k{k}.ckpt"
        step_hook(k, lambda: signal.raise_signal(signal.SIGINT))  # arrives mid-step
        with pytest.raises(Interrupted, match=f"interrupted at step {k}; resume state saved to .*k{k}.resume"):
            _train(out, *args)
        assert _loop_state_step(out) == k
        step_hook(0, None)
        assert _train(out, resume=True)["steps"] == 36
        _assert_same_run(full, out)


def _loop_state_step(out) -> int:
    return read_meta(_companion(out, "resume.safetensors"))["loop"]["step"]


def test_max_steps_anywhere_resumes_exactly_and_keeps_the_clock(tmp_path):
    args = ["train.epochs=2", "train.eval_every=0"]  # evaluations at the ends of epochs
    full = tmp_path / "full.ckpt"
    _train(full, *args)
    for m in (7, 18):  # mid-epoch, and the end of the first epoch
        out = tmp_path / f"m{m}.ckpt"
        summary = _train(out, *args, f"train.max_steps={m}")
        assert (summary["stop"], summary["steps"]) == ("max_steps", m)
        first = read_meta(_companion(out, "resume.safetensors"))["loop"]
        summary = _train(out, "train.max_steps=0", resume=True)
        assert (summary["stop"], summary["steps"]) == ("finished", 36)
        _assert_same_run(full, out)
        last = read_meta(_companion(out, "resume.safetensors"))["loop"]
        assert last["elapsed"] > first["elapsed"] and summary["train_seconds"] >= round(first["elapsed"], 1)
        assert last["spent"]["read"] > first["spent"]["read"]  # the second command's reading counts too


def test_sparse_embeddings_resume_exactly(tmp_path):
    """train.sparse_embeddings: DenseSparseAdamW's row moments go through the resume file like AdamW's, so a run
    stopped mid-epoch and resumed ends where the uninterrupted one does."""
    args = ["train.epochs=2", "train.eval_every=0", "train.sparse_embeddings=true"]
    full, out = tmp_path / "full.ckpt", tmp_path / "m.ckpt"
    _train(full, *args)
    _train(tmp_path / "dense.ckpt", *args[:2])
    assert not _same_files(full, tmp_path / "dense.ckpt")  # the option is in force: lazy Adam trains otherwise
    assert _train(out, *args, "train.max_steps=7")["stop"] == "max_steps"
    assert _train(out, "train.max_steps=0", resume=True)["steps"] == 36
    _assert_same_run(full, out)


def test_kill_9_resumes_from_the_last_resume_state_exactly(tmp_path):
    """A run killed at step 12 continues from the resume state of its evaluation at step 10; the killed run's
    half-written temp files are removed and its lock does not hold the next run back."""
    args = [*TINY, "--epochs", "2", "--set", "train.eval_every=5", "-q"]
    full, out = tmp_path / "full.ckpt", tmp_path / "m.ckpt"
    assert run_cli("train", "sentiment", "-o", full, *args).returncode == 0
    overrides = [*SETTINGS, "train.epochs=2", "train.eval_every=5"]
    code = (
        "import os, signal\n"
        "import lstmtext.training.loop as loop\n"
        "real, calls = loop.train_step, []\n"
        "def step(*a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 12:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(*a, **k)\n"
        "loop.train_step = step\n"
        "from lstmtext.training import train\n"
        f"train('sentiment', overrides={overrides!r}, out={str(out)!r}, show_progress=False)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], env=cli_env(), cwd=REPO, capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _loop_state_step(out) == 10
    stale = [tmp_path / ".m.ckpt.4242.0badf00d.tmp", tmp_path / ".m.resume.safetensors.4242.0badf00d.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    again = run_cli("train", "sentiment", "-o", out, "--resume", "-q")
    assert again.returncode == 0, again.stderr
    _assert_same_run(full, out)
    assert not any(p.exists() for p in stale)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("m.")) == [
        "m.ckpt",
        "m.metrics.jsonl",
        "m.resume.safetensors",
    ]


def test_a_second_training_of_the_same_output_is_refused(tmp_path):
    from lstmtext.training.output import OutputLock

    out = tmp_path / "m.ckpt"
    with OutputLock(tmp_path / "m.ckpt.lock", out):
        proc = run_cli("train", "sentiment", "-o", out, "--epochs", "1", "-q", *TINY)
        assert_usage_error(proc, f"{out} is being written by another training (pid {os.getpid()})")
    assert not (tmp_path / "m.ckpt.lock").exists() and not out.exists()
    assert run_cli("train", "sentiment", "-o", out, "--epochs", "1", "-q", *TINY).returncode == 0


def test_force_starts_over_so_resume_cannot_continue_the_old_run(tmp_path, step_hook):
    out = tmp_path / "m.ckpt"
    _train(out, "train.eval_every=2", "train.max_steps=4")
    assert all(_companion(out, kind).exists() for kind in COMPANIONS) and out.exists()

    def crash():
        raise RuntimeError("killed")

    step_hook(1, crash)
    with pytest.raises(RuntimeError, match="killed"):
        _train(out, "train.eval_every=2", force=True)
    assert not out.exists() and not any(_companion(out, kind).exists() for kind in COMPANIONS)
    with pytest.raises(UsageError, match="no resume state"):
        _train(out, resume=True)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640)])
def test_checkpoints_get_the_mode_of_any_new_file(tmp_path, umask, mode):
    from lstmtext import checkpoint as ckpt

    path = tmp_path / "m.ckpt"
    old = os.umask(umask)
    try:
        ckpt.save(path, {"w": torch.zeros(2)}, {"task": "sentiment"}, b"")
        ckpt.atomic_write(tmp_path / "t.model", lambda tmp: __import__("pathlib").Path(tmp).write_bytes(b"x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "t.model").stat().st_mode) == mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.ckpt", "t.model"]


def test_max_time_bounds_the_whole_call_final_evaluation_included(tmp_path):
    summary = _train(
        tmp_path / "m.ckpt", "train.epochs=100000", "train.max_time=4s", "train.eval_every=0", "train.patience=0"
    )
    assert summary["stop"] == "time limit 4s reached"
    assert 3.0 < summary["train_seconds"] <= 4.3, summary
    assert list(summary["seconds"]) == ["read", "tokenizer", "featurize", "setup", "training", "evaluation"]
    assert sum(summary["seconds"].values()) <= summary["train_seconds"] + 0.2
