"""benchmarks/common.py: the commit a row names."""

import importlib.util
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def load_common(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMTEXT_DATA", str(tmp_path / "data"))  # the module defaults it on import
    spec = importlib.util.spec_from_file_location("bench_common", REPO / "benchmarks" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_commit_is_dirty_for_code_but_not_for_the_rows_a_run_appends(monkeypatch, tmp_path):
    common = load_common(monkeypatch, tmp_path)
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "BENCHMARKS.md").write_text("| rows |\n")
    (repo / "code.py").write_text("x = 1\n")
    (repo / "untracked.txt").write_text("")
    git(repo, "add", "BENCHMARKS.md", "code.py")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "init")
    sha = git(repo, "rev-parse", "--short", "HEAD")
    monkeypatch.setattr(common, "REPO", repo)
    assert common.commit() == sha
    with open(repo / "BENCHMARKS.md", "a") as f:
        f.write("| a new row |\n")
    assert common.commit() == sha
    (repo / "code.py").write_text("x = 2\n")
    assert common.commit() == sha + "+dirty"
