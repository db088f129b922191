"""``lstmtext tune``: an Optuna study over a recipe's ``[tune.space]`` (searchspace.py).

Each trial is a real ``training.train`` run with its own time budget and its own checkpoint, in a folder beside
the study's SQLite file. Its dev score is reported to Optuna after each evaluation, so the pruner can stop a
trial that trails the others at the same point of their runs. The study lives in the SQLite file: running the
same command again adds trials to it, and ``optuna`` (or the table printed at the end) shows what was tried.
The best trial is written as a recipe file that ``lstmtext train TASK --recipe FILE`` trains.

Scores are always dev scores: a test split (or a dataset's reported split) is refused as data, and without
``--dev`` the dev data is a seeded slice of train.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lstmtext.config import (
    ENCODER_SHAPE,
    LATER_FIELDS,
    Recipe,
    encoder_shape,
    parse_duration,
    parse_set,
    resolve_recipe,
)
from lstmtext.corpus import named_sources, refuse_dev_in_train
from lstmtext.errors import TrainingStopped, UsageError
from lstmtext.paths import companion, default_study_path
from lstmtext.progress import fmt_seconds, note
from lstmtext.searchspace import Param, parse_space, set_item
from lstmtext.sources import reported_split
from lstmtext.tasks import get_task
from lstmtext.tasks.contract import Streamed
from lstmtext.tune_report import trial_rows, trials_table, write_best

STUDY_NAME = "lstmtext"  # one study per file; the file's name says what it tunes
# A trial reports its dev score at the first evaluation in each tenth of its run (by steps or time, as its
# learning-rate schedule counts): trials that evaluate at different steps (another batch size, another speed)
# meet at the same keys, which is where the median pruner compares them.
TENTHS = 10
PRUNE_FROM = 2  # tenths: before a fifth of a run the scores say little about where it ends
HEARTBEAT = 60  # seconds; a trial without a heartbeat for twice this long (a killed process) is marked failed


def load_optuna():
    try:
        import optuna
    except ImportError:
        raise UsageError("lstmtext tune needs Optuna: pip install 'lstmtext[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # the notes below say what happens, once
    return optuna


def tune(
    task: str,
    recipe: str | Path | None = None,
    *,
    trials: int | None = None,
    max_time: str | None = None,
    study_path: str | Path | None = None,
    best_out: str | Path | None = None,
    settings: dict[str, Any] | None = None,
    overrides: list[str] | tuple = (),
    show_progress: bool = True,
    sampler=None,
    pruner=None,
) -> dict:
    """Run ``trials`` more trials (default ``tune.trials``) of the study at ``study_path`` and write the best
    trial's recipe to ``best_out``; returns a summary. ``max_time`` bounds the trials (each gets
    ``tune.trial_time`` or what is left; the recipe's stages are built before it starts); ``settings`` and
    ``overrides`` are as for ``training.train``.
    ``sampler``/``pruner`` (Optuna objects) replace the recipe's ``tune.sampler``/``tune.pruner``."""
    optuna = load_optuna()
    if int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        raise UsageError("lstmtext tune runs its trials one after another in one process; run it without torchrun")
    mod = get_task(task)
    settings, overrides = dict(settings or {}), list(overrides)
    base = resolve_recipe(task, recipe, overrides, settings=settings)
    params = parse_space(base)
    _check_inputs(base, params, settings, overrides)
    n = base.tune.trials if trials is None else trials
    if n < 1:
        raise UsageError(f"--trials {n}: expected at least 1 (the trials to run now)")
    total = parse_duration(max_time or "", "--max-time")
    if total == 0:
        raise UsageError(f"--max-time {max_time}: expected a positive duration such as 2h")
    path = Path(study_path) if study_path else default_study_path(task, str(recipe) if recipe else None)
    best_path = Path(best_out) if best_out else companion(path, "best.toml")
    if best_path.is_dir():
        raise UsageError(f"--best-out {best_path} is a folder; pass a file path such as {best_path}/best.toml")
    from lstmtext.training.stages import init_target

    init = init_target(base.init, Path(recipe) if recipe else None, "tune")  # (kind, path) of what trials start from
    study = open_study(optuna, path, mod, base, params, sampler, pruner, _start_id(*init, recipe))
    start = _start(task, recipe, settings, overrides, base, show_progress, init)
    objective = Objective(optuna, mod, recipe, settings, overrides, params, base, path, total, show_progress, start)
    from lstmtext.training import Interrupted  # after _start: torch loads once the inputs are known good

    try:
        study.optimize(objective, n_trials=n, timeout=total, catch=(TrainingStopped,), callbacks=[objective.enough])
    except Interrupted:  # its message tells how to resume a training run; a trial is not resumed
        raise Interrupted(
            f"interrupted: the trial under way is marked failed; {path} keeps the others; "
            "the same command adds trials to it"
        ) from None
    rows = trial_rows(study, mod)
    note(trials_table(rows, mod.MAIN_METRIC))
    best = write_best(study, mod, path, best_path, recipe)
    return {"study": str(path), "best_recipe": str(best_path) if best else None, "best": best, "trials": rows}


