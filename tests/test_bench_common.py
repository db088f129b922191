"""benchmarks/common.py: the commit a row names; benchmarks/peers/common.py: the environments the sides run in."""

import importlib.util
import json
import subprocess
import time
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
    monkeypatch.setattr(common, "REPO", tmp_path)  # another checkout named (bench_train_ab.py's sides)
    assert common.commit(repo) == sha + "+dirty"


def test_every_row_names_the_cpu_it_ran_on(monkeypatch, tmp_path):
    common = load_common(monkeypatch, tmp_path)
    monkeypatch.setattr(common, "OUT", tmp_path / "out")
    monkeypatch.setattr(common, "TABLE", tmp_path / "BENCHMARKS.md")
    monkeypatch.setattr(common, "commit", lambda: "abc1234")
    monkeypatch.setattr(common, "cpu", lambda: "Some CPU, 2 cores")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    common.record("lm", "wikitext2", "test ppl/word", 124.74, 58.7, 16673, "python benchmarks/bench_lm.py")
    last = (tmp_path / "BENCHMARKS.md").read_text().splitlines()[-1]
    assert last == (
        f"| {time.strftime('%Y-%m-%d')} | lm [Some CPU, 2 cores] | wikitext2 | test ppl/word | 124.7 | 58.7 | "
        "16673 | `python benchmarks/bench_lm.py` | abc1234 |"
    )
    row = json.loads((tmp_path / "out" / "lm.json").read_text())
    assert (row["benchmark"], row["cpu"], row["value"]) == ("lm", "Some CPU, 2 cores", 124.74)


def test_a_peers_environment_drops_the_callers_pythonpath_and_lstmtexts_names_its_checkout(monkeypatch, tmp_path):
    monkeypatch.setenv("LSTMTEXT_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "elsewhere"))
    spec = importlib.util.spec_from_file_location("peers_common", REPO / "benchmarks" / "peers" / "common.py")
    peers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(peers)
    peer = peers.thread_env(1)
    assert "PYTHONPATH" not in peer and peer["OMP_NUM_THREADS"] == "1"
    ours = peers.lstmtext_env(2)  # the checkout the script runs from, not whatever the caller had set
    assert ours["PYTHONPATH"] == str(REPO) and ours["OMP_NUM_THREADS"] == "2"
