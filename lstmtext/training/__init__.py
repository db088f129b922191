"""Training, the same for every task: the task module reads, featurizes, collates, builds the model and
evaluates; ``model(batch)`` returns (logits, loss).

``train`` prepares the data (prepare.py), builds the model and optimizer (build.py) and runs the fit loop
(loop.py), which evaluates and keeps the best checkpoint (evaluation.py). The resume state (resume.py) is
written beside the checkpoint as ``NAME.resume.safetensors`` at every evaluation, on Ctrl-C and when
``train.max_steps`` is reached, always between two steps, so ``--resume`` continues the run exactly. Under
``torchrun`` each rank trains on its share of every epoch's batches (distributed.py) and only rank 0 writes.
"""

from __future__ import annotations

import os
import random
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from lstmtext import checkpoint as ckpt
from lstmtext.config import encoder_shape, parse_duration, resolve_recipe
from lstmtext.device import pick_device
from lstmtext.errors import UsageError
from lstmtext.paths import companion, default_model_path
from lstmtext.progress import fmt_seconds, is_main, note
from lstmtext.tasks import get_task
from lstmtext.training import distributed, stages
from lstmtext.training import resume as resume_state
from lstmtext.training.build import build
from lstmtext.training.evaluation import Evaluator, OnEval
from lstmtext.training.loop import MAX_STEPS, Interrupted, Loop, first_batch
from lstmtext.training.output import Output, OutputLock
from lstmtext.training.prepare import prepare, read_split
from lstmtext.training.state import Clock, LoopState

__all__ = ["train", "Interrupted"]


def train(
    task: str,
    recipe: str | Path | None = None,
    *,
    settings: dict[str, Any] | None = None,
    overrides: list[str] | tuple = (),
    out: str | Path | None = None,
    init_from: str | Path | None = None,
    resume: bool = False,
    force: bool = False,
    show_progress: bool = True,
    lineage: list[dict] | None = None,
    on_eval: OnEval | None = None,
) -> dict:
    """Train a model for ``task`` and write its best checkpoint to ``out``; returns a summary dict.

    ``settings`` are typed recipe values ({"train.epochs": 3}), ``overrides`` ``--set`` strings; ``--max-time``
    (train.max_time) bounds the wall time of the whole call, reading and tokenizer training included, but not
    the stages that the recipe's ``[init] recipe`` builds first (training/stages.py), which run by their own
    recipes alone. ``lineage`` is the stage builder's: the ancestors of ``init_from``, which it has resolved.

    ``on_eval(step, metrics, fraction)`` is called after each evaluation on the dev split, once its checkpoint
    and log row are written, with the task's scalar metrics and the fraction of the run done (0–1, by steps or
    by time, as the learning-rate schedule counts it). An exception it raises ends the run at once (its lock
    released, the best checkpoint so far kept): ``lstmtext tune`` prunes a trial this way."""
    mod = get_task(task)
    output = Output.at(Path(out) if out else default_model_path(task))
    if resume and init_from:
        raise UsageError("--resume continues a run; --init-from starts a new one: pass only one of them")
    main = is_main()  # under torchrun, rank 0 alone writes
    with ExitStack() as stack:
        if main:
            stack.enter_context(OutputLock(output.lock, output.checkpoint))
            output.remove_stale_temp_files()
        output.check(resume, force)
        if lineage is None:
            init_from, lineage = stages.starting_point(
                task, recipe, settings, overrides, init_from, resume, show_progress, train
            )
        init = (init_from, lineage)
        members = resolve_recipe(task, recipe, overrides, settings=settings).train.members if not resume else 1
        if members > 1:
            mod.ensemble([])  # a task whose predictions do not combine refuses before any training
            if int(os.environ.get("WORLD_SIZE", "1")) > 1:
                raise UsageError(
                    "train.members runs in one process: under torchrun train each member with its own --seed and "
                    "--set data.split_seed=N, then put them together with lstmtext ensemble"
                )
            summary = _train_members(mod, recipe, settings, overrides, output, init, force, show_progress, members)
        else:
            summary = _train(mod, recipe, settings, overrides, output, init, resume, show_progress, on_eval)
        if main:
            stages.note_total(summary["lineage"], summary)
        return summary


