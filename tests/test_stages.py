"""Recipes with stages (training/stages.py): ``[init] recipe`` builds the stage's checkpoint once, keyed by its
recipe, data, own start and the lstmtext version; later runs reuse it; an interrupted stage resumes; every
checkpoint records its lineage, which ``lstmtext info`` shows."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import REPO, assert_usage_error, run_cli

from lstmtext.checkpoint import read_meta
from lstmtext.training import stages

TINY_TRAIN = """
[tokenizer]
vocab_size = 400

[encoder]
embed_dim = 32
hidden_dim = 32

[train]
epochs = 1
batch_tokens = 2000
"""


def write_stage(folder: Path, seed: int = 1, name: str = "lm-stage.toml", init: str = "") -> Path:
    """A tiny LM stage on copies of the LM sample (so a test can change its data), six steps, evaluated every
    three."""
    for split in ("train", "dev"):
        if not (folder / f"{split}.txt").exists():
            shutil.copy(REPO / "data" / "lm" / f"{split}.txt", folder / f"{split}.txt")
    path = folder / name
    path.write_text(
        f'task = "lm"\n{init}\n[data]\ntrain = "{folder / "train.txt"}"\ndev = "{folder / "dev.txt"}"\n'
        f"{TINY_TRAIN}max_steps = 6\neval_every = 3\nseed = {seed}\n"
    )
    return path


def write_final(folder: Path, init: str = 'recipe = "lm-stage.toml"', name: str = "ner.toml") -> Path:
    path = folder / name
    path.write_text(f'task = "ner"\n\n[init]\n{init}\n{TINY_TRAIN}max_steps = 4\neval_every = 2\n')
    return path


def stage_files(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "stages").iterdir()) if (home / "stages").exists() else []


def lineage(ckpt: Path) -> list[dict]:
    info = run_cli("info", ckpt, "--format", "json")
    assert info.returncode == 0, info.stderr
    return json.loads(info.stdout)["provenance"]["lineage"]


def test_a_chain_builds_its_stage_once_and_reuses_it(tmp_path, lstmtext_home):
    rec = tmp_path / "rec"
    rec.mkdir()
    stage_recipe = write_stage(rec)
    final = write_final(rec)
    key = stages.plan(stage_recipe, []).key
    stage_ckpt = lstmtext_home / "stages" / f"lm-lm-stage-{key[:16]}.ckpt"

    # cwd is not the recipe's folder: [init] recipe is relative to the recipe file that names it
    first = run_cli("train", "ner", "--recipe", final, "-o", tmp_path / "a.ckpt", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"stage lm-stage: building {stage_ckpt} (lm, recipe {stage_recipe})" in first.stderr
    assert re.search(rf"stage lm-stage: trained in \d+:\d\d → {re.escape(str(stage_ckpt))}\n", first.stderr)
    assert re.search(r"lineage: lm-stage \d+:\d\d → this run \d+:\d\d; \d+:\d\d in all\n", first.stderr)
    # the partial checkpoint took the final name; its resume state went, its log and record stayed beside it
    assert stage_files(lstmtext_home) == [stage_ckpt.name, f"lm-lm-stage-{key[:16]}.metrics.jsonl"] + [
        f"lm-lm-stage-{key[:16]}.stage.json"
    ]
    record = json.loads(stage_ckpt.with_suffix(".stage.json").read_text())
    assert record["key"] == key and record["stop"] == "max_steps" and record["recipe"] == str(stage_recipe)
    before = (stage_ckpt.read_bytes(), stage_ckpt.stat().st_mtime_ns)

    # the final command's options never reach the stage: the same key, the stage reused untouched
    second = run_cli(
        "train", "ner", "--recipe", final, "-o", tmp_path / "b.ckpt", "--seed", "3", "--max-time", "10m",
        "--set", "train.lr=0.001", cwd=tmp_path,
    )  # fmt: skip
    assert second.returncode == 0, second.stderr
    assert re.search(rf"stage lm-stage: reused {re.escape(str(stage_ckpt))} \(trained in \d+:\d\d\)", second.stderr)
    assert "building" not in second.stderr
    assert (stage_ckpt.read_bytes(), stage_ckpt.stat().st_mtime_ns) == before
    stage_meta = read_meta(stage_ckpt)
    assert (stage_meta["recipe"]["train"]["seed"], stage_meta["recipe"]["train"]["max_time"]) == (1, "")
    assert stage_meta["recipe"] == stages.plan(stage_recipe, []).recipe  # the stage's own recipe, resolved alone

    # the lineage, exactly, in JSON and in the model card
    entry = {
        "name": "lm-stage",
        "recipe": str(stage_recipe),
        "task": "lm",
        "key": key,
        "checkpoint": str(stage_ckpt),
        "train_seconds": record["train_seconds"],
        "metrics": stage_meta["metrics"],
        "data": stage_meta["provenance"]["data"],
    }
    assert list(entry) == list(stages.LINEAGE_KEYS)
    assert [d["source"] for d in entry["data"] if "source" in d] == [str(rec / "train.txt"), str(rec / "dev.txt")]
    assert entry["data"][-1]["pieces"] > 0  # the LM stage trained from its token stream
    assert lineage(tmp_path / "b.ckpt") == [entry]
    assert read_meta(tmp_path / "b.ckpt")["provenance"]["init_from"] == str(stage_ckpt)
    card = run_cli("info", tmp_path / "b.ckpt")
    assert card.returncode == 0, card.stderr
    assert re.search(r"│ init +│ recipe=lm-stage.toml, checkpoint= +│", card.stderr), card.stderr
    assert re.search(rf"│ lineage 1 +│ lm-stage \(lm, key {key[:16]}\) \d+:\d\d, dev loss=", card.stderr), card.stderr

    # --init-from on the command line wins over [init]; a plain --init-from records that checkpoint after its
    # own lineage
    third = run_cli(
        "train", "ner", "--recipe", final, "-o", tmp_path / "c.ckpt", "--init-from", tmp_path / "b.ckpt",
        cwd=tmp_path,
    )  # fmt: skip
    assert third.returncode == 0, third.stderr
    assert f"init: --init-from {tmp_path / 'b.ckpt'} replaces the recipe's [init] lm-stage.toml" in third.stderr
    assert "stage lm-stage" not in third.stderr
    b_meta = read_meta(tmp_path / "b.ckpt")
    assert lineage(tmp_path / "c.ckpt") == [
        entry,
        {
            "name": None,
            "recipe": None,
            "task": "ner",
            "key": None,
            "checkpoint": str(tmp_path / "b.ckpt"),
            "train_seconds": b_meta["provenance"]["train_seconds"],
            "metrics": b_meta["metrics"],
            "data": b_meta["provenance"]["data"],
        },
    ]

    # another copy of the recipes (the same content, so the same key) reuses the stage, and the lineage names
    # the stage recipe this run read, not the one that built it
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(stage_recipe, other / "lm-stage.toml")
    shutil.copy(final, other / "ner.toml")
    fifth = run_cli("train", "ner", "--recipe", other / "ner.toml", "-o", tmp_path / "e.ckpt", cwd=tmp_path)
    assert fifth.returncode == 0, fifth.stderr
    assert f"stage lm-stage: reused {stage_ckpt}" in fifth.stderr
    assert lineage(tmp_path / "e.ckpt") == [{**entry, "recipe": str(other / "lm-stage.toml")}]

    # a new seed in the stage recipe is a new stage, built beside the old one
    write_stage(rec, seed=2)
    new_key = stages.plan(stage_recipe, []).key
    assert new_key != key
    fourth = run_cli("train", "ner", "--recipe", final, "-o", tmp_path / "d.ckpt", "-q", cwd=tmp_path)
    assert fourth.returncode == 0, fourth.stderr
    assert (lstmtext_home / "stages" / f"lm-lm-stage-{new_key[:16]}.ckpt").exists() and stage_ckpt.exists()
    assert [e["key"] for e in lineage(tmp_path / "d.ckpt")] == [new_key]


def test_init_checkpoint_and_an_empty_init_recipe(tmp_path, lstmtext_home):
    """[init] checkpoint is --init-from written in the recipe, relative to its file; --set init.recipe="" trains
    from scratch."""
    rec = tmp_path / "rec"
    rec.mkdir()
    lm = run_cli("train", "lm", "--recipe", write_stage(rec), "-o", rec / "lm.ckpt", "-q")
    assert lm.returncode == 0, lm.stderr
    final = write_final(rec, 'checkpoint = "lm.ckpt"', name="from-ckpt.toml")
    run = run_cli("train", "ner", "--recipe", final, "-o", tmp_path / "a.ckpt", "-q", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert read_meta(tmp_path / "a.ckpt")["provenance"]["init_from"] == str(rec / "lm.ckpt")
    assert [(e["name"], e["checkpoint"]) for e in lineage(tmp_path / "a.ckpt")] == [(None, str(rec / "lm.ckpt"))]
    scratch = run_cli(
        "train", "ner", "--recipe", write_final(rec), "-o", tmp_path / "b.ckpt", "--set", 'init.recipe=""'
    )
    assert scratch.returncode == 0, scratch.stderr
    assert "stage" not in scratch.stderr and stage_files(lstmtext_home) == []
    meta = read_meta(tmp_path / "b.ckpt")
    assert (meta["provenance"]["init_from"], meta["provenance"]["lineage"]) == (None, [])


def test_stage_key_follows_recipe_data_start_and_version(tmp_path, monkeypatch):
    """Nothing is trained here: plan() resolves and keys the chain."""
    first = write_stage(tmp_path)
    second = write_stage(tmp_path, name="second.toml", init='[init]\nrecipe = "lm-stage.toml"')
    base, chained = stages.plan(first, []).key, stages.plan(second, [])
    assert stages.plan(first, []).key == base and chained.init.key == base
    assert chained.init.path == first and chained.checkpoint.name == f"lm-second-{chained.key[:16]}.ckpt"

    write_stage(tmp_path, seed=5)
    reseeded = stages.plan(first, []).key
    assert reseeded != base
    assert stages.plan(second, []).key != chained.key  # the stage before it changed
    write_stage(tmp_path)
    assert stages.plan(first, []).key == base

    with open(tmp_path / "train.txt", "a", encoding="utf-8") as f:
        f.write("one more line of training text\n")
    assert stages.plan(first, []).key not in (base, reseeded)
    data_changed = stages.plan(first, []).key
    monkeypatch.setattr(stages, "__version__", "99.0")
    assert stages.plan(first, []).key != data_changed


def test_a_field_added_later_keys_a_stage_only_when_set():
    """Stages cached before data.valid_by existed keep their keys at its default; any other value is a new key."""
    recipe = {"task": "lm", "data": {"train": ["t.txt"], "dev": "d.txt", "valid_fraction": 0.05}, "train": {"seed": 1}}
    before = stages.stage_key(recipe, None)
    assert stages.stage_key({**recipe, "data": {**recipe["data"], "valid_by": "example"}}, None) == before
    assert stages.stage_key({**recipe, "data": {**recipe["data"], "valid_by": "sentence"}}, None) != before
    assert stages.stage_key({**recipe, "train": {"seed": 2}}, None) != before


def test_shipped_recipes_name_their_stages():
    """conll2003 starts from the wikitext2-bilm stage, sst2 and imdb from imdb-lm; each resolves and keys without
    the data (a named dataset with no data directory counts by its name)."""
    from lstmtext.data import recipe_path

    for final, task, stage in (("conll2003", "ner", "wikitext2-bilm"), ("sst2", "sentiment", "imdb-lm")):
        kind, target = stages.init_target(
            stages.resolve_recipe(task, recipe_path(final)).init, recipe_path(final), final
        )
        assert (kind, target) == ("recipe", recipe_path(stage))
        planned = stages.plan(target, [recipe_path(final).resolve()])
        assert (planned.name, planned.init, len(planned.key)) == (stage, None, 64)


@pytest.mark.parametrize(
    "files, fragments",
    [
        (
            {
                "a.toml": 'task = "ner"\n[init]\nrecipe = "b.toml"\n',
                "b.toml": 'task = "lm"\n[init]\nrecipe = "a.toml"\n',
            },
            ["[init] recipe cycle: a.toml → b.toml → a.toml"],
        ),
        (
            {
                "a.toml": 'task = "ner"\n[init]\nrecipe = "b.toml"\n',
                "b.toml": 'task = "lm"\n[init]\nrecipe = "b.toml"\n',
            },
            ["[init] recipe cycle: b.toml → b.toml"],
        ),
        ({"a.toml": 'task = "ner"\n[init]\nrecipe = "nosuch.toml"\n'}, ["[init] recipe 'nosuch.toml': no file"]),
        (
            {"a.toml": 'task = "ner"\n[init]\nrecipe = "b.toml"\n', "b.toml": "[train]\nepochs = 1\n"},
            ["b.toml", "task"],
        ),
        ({"a.toml": 'task = "ner"\n[init]\nrecipe = "b.toml"\ncheckpoint = "c.ckpt"\n'}, ["keep one of them"]),
        ({"a.toml": 'task = "ner"\n[init]\nrecipes = "b.toml"\n'}, ["unknown key 'recipes' in [init]", "checkpoint"]),
        ({"a.toml": 'task = "ner"\n[init]\ncheckpoint = "nosuch.ckpt"\n'}, ["nosuch.ckpt: file not found"]),
    ],
    ids=["cycle", "self-cycle", "missing", "no-task", "both", "unknown-key", "missing-checkpoint"],
)
def test_stage_refusals_are_one_line(tmp_path, lstmtext_home, files, fragments):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    proc = run_cli("train", "ner", "--recipe", tmp_path / "a.toml", "-o", tmp_path / "m.ckpt")
    assert_usage_error(proc, *fragments)
    assert stage_files(lstmtext_home) == []


def test_an_interrupted_stage_resumes_where_it_stopped(tmp_path, lstmtext_home, monkeypatch):
    """The stage's run is interrupted at step 4 (as Ctrl-C would: the loop's stop flag); the next command
    resumes it from its resume state, and the stage ends with the weights of an uninterrupted run."""
    from safetensors.torch import load_file

    from lstmtext.training import loop

    stage_recipe, final = write_stage(tmp_path), write_final(tmp_path)
    ref = run_cli("train", "lm", "--recipe", stage_recipe, "-o", tmp_path / "ref.ckpt", "-q")
    assert ref.returncode == 0, ref.stderr
    key = stages.plan(stage_recipe, []).key
    stage_ckpt = lstmtext_home / "stages" / f"lm-lm-stage-{key[:16]}.ckpt"

    real, calls = loop.all_flags, []

    def stop_at_step_4(flags, d, device):
        calls.append(1)
        return [flags[0], flags[1], int(len(calls) == 4)]

    monkeypatch.setattr(loop, "all_flags", stop_at_step_4)
    first = run_cli("train", "ner", "--recipe", final, "-o", tmp_path / "m.ckpt", "-q")
    assert first.returncode == 130, first.stderr
    assert first.stderr.strip().splitlines()[-1] == (
        f"lstmtext: error: stage lm-stage: interrupted at step 4; resume state saved to "
        f"{stage_ckpt.with_suffix('.partial.resume.safetensors')}; run the same command again to resume the stage"
    )
    assert not stage_ckpt.exists() and not (tmp_path / "m.ckpt").exists()

    monkeypatch.setattr(loop, "all_flags", real)
    second = run_cli("train", "ner", "--recipe", final, "-o", tmp_path / "m.ckpt")
    assert second.returncode == 0, second.stderr
    assert f"stage lm-stage: resuming {stage_ckpt}" in second.stderr
    assert "resuming at step 4 (epoch 1, batch 4)" in second.stderr
    ours, theirs = load_file(str(stage_ckpt)), load_file(str(tmp_path / "ref.ckpt"))
    assert ours.keys() == theirs.keys() and all((ours[k] == theirs[k]).all() for k in ours)
    assert stage_files(lstmtext_home) == sorted(
        [stage_ckpt.name, stage_ckpt.with_suffix(".metrics.jsonl").name, stage_ckpt.with_suffix(".stage.json").name]
    )
    assert [e["key"] for e in lineage(tmp_path / "m.ckpt")] == [key]


def test_dev_read_as_training_data_is_refused_before_any_stage_trains(tmp_path, lstmtext_home):
    rec = tmp_path / "rec"
    rec.mkdir()
    write_stage(rec)
    final = write_final(rec)
    sample = REPO / "data" / "ner" / "train.conll"
    proc = run_cli("train", "ner", "--recipe", final, "-o", tmp_path / "ner.ckpt", "--train", sample, "--dev", sample)
    assert_usage_error(proc, "is also training data", "leave it out of the training data (--train replaces")
    assert stage_files(lstmtext_home) == []  # the stage was not built first