def _check_inputs(base: Recipe, params: list[Param], settings: dict, overrides: list[str]) -> None:
    """Dev data that is no reported split, no tuned key also fixed on the command line, and none that the
    checkpoint a recipe starts from fixes (the encoder's shape, the tokenizer)."""
    for source in (base.data.dev, *base.data.train):  # data.train is a list of inputs
        why = reported_split(source) if source else None
        if why:
            raise UsageError(
                f"{why}; tune scores its trials on dev data and never reads a reported split: pass a dev split "
                "with --dev, or leave --dev out for a seeded slice of train"
            )
    if base.data.train and not base.data.dev and base.data.valid_fraction == 0:
        raise UsageError(
            "tuning needs dev data: pass --dev (and --train without that split, where the recipe trains on its "
            "dev split) or set data.valid_fraction above 0"
        )
    if base.train.members > 1:
        raise UsageError("tune trains one model per trial: leave train.members at 1, and train the best recipe's")
    streamed = isinstance(get_task(base.task), Streamed)  # folders expand as prepare expands them
    refuse_dev_in_train(base.data.dev, named_sources(base.data.train, folders=streamed))
    tuned = {p.key for p in params}
    start = base.init.recipe or base.init.checkpoint
    fixed = {f"encoder.{k}" for k in ENCODER_SHAPE}
    for key in sorted(k for k in tuned if start and (k in fixed or k.startswith("tokenizer."))):
        raise UsageError(
            f"[tune.space] {key}: the encoder's shape and the tokenizer come from the checkpoint the recipe starts "
            f"from ([init] {start}), so a trial cannot change it; tune it in that recipe, or drop it"
        )
    given = {".".join(parse_set(item)[:2]) for item in overrides} | set(settings)
    for key in sorted(tuned & given):
        raise UsageError(f"{key} is both tuned ([tune.space]) and set on the command line; drop one of them")


def _fingerprint(base: Recipe, params: list[Param], start: str | None) -> dict:
    """What a study's scores depend on besides the tuned keys: the rest of the recipe, the trials' time and the
    checkpoint they start from (``start``: a stage's key, which changes with its recipe or data, or a checkpoint
    file's hash). The seed is left out: another seed draws other noise, not another experiment."""
    out = {"tune.trial_time": base.tune.trial_time, "[init] starting checkpoint": start}
    skip = {p.key for p in params} | {"train.max_time", "train.seed"}
    for section, values in base.to_dict().items():
        if section not in ("task", "tune"):
            out |= {f"{section}.{k}": v for k, v in values.items() if f"{section}.{k}" not in skip}
    return out


def _start_id(kind: str | None, target: Path | None, recipe) -> str | None:
    """What names the checkpoint the trials start from, computed without building it (see _fingerprint)."""
    from lstmtext.corpus import content_hash
    from lstmtext.training import stages

    if kind == "recipe":
        stage = stages.plan(target, [Path(recipe).resolve()] if recipe else [])
        return f"stage {stage.name} {stage.key[:16]}"
    if kind == "checkpoint":  # a missing one is refused by the stage builder, with the recipe it came from
        return f"checkpoint sha256 {content_hash(target)[:16]}" if target.is_file() else f"checkpoint {target}"
    return None