def _train(
    mod, recipe_path, settings, overrides, output: Output, init, resume: bool, show_progress: bool, on_eval
) -> dict:
    clock = Clock()  # after the stages: --max-time is this run's alone
    init_from, lineage = init
    stored_meta, stored, state = resume_state.read(output.resume, mod.NAME) if resume else ({}, {}, LoopState())
    clock.carry(state)
    init_meta, init_tensors = ckpt.load(init_from) if init_from else ({}, {})
    if init_from:
        from lstmtext.ensemble import check_single

        check_single(init_from, init_meta, "--init-from")
    shape = encoder_shape(init_meta.get("recipe", {}))
    recipe = resolve_recipe(
        mod.NAME,
        recipe_path,
        overrides,
        settings=settings,
        stored=stored_meta.get("recipe"),
        inherited={"encoder": shape} if shape else None,
    )
    tc = recipe.train
    device = pick_device(tc.device)
    d = distributed.setup(device)
    random.seed(tc.seed)
    torch.manual_seed(tc.seed)
    max_time = parse_duration(tc.max_time)

    prepared = prepare(mod, recipe, d, clock, stored_meta, init_meta, show_progress)
    if resume:
        resume_state.check_same_data(stored_meta, prepared.provenance)
    with clock.phase("setup"):
        precision = stored_meta.get("precision") if resume else None
        timed = tc.precision == "fastest" and precision is None
        run = build(
            mod,
            recipe,
            prepared.tok,
            prepared.labels,
            device,
            d,
            init=(init_from, init_meta, init_tensors) if init_from else None,
            weights=resume_state.model_weights(stored) if resume else None,
            precision=precision,
            first=first_batch(mod, prepared.train_feats, recipe, d, device) if timed else None,
        )
    if resume:
        resume_state.restore(run, stored_meta, stored, state)
        note(f"resuming at step {state.step} (epoch {state.epoch + 1}, batch {state.pos}) from {output.resume}")
    context = stored_meta.get("context") or {
        "init_from": str(init_from) if init_from else None,
        "lineage": lineage if lineage is not None else stages.ancestry(init_from, init_meta) if init_from else [],
    }
    context.setdefault("lineage", [])
    context["world_size"] = d.world
    evaluate = Evaluator(mod, run, prepared, output.checkpoint, output.log, context, d.main, on_eval)

    def save_resume() -> None:
        if d.main:
            state.elapsed, state.spent = clock.elapsed(), dict(clock.spent)
            resume_state.save(output.resume, run, state, prepared.provenance, context)

    loop = Loop(mod, run, prepared, state, evaluate, save_resume, d, clock, max_time)
    if d.main and not resume:
        output.start_over()
    try:
        stop = loop.fit(show_progress)
    except KeyboardInterrupt:
        kept = f"{output.resume} (step {state.last_eval_step}) is kept" if output.resume.exists() else "none was saved"
        raise Interrupted(
            f"interrupted twice: stopped at once without saving this step; the last resume state {kept}"
        ) from None
    if stop == "interrupted":
        raise Interrupted(
            f"interrupted at step {state.step}; resume state saved to {output.resume}; "
            f"continue with: lstmtext train {mod.NAME} -o {output.checkpoint} --resume"
        )
    distributed.teardown(d)
    return _summary(mod, output.checkpoint, state, stop, clock, d.main) | {"lineage": context["lineage"]}


def _train_members(mod, recipe_path, settings, overrides, output: Output, init, force, show_progress, n) -> dict:
    """train.members > 1: n runs of the recipe one after another, seeds train.seed, +1, …, each to its own
    OUT.memberI.ckpt (its resume state and log beside it), all holding out the same dev slice and starting from
    the same stages; then OUT, the ensemble of their best checkpoints, scored on that dev data. train.max_time
    bounds each run. A run that stops early is continued on its own (``-o OUT.memberI.ckpt --resume``), then
    ``lstmtext ensemble`` puts the members together."""
    from lstmtext import api
    from lstmtext.ensemble import write

    recipe = resolve_recipe(mod.NAME, recipe_path, overrides, settings=settings)
    seed, parts, summaries = recipe.train.seed, [], []
    together = {"seed": seed, "members": n}  # the ensemble's own recipe: its first seed, its size
    for i in range(n):
        part = Output.at(companion(output.checkpoint, f"member{i + 1}.ckpt"))
        note(f"ensemble member {i + 1} of {n}: seed {seed + i}, {part.checkpoint}")
        member = [f"train.seed={seed + i}", f"data.split_seed={recipe.data.split_seed or seed}", "train.members=1"]
        with OutputLock(part.lock, part.checkpoint):
            part.check(False, force)
            part.remove_stale_temp_files()
            summaries.append(
                _train(mod, recipe_path, settings, [*overrides, *member], part, init, False, show_progress, None)
            )
        parts.append(part.checkpoint)
    meta = write(parts, output.checkpoint, force=True, train=together)
    p = api.load(output.checkpoint)  # scored on the dev split its members selected on, if they had one
    dev = read_split(mod, p.recipe)[-1]
    if dev:
        feats = mod.featurize(dev, p.tok, p.labels, p.recipe)
        metrics = mod.summary(mod.evaluate(p.model, feats, p.labels, p.device, p.batch_tokens, p.tok))
        meta = write(parts, output.checkpoint, force=True, train=together, metrics=metrics)
        note(f"ensemble of {n}: dev {mod.MAIN_METRIC} {metrics[mod.MAIN_METRIC]:.4f}")
    elapsed = sum(s["train_seconds"] for s in summaries)
    note(f"ensemble of {n}: {output.checkpoint} ({fmt_seconds(elapsed)} of training in all)")
    return {
        **summaries[0],
        "checkpoint": str(output.checkpoint),
        "steps": sum(s["steps"] for s in summaries),
        "train_seconds": round(elapsed, 1),
        "best": meta["metrics"],
        "members": summaries,
    }


def _summary(mod, out: Path, state: LoopState, stop: str, clock: Clock, main: bool) -> dict:
    elapsed = clock.elapsed()
    if main:
        if stop == MAX_STEPS:
            note(
                f"stopped after {state.step} steps (train.max_steps); continue with: "
                f"lstmtext train {mod.NAME} -o {out} --resume --set train.max_steps=0"
            )
        else:
            note(
                f"{stop} after {state.step} steps in {fmt_seconds(elapsed)} ({clock.breakdown()}); "
                f"best checkpoint: {out}"
            )
    return {
        "task": mod.NAME,
        "checkpoint": str(out),
        "stop": stop,
        "steps": state.step,
        "train_seconds": round(elapsed, 1),
        "seconds": {k: round(v, 1) for k, v in clock.spent.items()},
        "best": state.best_metrics,
        "main_metric": mod.MAIN_METRIC,
        "tokens_per_s": round(state.rate),
    }
