"""Recipes with stages: ``[init] recipe = "wikitext2-bilm"`` names the recipe whose checkpoint starts a run.

``train`` builds the chain before the run: each stage recipe (a stage may have an ``[init]`` of its own) is
resolved with its own settings alone, never the final command's options, and its checkpoint is cached under
``$LSTMTEXT_HOME/stages/TASK-NAME-KEY.ckpt``. The key is a sha256 over the stage's resolved recipe, the content
of the data it reads, the key of the stage before it (or the hash of its ``[init] checkpoint``) and the lstmtext
version, so a second command reuses what the first built and any change builds a new stage. A stage trains
into ``….partial.ckpt`` and takes its final name only when its run ends, so a stage that was interrupted
is resumed from its resume state by the next command rather than reused half-built or started over.

Every checkpoint records its ``lineage`` in its provenance: the ancestors it started from, oldest first, each
with its recipe, key, checkpoint, training time, best dev metrics and data sources.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lstmtext import __version__
from lstmtext import checkpoint as ckpt
from lstmtext.config import LATER_FIELDS, encoder_shape, resolve_recipe
from lstmtext.corpus import content_hash as file_hash
from lstmtext.corpus import named_sources, refuse_dev_in_train
from lstmtext.data import is_hf, recipe_path, resolve_source, sample_path
from lstmtext.errors import UsageError
from lstmtext.paths import companion, home
from lstmtext.progress import fmt_seconds, note
from lstmtext.tasks import TASKS, get_task
from lstmtext.tasks.contract import Streamed
from lstmtext.training.loop import Interrupted

LINEAGE_KEYS = ("name", "recipe", "task", "key", "checkpoint", "train_seconds", "metrics", "data")


@dataclass
class Stage:
    """One stage of a chain: its recipe file, resolved, and what starts it."""

    name: str  # the recipe file's stem
    path: Path  # the recipe file
    task: str
    recipe: dict  # resolved, as its checkpoint stores it
    key: str
    init: Stage | None  # the stage whose checkpoint starts this one
    init_checkpoint: Path | None  # or an existing checkpoint ([init] checkpoint)

    @property
    def checkpoint(self) -> Path:
        return home() / "stages" / f"{self.task}-{self.name}-{self.key[:16]}.ckpt"

    @property
    def partial(self) -> Path:
        """Where the stage trains; its resume state and metrics log lie beside it."""
        return self.checkpoint.with_suffix(".partial.ckpt")


def starting_point(task, recipe_file, settings, overrides, init_from, resume: bool, show_progress: bool, train_fn):
    """(the checkpoint this run starts from, its lineage or None for "read it from that checkpoint").

    ``--init-from`` and ``--resume`` win over the recipe's ``[init]``; ``[init] checkpoint`` is the recipe form
    of ``--init-from``; ``[init] recipe`` builds the missing stages first (``train_fn`` is training.train)."""
    if resume:
        return init_from, None
    recipe = resolve_recipe(task, recipe_file, overrides, settings=settings)
    init = recipe.init
    if init_from is not None:
        if init.recipe or init.checkpoint:
            note(f"init: --init-from {init_from} replaces the recipe's [init] {init.recipe or init.checkpoint}")
        return init_from, None
    where = f"recipe {recipe_file}" if recipe_file else "--set"
    kind, target = init_target(init, Path(recipe_file) if recipe_file else None, where)
    if kind == "checkpoint":
        return str(target), None
    if kind is None:
        return None, []
    # the run's own dev is checked now, not after its stages have trained for an hour
    streamed = isinstance(get_task(task), Streamed)  # folders expand as prepare expands them
    refuse_dev_in_train(recipe.data.dev, named_sources(recipe.data.train, folders=streamed))
    chain = [Path(recipe_file).resolve()] if recipe_file else []
    stage = plan(target, chain)
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1 and not _all_built(stage):
        raise UsageError(
            f"stage {stage.name} is not built yet, and stages are built in one process: run the same command "
            "without torchrun first (or let it build the stages and stop it once they are done)"
        )
    path, lineage = build(stage, show_progress, train_fn)
    return str(path), lineage


def _all_built(stage: Stage | None) -> bool:
    return stage is None or (stage.checkpoint.exists() and _all_built(stage.init))


def init_target(init, recipe_file: Path | None, where: str) -> tuple[str | None, Path | None]:
    """("recipe" | "checkpoint" | None, its path). A value the recipe file holds is relative to that file;
    one from --set to the working folder."""
    written = {}
    if recipe_file is not None:
        written = tomllib.loads(recipe_file.read_text(encoding="utf-8")).get("init", {})
    for kind in ("recipe", "checkpoint"):
        value = getattr(init, kind)
        if not value:
            continue
        base = recipe_file.parent if recipe_file is not None and written.get(kind) == value else Path.cwd()
        if kind == "checkpoint":
            return kind, base / value
        return kind, _find_recipe(value, base, where)
    return None, None


def _find_recipe(value: str, base: Path, where: str) -> Path:
    """A file relative to ``base`` (the recipe that names it), else a shipped recipe of that name."""
    candidate = (base / value).absolute()
    if candidate.is_file():
        return candidate
    if "/" not in value and "\\" not in value:
        try:
            return recipe_path(value)
        except UsageError:
            pass
    raise UsageError(f"{where}: [init] recipe {value!r}: no file {candidate} and no shipped recipe of that name")


def plan(path: Path, chain: list[Path]) -> Stage:
    """The stage that ``path`` trains, with the stages before it, each resolved and keyed; nothing is trained.
    ``chain`` holds the recipe files that lead here, to refuse a cycle."""
    resolved = path.resolve()
    if resolved in chain:
        names = " → ".join(p.name for p in [*chain[chain.index(resolved) :], resolved])
        raise UsageError(f"[init] recipe cycle: {names}")
    where = f"stage recipe {path}"
    try:
        task = tomllib.loads(path.read_text(encoding="utf-8")).get("task")
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"recipe {path}: not valid TOML ({e})") from None
    if task not in TASKS:
        raise UsageError(
            f'{where}: a stage recipe names its task at its top, as task = "..." (one of {", ".join(TASKS)}); '
            f"it has {task!r}"
        )
    kind, target = init_target(resolve_recipe(task, path).init, path, where)
    init, init_checkpoint, shape, init_key = None, None, {}, None
    if kind == "recipe":
        init = plan(target, [*chain, resolved])
        shape, init_key = encoder_shape(init.recipe), init.key
    elif kind == "checkpoint":
        init_checkpoint = target
        try:
            shape = encoder_shape(ckpt.read_meta(target).get("recipe", {}))
        except UsageError as e:
            raise UsageError(f"{where}: [init] {e}") from None
        init_key = file_hash(target)
    recipe = resolve_recipe(task, path, inherited={"encoder": shape} if shape else None).to_dict()
    key = stage_key(recipe, init_key)
    return Stage(path.stem, path, task, recipe, key, init, init_checkpoint)


def stage_key(recipe: dict, init_key: str | None) -> str:
    """sha256 over the resolved recipe, the content of its data, what starts it and the lstmtext version. A key
    added later stays out at its default (config.LATER_FIELDS), so adding it rebuilds no stage."""
    keyed = {
        section: {k: v for k, v in values.items() if LATER_FIELDS.get(f"{section}.{k}", object()) != v}
        if isinstance(values, dict)
        else values
        for section, values in recipe.items()
    }
    doc = {
        "recipe": keyed,
        "data": [content_hash(s) for s in data_sources(recipe)],
        "init": init_key,
        "lstmtext": __version__,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def data_sources(recipe: dict) -> list[str]:
    """What a run of ``recipe`` reads, as prepare() picks it: its train and dev sources, else the samples."""
    data, task = recipe["data"], recipe["task"]
    train = data["train"] if isinstance(data["train"], list) else [data["train"]] if data["train"] else []
    dev = data["dev"] if isinstance(data["dev"], list) else [data["dev"]] if data["dev"] else []
    if not train:
        train = [str(sample_path(task, "train"))]
        dev = dev or [str(sample_path(task, "dev"))]
    return [*train, *dev]


def content_hash(source: str) -> str:
    """sha256 of what a source holds: a file's bytes, or a folder's or PREFIX's files, each named. A
    Hugging Face source cannot be hashed without downloading it, so it counts by its name."""
    resolved = resolve_source(source)
    if is_hf(resolved):
        return resolved
    p = Path(resolved)
    if p.is_file():
        return file_hash(p)
    if glob.has_magic(resolved):
        files, root = sorted(Path(f) for f in glob.glob(resolved, recursive=True) if Path(f).is_file()), Path("/")
    elif p.is_dir():
        files, root = sorted(f for f in p.rglob("*") if f.is_file()), p
    else:  # a PREFIX: PREFIX.de, PREFIX.en
        files, root = sorted(p.parent.glob(p.name + ".*")), p.parent
    if not files:
        return f"missing {source}"  # the stage's own run will say what is wrong with it
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.resolve().relative_to(root.resolve())} {file_hash(f)}\n".encode())
    return h.hexdigest()


def build(stage: Stage, show_progress: bool, train_fn) -> tuple[Path, list[dict]]:
    """Build ``stage`` (the stages before it first) unless its checkpoint is there; (checkpoint, the lineage of
    a run that starts from it)."""
    init_path, lineage = None, []
    if stage.init is not None:
        init_path, lineage = build(stage.init, show_progress, train_fn)
    elif stage.init_checkpoint is not None:
        init_path, lineage = stage.init_checkpoint, None
    final = stage.checkpoint
    if final.exists():
        meta = ckpt.read_meta(final)
        note(f"stage {stage.name}: reused {final} (trained in {fmt_seconds(_seconds(final, meta))})")
    else:
        _train_stage(stage, init_path, lineage, show_progress, train_fn)
        meta = ckpt.read_meta(final)
    *before, entry = ancestry(final, meta)
    # the same key is the same content under any file name: the lineage names the files this run read, not
    # those of the run that first built the stages
    entry["recipe"] = str(stage.path)
    return final, [*(lineage if stage.init is not None else before), entry]


def _train_stage(stage: Stage, init_path, lineage, show_progress: bool, train_fn) -> None:
    final, partial = stage.checkpoint, stage.partial
    resume = companion(partial, "resume.safetensors").exists()
    note(f"stage {stage.name}: {'resuming' if resume else 'building'} {final} ({stage.task}, recipe {stage.path})")
    try:
        summary = train_fn(
            stage.task,
            str(stage.path),
            out=partial,
            init_from=None if resume or init_path is None else str(init_path),
            resume=resume,
            force=not resume,
            show_progress=show_progress,
            lineage=lineage,
        )
    except Interrupted as e:
        what = str(e).split("; continue with:")[0]  # its own way on is `train --resume` of the partial stage
        raise Interrupted(f"stage {stage.name}: {what}; run the same command again to resume the stage") from None
    if not partial.exists():
        raise UsageError(
            f"stage {stage.name}: its run wrote no checkpoint ({summary['stop']} before its first evaluation); "
            f"set train.eval_every in {stage.path}"
        )
    record = {"name": stage.name, "recipe": str(stage.path), "key": stage.key}
    record |= {"train_seconds": summary["train_seconds"], "stop": summary["stop"]}
    ckpt.atomic_write(companion(final, "stage.json"), lambda tmp: Path(tmp).write_text(json.dumps(record) + "\n"))
    log = companion(partial, "metrics.jsonl")
    if log.exists():
        os.replace(log, companion(final, "metrics.jsonl"))
    os.replace(partial, final)  # the checkpoint's final name says the stage is complete
    companion(partial, "resume.safetensors").unlink(missing_ok=True)
    note(f"stage {stage.name}: trained in {fmt_seconds(summary['train_seconds'])} → {final}")


def _record(path: Path) -> dict:
    """What the stage builder wrote beside a stage's checkpoint (nothing for other checkpoints)."""
    try:
        return json.loads(companion(Path(path), "stage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _seconds(path: Path, meta: dict) -> float:
    return _record(path).get("train_seconds") or (meta.get("provenance") or {}).get("train_seconds") or 0.0


def ancestry(path, meta: dict) -> list[dict]:
    """The lineage of a run that starts from the checkpoint at ``path``: that checkpoint's own lineage, then
    the checkpoint itself. A stage's entry names its recipe and key, and its training time is that of the
    whole stage; another checkpoint's entry has None there and the time until it was saved."""
    prov, record = meta.get("provenance") or {}, _record(Path(path))
    entry = {
        "name": record.get("name"),
        "recipe": record.get("recipe"),
        "task": meta.get("task"),
        "key": record.get("key"),
        "checkpoint": str(path),
        "train_seconds": _seconds(Path(path), meta),
        "metrics": meta.get("metrics") or {},
        "data": prov.get("data") or [],
    }
    return [*(prov.get("lineage") or []), entry]


def note_total(lineage: list[dict], summary: dict) -> None:
    """The chain's training time, stage by stage, and in all: what the one command cost from nothing."""
    if not lineage:
        return
    parts = [
        f"{e.get('name') or Path(str(e.get('checkpoint'))).name} {fmt_seconds(e.get('train_seconds') or 0)}"
        for e in lineage
    ]
    total = sum(e.get("train_seconds") or 0 for e in lineage) + summary["train_seconds"]
    note(
        f"lineage: {' → '.join(parts)} → this run {fmt_seconds(summary['train_seconds'])}; {fmt_seconds(total)} in all"
    )