def open_study(optuna, path: Path, mod, base: Recipe, params: list[Param], sampler, pruner, start: str | None):
    """The study in ``path`` (made on first use); one made for another task, metric or recipe is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # the heartbeat
            storage = optuna.storages.RDBStorage(f"sqlite:///{path.resolve()}", heartbeat_interval=HEARTBEAT)
        existing = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    except Exception as e:  # SQLAlchemy's errors for a file that is no SQLite database, or one of another schema
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise UsageError(f"--study {path}: not an Optuna study file ({type(e).__name__}: {first})") from None
    direction = "maximize" if mod.HIGHER_IS_BETTER else "minimize"
    info = {"task": mod.NAME, "metric": mod.MAIN_METRIC, "direction": direction}
    info |= {"space": {p.key: p.kind for p in params}, "recipe": _fingerprint(base, params, start)}
    if STUDY_NAME in existing:
        study = optuna.load_study(study_name=STUDY_NAME, storage=storage)
        _check_same(path, study.user_attrs.get("lstmtext") or {}, info)
    else:
        study = optuna.create_study(study_name=STUDY_NAME, storage=storage, direction=direction)
        study.set_user_attr("lstmtext", json.loads(json.dumps(info)))
        _enqueue_recipe(study, base, params)
    u, seed = base.tune, base.train.seed + len(study.trials)  # a continued study samples new points
    if sampler is None and u.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    elif sampler is None:
        sampler = optuna.samplers.TPESampler(n_startup_trials=u.startup_trials, seed=seed)
    if pruner is None and u.pruner == "median":
        pruner = optuna.pruners.MedianPruner(n_startup_trials=u.startup_trials, n_warmup_steps=PRUNE_FROM)
    elif pruner is None:
        pruner = optuna.pruners.NopPruner()
    study.sampler, study.pruner = sampler, pruner
    return study


def _enqueue_recipe(study, base: Recipe, params: list[Param]) -> None:
    """A new study's first trial runs the recipe's own values, so the best trial is never worse than the recipe
    under the same budget, and the table shows what the search gained over it; skipped, with a note, when one
    of the recipe's values lies outside the space."""
    flat = base.to_dict()
    values = {}
    for p in params:
        section, _, name = p.key.partition(".")
        values[p.key] = flat[section][name]
    outside = [f"{p.key} = {values[p.key]!r}" for p in params if not p.holds(values[p.key])]
    if outside:
        note(f"the recipe's own values are not a point of [tune.space] ({', '.join(outside)}): no trial runs them")
        return
    study.enqueue_trial(values, user_attrs={"recipe_values": True})


def _check_same(path: Path, stored: dict, info: dict) -> None:
    for key in ("task", "metric", "direction"):
        if stored.get(key) != info[key]:
            raise UsageError(
                f"--study {path} tunes {stored.get('task')} for {stored.get('direction')} {stored.get('metric')}, "
                f"not {info['task']} for {info['direction']} {info['metric']}; pass another --study"
            )
    for key, kind in info["space"].items():
        if stored.get("space", {}).get(key, kind) != kind:
            raise UsageError(
                f"--study {path} sampled {key} as a {stored['space'][key]}, now it is a {kind}; pass another --study"
            )
    old, new = stored.get("recipe", {}), info["recipe"]
    missing = LATER_FIELDS.keys() - old.keys() - stored.get("space", {}).keys()
    old = {k: LATER_FIELDS[k] for k in missing} | old  # a study kept before them had these
    for key in sorted(set(old) & set(new)):  # any other key one lstmtext version lacks is no difference
        if old[key] != new[key] and key not in info["space"]:
            raise UsageError(
                f"--study {path} was run with {key} = {old[key]!r}, this recipe has {new[key]!r}, so their "
                "scores do not compare; pass another --study"
            )


@dataclass
class Start:
    """What every trial starts from: the checkpoint (None: from scratch), its lineage, and the encoder shape it
    fixes, which each trial's recorded recipe takes as `lstmtext train` does."""

    init_from: str | None
    lineage: list[dict]
    shape: dict
    init: dict  # the recipe's [init] as a file in another folder must name it (_absolute_init)


def _start(task: str, recipe, settings: dict, overrides: list[str], base: Recipe, show_progress: bool, init) -> Start:
    """The recipe's stages built (or reused) once, before the clock starts, as `lstmtext train` does: every
    trial then starts from the same checkpoint, and --max-time is the trials' alone."""
    from lstmtext.checkpoint import read_meta
    from lstmtext.training import stages, train

    init_from, lineage = stages.starting_point(task, recipe, settings, overrides, None, False, show_progress, train)
    shape = {}
    if init_from:
        meta = read_meta(init_from)
        lineage = lineage if lineage is not None else stages.ancestry(init_from, meta)  # an [init] checkpoint's
        shape = encoder_shape(meta.get("recipe", {}))
    return Start(init_from, lineage or [], shape, _absolute_init(base, *init))


