"""Shared fixtures. Every test gets its own LSTMTEXT_HOME, so default model places never touch ~/.lstmtext.

``run_cli`` runs the app in this process (``subprocess=True``, or ``run_process``, where the real process is the
point: pipes, signals, exit at start-up). Runs get one thread, in process as in a subprocess: two busy
processes on two cores would erase the 2-thread gain anyway, and the suite stays predictable on CI.
"""

from __future__ import annotations

import io
import os
import subprocess as _subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The benchmark data the slow tests train on: $LSTMTEXT_DATA, as for the CLI, else ../shared/data beside the repo.
SHARED_DATA = Path(os.environ.get("LSTMTEXT_DATA") or REPO.parent / "shared" / "data")

# Settings that make a training run take seconds: tiny encoder, small vocabulary, few epochs.
TINY = [
    "--set",
    "encoder.embed_dim=32",
    "--set",
    "encoder.hidden_dim=32",
    "--set",
    "tokenizer.vocab_size=400",
    "--set",
    "train.batch_tokens=2000",
]


@pytest.fixture(autouse=True)
def lstmtext_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LSTMTEXT_HOME", str(home))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from lstmtext import progress

    # a test that calls the library with quiet=True must not silence the notes of the tests after it
    monkeypatch.setattr(progress, "_quiet", False)
    return home


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env["COLUMNS"] = "200"
    env.update(extra)
    return env


def run_cli(
    *args, input: str | bytes | None = None, cwd=None, timeout: float = 300, subprocess: bool = False, **env
) -> _subprocess.CompletedProcess:
    """Run ``lstmtext ARGS`` in this process (through the app's error handling, as the console script does),
    or with ``subprocess=True`` as ``python -m lstmtext ARGS`` in a process of its own. ``env`` applies to
    the run only; the result reads like a completed process (text mode)."""
    if subprocess:
        return run_process(*args, input=input, cwd=cwd, timeout=timeout, **env)
    return _run_in_process([str(a) for a in args], input, cwd or REPO, env)


def run_process(
    *args, input: str | bytes | None = None, cwd=None, timeout: float = 300, **env
) -> _subprocess.CompletedProcess:
    """Run ``python -m lstmtext ARGS`` as a user would: for exit codes, pipes, signals and start-up."""
    proc = _subprocess.run(
        [sys.executable, "-m", "lstmtext", *map(str, args)],
        input=input.encode() if isinstance(input, str) else input,
        capture_output=True,
        cwd=cwd or REPO,
        env=cli_env(**env),
        timeout=timeout,
    )
    return _subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    )


def _run_in_process(args: list[str], input: str | bytes | None, cwd, env: dict) -> _subprocess.CompletedProcess:
    from lstmtext import progress
    from lstmtext.cli.app import command

    data = input.encode() if isinstance(input, str) else (input or b"")
    out, err = io.BytesIO(), io.BytesIO()
    saved_streams = sys.stdin, sys.stdout, sys.stderr
    saved_env, saved_cwd, saved_quiet = dict(os.environ), os.getcwd(), progress._quiet
    saved_width = progress.console._width
    threads = _torch_threads()
    with tempfile.TemporaryFile() as stdin:  # a real descriptor: commands read stdin with os.read
        stdin.write(data)
        stdin.seek(0)
        try:
            os.environ.update({"COLUMNS": "200", **{k: str(v) for k, v in env.items()}})
            os.chdir(cwd)
            progress.console.width = 200
            if threads is not None:  # what OMP_NUM_THREADS gives a fresh process
                _set_torch_threads(int(os.environ.get("OMP_NUM_THREADS", threads)))
            sys.stdin = io.TextIOWrapper(stdin, encoding="utf-8")
            sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
            sys.stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
            try:
                command().main(args, prog_name="lstmtext")
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                stdout, stderr = out.getvalue(), err.getvalue()  # before the wrappers go, closing their buffers
        finally:
            sys.stdin, sys.stdout, sys.stderr = saved_streams
            os.environ.clear()
            os.environ.update(saved_env)
            os.chdir(saved_cwd)
            progress.set_quiet(saved_quiet)
            progress.console._width = saved_width
            if threads is not None:
                _set_torch_threads(threads)
    return _subprocess.CompletedProcess(
        ["lstmtext", *args], code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
    )


def _torch_threads() -> int | None:
    """torch's thread count when torch is loaded (a command run in process may change it), else None."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _set_torch_threads(n: int) -> None:
    sys.modules["torch"].set_num_threads(n)


def assert_usage_error(proc: _subprocess.CompletedProcess, *fragments: str, only_line: bool = True) -> None:
    """Exit code 2, one line on stderr (``lstmtext: error: ...``) naming what was wrong, no traceback.

    ``only_line=False`` where stderr may hold more before it (a training run's notes)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert lines and lines[-1].startswith("lstmtext: error: "), proc.stderr
    if only_line:
        assert len(lines) == 1, proc.stderr
    for frag in fragments:
        assert frag in lines[-1], (frag, lines[-1])


@pytest.fixture(scope="session")
def sentiment_ckpt(tmp_path_factory) -> Path:
    """A tiny sentiment model trained once through the CLI on the embedded sample."""
    out = tmp_path_factory.mktemp("sentiment") / "tiny.ckpt"
    proc = run_cli(
        "train", "sentiment", "-o", out, "--epochs", "3", "-q", *TINY, LSTMTEXT_HOME=str(out.parent / "home")
    )
    assert proc.returncode == 0, proc.stderr
    return out
