"""lstmtext as a package: the built wheel installs and runs anywhere (its samples and recipes inside it), named
datasets resolve against a data directory, and an unreachable hub fails fast with one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lstmtext.data import recipe_names, recipe_path, resolve_source, sample_path
from lstmtext.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
RECIPES = ["conll2003", "imdb", "imdb-lm", "multi30k", "sst2", "wikitext2", "wikitext2-bilm", "wikitext2-forward"]
TINY = ["--set", "encoder.embed_dim=32", "--set", "encoder.hidden_dim=32", "--set", "tokenizer.vocab_size=400"]


# -- named datasets -----------------------------------------------------------------------------------------
def _data_dir(root: Path) -> Path:
    """A data directory laid out as the datasets are distributed, with empty files."""
    for rel in [
        "sst2/train.tsv",
        "sst2/dev.tsv",
        "imdb/test.jsonl.gz",
        "conll2003/eng.train",
        "conll2003/eng.testa",
        "conll2003/eng.testb",
        "wikitext2/wiki.valid.tokens",
        "multi30k/val.de",
        "multi30k/val.en",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")
    return root


def test_named_sources_resolve_in_the_data_directory(tmp_path, monkeypatch):
    root = _data_dir(tmp_path / "data")
    monkeypatch.setenv("LSTMTEXT_DATA", str(root))
    assert resolve_source("conll2003:train") == str(root / "conll2003" / "eng.train")
    assert resolve_source("conll2003:dev") == str(root / "conll2003" / "eng.testa")
    assert resolve_source("conll2003:test") == str(root / "conll2003" / "eng.testb")
    assert resolve_source("sst2:dev") == str(root / "sst2" / "dev.tsv")
    assert resolve_source("imdb:test") == str(root / "imdb" / "test.jsonl.gz")
    assert resolve_source("wikitext2:dev") == str(root / "wikitext2" / "wiki.valid.tokens")
    assert resolve_source("multi30k:dev") == str(root / "multi30k" / "val")  # a PREFIX: val.de, val.en


def test_named_sources_missing_locally_read_from_the_hub(tmp_path, monkeypatch):
    root = _data_dir(tmp_path / "data")
    monkeypatch.setenv("LSTMTEXT_DATA", str(root))
    assert resolve_source("imdb:train") == "hf:stanfordnlp/imdb@train"
    assert resolve_source("wikitext2:test") == "hf:Salesforce/wikitext:wikitext-2-v1@test"
    assert resolve_source("multi30k:test") == "hf:bentrevett/multi30k@test"
    monkeypatch.delenv("LSTMTEXT_DATA")
    assert resolve_source("conll2003:dev") == "hf:eriktks/conll2003@validation"
    assert resolve_source("sst2:dev") == "hf:stanfordnlp/sst2@validation"


def test_paths_and_hf_sources_pass_through(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my:file.tsv").write_text("")
    for source in [
        "train.tsv",
        "../shared/data/sst2/train.tsv",
        "hf:stanfordnlp/sst2",
        "hf:a/b:c@test",
        "C:\\data\\x.tsv",
        "my:file.tsv",
        "",
        "-",
    ]:
        assert resolve_source(source) == source


def test_unknown_dataset_or_split_names_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMTEXT_DATA", str(tmp_path))
    with pytest.raises(UsageError) as e:
        resolve_source("conll:train")
    assert str(e.value) == (
        "conll:train: unknown dataset 'conll' (known: sst2, imdb, conll2003, wikitext2, multi30k); "
        "or pass a file path or hf:NAME"
    )
    with pytest.raises(UsageError) as e:
        resolve_source("sst2:test")
    assert str(e.value) == "sst2:test: sst2 has no split 'test' (splits: train, dev)"
    monkeypatch.setenv("LSTMTEXT_DATA", str(tmp_path / "absent"))
    with pytest.raises(UsageError, match="absent: not a folder"):
        resolve_source("sst2:train")


def test_unreachable_hub_fails_fast_with_one_line(tmp_path):
    """Nothing listens on the endpoint: one line, exit 2, within 5 s of asking, whatever the machine's network.
    The clock starts after the imports, which a loaded machine slows without any network wait."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "LSTMTEXT_DATA"))}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HOME=str(tmp_path / "hf"), PYTHONUNBUFFERED="1")
    code = (
        "import time, sys, datasets\n"
        "from lstmtext.data import load_hf, resolve_source\n"
        "from lstmtext.errors import UsageError\n"
        "t = time.time()\n"
        "try:\n    load_hf(resolve_source('sst2:train'), 'train')\n"
        "except UsageError as e:\n    print(e, file=sys.stderr)\n"
        "print(round(time.time() - t, 1))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout) <= 5.0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("hf:stanfordnlp/sst2@train: cannot load this Hugging Face dataset (")
    assert "no data directory holds sst2:train (set one with --data-dir or $LSTMTEXT_DATA)" in lines[0]


# -- shipped files ------------------------------------------------------------------------------------------
def test_samples_and_recipes_are_found_by_name():
    assert sample_path("sentiment", "train").read_text().splitlines()[0] == "sentence\tlabel"
    assert sample_path("translate", "dev").name == "dev.tsv"
    assert recipe_names() == RECIPES
    assert recipe_path("sst2").read_bytes() == (REPO / "recipes" / "sst2.toml").read_bytes()
    assert recipe_path("imdb-lm.toml").name == "imdb-lm.toml"
    with pytest.raises(UsageError) as e:
        recipe_path("sst3")
    assert str(e.value) == (
        f"sst3: no such recipe file and no shipped recipe of that name (shipped: {', '.join(RECIPES)})"
    )
    with pytest.raises(UsageError, match="no embedded sample for task 'nope'"):
        sample_path("nope", "train")


def test_a_source_checkout_reads_its_own_recipes_even_where_another_checkout_is_installed(monkeypatch, tmp_path):
    """A worktree run through PYTHONPATH beside an editable install of another checkout: importlib maps
    lstmtext.recipes to the installed one, whose recipes may differ from the code that runs."""
    from importlib import resources

    from lstmtext import data

    other = tmp_path / "other-checkout" / "recipes"
    other.mkdir(parents=True)
    monkeypatch.setattr(resources, "files", lambda name: other)
    assert data._shipped("recipes", "recipes") == REPO / "recipes"  # this checkout's, not the installed one's
    installed = tmp_path / "site-packages" / "lstmtext"  # a wheel: no pyproject.toml beside the package
    installed.mkdir(parents=True)
    monkeypatch.setattr(data, "__file__", str(installed / "data.py"))
    assert data._shipped("recipes", "recipes") == other


def test_recipe_data_lines_name_datasets_not_paths():
    import tomllib

    for name in RECIPES:
        data = tomllib.loads((REPO / "recipes" / f"{name}.toml").read_text())["data"]
        # a final recipe trains on train and dev and holds out nothing (dev = "")
        train = [data["train"]] if isinstance(data.get("train", []), str) else data.get("train", [])
        dev = [data["dev"]] if data.get("dev") else []
        assert [source.split(":")[0] for source in train + dev] == [name.split("-")[0]] * len(train + dev), name
        assert [source.split(":")[1] for source in train] in ([], ["train"], ["train", "dev"]), name
        assert [source.split(":")[1] for source in dev] in ([], ["dev"]), name
        assert not (dev and len(train) == 2), f"{name}: dev trains and selects"


def test_pyproject_lists_every_package():
    """The package-dir mapping rules out automatic discovery: a subpackage missing from the list would be
    missing from the wheel."""
    import tomllib

    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "lstmtext").rglob("__init__.py")}
    assert sorted(listed) == sorted(found | {"lstmtext.samples", "lstmtext.recipes"})