def _absolute_init(base: Recipe, kind: str | None, target: Path | None) -> dict:
    """The recipe's [init] with its path made absolute, as stages resolved it (``target``: a value the recipe
    file holds is relative to that file, one from --set to the working folder); a name that resolved to a
    shipped recipe stays a name."""
    from lstmtext.data import recipe_path

    if kind == "recipe":
        try:
            if Path(recipe_path(base.init.recipe)).resolve() == target.resolve():
                return {}
        except UsageError:  # no shipped recipe of that name
            pass
    return {kind: str(target.absolute())} if kind else {}


class Objective:
    """One trial: sample, train with the trial's budget, report dev scores on the way, return the best."""

    def __init__(self, optuna, mod, recipe, settings, overrides, params, base, path: Path, total, show_progress, start):
        self.optuna, self.mod, self.recipe = optuna, mod, recipe
        self.start = start
        self.settings, self.overrides, self.params = settings, overrides, params
        self.folder = companion(path, "trials")
        self.trial_time = parse_duration(base.tune.trial_time, "tune.trial_time")
        self.deadline = time.monotonic() + total if total else None
        # a trial given less than half the time of the others would be compared unfairly; none is started
        self.shortest = min(t for t in (self.trial_time, total, float("inf")) if t) / 2
        self.show_progress = show_progress

    def budget(self) -> float | None:
        left = self.deadline - time.monotonic() if self.deadline else None
        limits = [t for t in (self.trial_time, left) if t is not None]
        return max(1.0, min(limits)) if limits else None

    def enough(self, study, trial) -> None:
        """After each trial: stop the study when the time left would make a short, unfair trial."""
        if self.deadline and self.deadline - time.monotonic() < self.shortest:
            study.stop()

    def recorded(self, recipe: dict) -> dict:
        """A trial's recipe as the best-recipe file holds it: no search, and what it starts from named so that
        the file trains from any folder."""
        recipe = {k: v for k, v in recipe.items() if k != "tune"}
        if self.start.init:
            recipe["init"] = recipe["init"] | self.start.init
        return recipe

    def __call__(self, trial) -> float:
        from lstmtext.training import train

        values = {p.key: p.suggest(trial) for p in self.params}
        sets = [set_item(k, v) for k, v in values.items()]
        budget = self.budget()
        settings = self.settings | ({"train.max_time": f"{budget:.0f}s"} if budget else {})
        overrides = [*self.overrides, *sets]
        inherited = {"encoder": self.start.shape} if self.start.shape else None  # the starting encoder's shape
        recipe = resolve_recipe(self.mod.NAME, self.recipe, overrides, settings=settings, inherited=inherited)
        recipe = self.recorded(recipe.to_dict())
        out = self.folder / f"trial-{trial.number:04d}.ckpt"
        trial.set_user_attr("recipe", recipe)
        trial.set_user_attr("checkpoint", str(out))
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        own = " (the recipe's own values)" if trial.user_attrs.get("recipe_values") else ""
        note(f"trial {trial.number}: {shown}{own}" + (f" (budget {fmt_seconds(budget)})" if budget else ""))
        try:
            summary = train(
                self.mod.NAME,
                self.recipe,
                settings=settings,
                overrides=overrides,
                out=out,
                init_from=self.start.init_from,
                lineage=self.start.lineage,
                force=True,  # a trial number is never reused; a file there is a killed trial's
                show_progress=self.show_progress,
                on_eval=self.reporter(trial),
            )
        except TrainingStopped as e:
            note(f"trial {trial.number} failed: {e}")
            raise
        finally:
            companion(out, "resume.safetensors").unlink(missing_ok=True)  # a trial is never resumed
        trial.set_user_attr("steps", summary["steps"])
        return (summary["best"] or {})[self.mod.MAIN_METRIC]

    def reporter(self, trial):
        metric, reported = self.mod.MAIN_METRIC, set()

        def on_eval(step: int, metrics: dict, fraction: float) -> None:
            key = min(TENTHS, int(fraction * TENTHS))
            if metric not in metrics or key in reported:
                return
            reported.add(key)
            trial.report(metrics[metric], key)
            if key < TENTHS and trial.should_prune():  # a run that is over is finished, not pruned
                note(
                    f"trial {trial.number}: pruned at step {step} ({key * 10}% of its run), {metric} {metrics[metric]}"
                )
                raise self.optuna.TrialPruned(f"{metric} {metrics[metric]} at {key * 10}% of the run")

        return on_eval
