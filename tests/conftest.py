"""Shared fixtures. Every test gets its own LSTMTEXT_HOME, so default model places never touch ~/.lstmtext.

Subprocesses run with one thread: two busy processes on two cores would erase the 2-thread gain anyway,
and the suite stays predictable on CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Settings that make a training run take seconds: tiny encoder, small vocabulary, few epochs.
TINY = [
    "--set", "encoder.embed_dim=32", "--set", "encoder.hidden_dim=32", "--set", "tokenizer.vocab_size=400",
    "--set", "train.batch_tokens=2000",
]


@pytest.fixture(autouse=True)
def lstmtext_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LSTMTEXT_HOME", str(home))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return home


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def run_cli(*args, input: str | bytes | None = None, cwd=None, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    """Run ``python -m lstmtext ARGS`` as a user would; returns the completed process (text mode)."""
    if isinstance(input, bytes):
        proc = subprocess.run(
            [sys.executable, "-m", "lstmtext", *map(str, args)], input=input, capture_output=True,
            cwd=cwd or REPO, env=cli_env(**env), timeout=timeout,
        )
        return subprocess.CompletedProcess(proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace"))
    return subprocess.run(
        [sys.executable, "-m", "lstmtext", *map(str, args)], input=input, capture_output=True, text=True,
        cwd=cwd or REPO, env=cli_env(**env), timeout=timeout,
    )


def assert_usage_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, one line on stderr naming what was wrong, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines and lines[-1].startswith("lstmtext: error: "), proc.stderr
    for frag in fragments:
        assert frag in lines[-1], (frag, lines[-1])


@pytest.fixture(scope="session")
def sentiment_ckpt(tmp_path_factory) -> Path:
    """A tiny sentiment model trained once through the CLI on the embedded sample."""
    out = tmp_path_factory.mktemp("sentiment") / "tiny.ckpt"
    proc = run_cli("train", "sentiment", "-o", out, "--epochs", "3", "-q", *TINY,
                   LSTMTEXT_HOME=str(out.parent / "home"))
    assert proc.returncode == 0, proc.stderr
    return out