# -- the built wheel, installed and run outside the repository ----------------------------------------------
def _run(cmd: list, cwd: Path, env: dict, timeout: float = 240) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (cmd, proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """A fresh virtual environment holding the wheel built from a copy of the sources, and reusing this
    interpreter's installed dependencies (torch, ...) through a .pth line: nothing is downloaded."""
    tmp = tmp_path_factory.mktemp("package")
    src = tmp / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("lstmtext", "data", "recipes"):
        shutil.copytree(REPO / folder, src / folder, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LSTMTEXT_DATA")}
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp / "dist", src],
        tmp,
        env,
    )
    wheel = next((tmp / "dist").glob("lstmtext-*.whl"))
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    site = next(venv.glob("lib/python*/site-packages"))
    deps = next(p for p in sys.path if p.endswith("site-packages") and Path(p, "torch").is_dir())
    (site / "dependencies.pth").write_text(deps + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            venv / "bin" / "python",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            wheel,
        ],
        tmp,
        env,
    )
    work = tmp / "elsewhere"
    work.mkdir()
    env.update(LSTMTEXT_HOME=str(tmp / "home"), OMP_NUM_THREADS="1", COLUMNS="200")
    return venv / "bin" / "lstmtext", env


def test_wheel_ships_samples_and_recipes_not_the_repository(installed):
    lstmtext, env = installed
    py = lstmtext.parent / "python"
    code = (
        "import lstmtext, lstmtext.data as d; print(lstmtext.__file__); print(d.sample_path('ner', 'train')); "
        "print(d.recipe_path('conll2003'))"
    )
    out = _run([py, "-c", code], lstmtext.parent, env).stdout.splitlines()
    package = Path(out[0]).parent
    assert package.parent.name == "site-packages"
    assert out[1:] == [str(package / "samples" / "ner" / "train.conll"), str(package / "recipes" / "conll2003.toml")]


def test_wheel_trains_on_the_embedded_sample_and_predicts(installed):
    lstmtext, env = installed
    work = lstmtext.parents[2] / "elsewhere"
    _run([lstmtext, "train", "sentiment", "-o", "m.ckpt", "--epochs", "1", "-q", *TINY], work, env)
    proc = subprocess.run(
        [lstmtext, "predict", "m.ckpt", "-", "--format", "jsonl"],
        cwd=work,
        env=env,
        input="a wonderful film\nboring and lifeless\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["a wonderful film", "boring and lifeless"]
    for r in rows:  # the sample's labels are names
        assert set(r["scores"]) == {"negative", "positive"} and r["label"] == max(r["scores"], key=r["scores"].get), r


def test_wheel_runs_a_shipped_recipe_on_a_data_directory(installed, tmp_path):
    """``--recipe sst2`` outside the repository, its data lines resolved in a data directory laid out as the
    datasets are distributed (here a tiny SST-2: the embedded sample, which has SST-2's format)."""
    lstmtext, env = installed
    data = tmp_path / "data"
    (data / "sst2").mkdir(parents=True)
    shutil.copy(REPO / "data" / "sentiment" / "train.tsv", data / "sst2" / "train.tsv")
    _run(
        [
            lstmtext,
            "train",
            "sentiment",
            "--recipe",
            "sst2",
            "--max-time",
            "5s",
            "-o",
            "sst2.ckpt",
            "-q",
            *TINY,
            "--set",
            "train.eval_every=20",
            "--set",
            'init.recipe=""',  # from scratch: its stage, the IMDB BiLM, is not in this data directory
        ],
        tmp_path,
        env | {"LSTMTEXT_DATA": str(data)},
    )
    info = json.loads(_run([lstmtext, "info", "sst2.ckpt", "--format", "json"], tmp_path, env).stdout)
    assert info["recipe"]["data"]["train"] == ["sst2:train"]
    assert info["recipe"]["sentiment"]["hidden_dim"] == 300  # the recipe's (the task's default: 256)
    assert [(d["source"], d["resolved"]) for d in info["provenance"]["data"]] == [
        ("sst2:train", str(data / "sst2" / "train.tsv"))
    ]
