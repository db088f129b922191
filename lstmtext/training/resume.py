"""The resume file ``NAME.resume.safetensors``: the model, the optimizer's tensors, the weight average and the
RNG states as tensors, and the ``LoopState`` as JSON metadata. No pickle: loading one never runs code."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from lstmtext import checkpoint as ckpt
from lstmtext.errors import UsageError
from lstmtext.training.state import LoopState


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict, dict]:
    sd = opt.state_dict()
    tensors = {}
    for pid, state in sd["state"].items():
        for k, v in state.items():
            tensors[f"optim.{pid}.{k}"] = v if isinstance(v, torch.Tensor) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    groups = meta["param_groups"]
    if len(groups) != len(opt.param_groups) or any("lr_scale" not in g for g in groups):
        raise UsageError(
            "--resume: this resume state's optimizer groups do not match this version of lstmtext; "
            "start the run again without --resume (or --init-from its checkpoint)"
        )
    opt.load_state_dict({"state": state, "param_groups": groups})


def read(path: Path, task: str) -> tuple[dict, dict, LoopState]:
    """(meta, tensors, loop state) of a resume file."""
    if not path.exists():
        raise UsageError(f"--resume: no resume state at {path}; start the run without --resume")
    meta, tensors = ckpt.load(path, task=task, command=f"train {task} --resume")
    if meta.get("kind") != "resume" or "loop" not in meta:
        raise UsageError(f"--resume: {path} is not a resume state written by lstmtext train")
    state = LoopState.from_dict(meta["loop"])
    state.rng_python = state.rng_python or meta.get("rng_python")  # resume states that keep it beside "loop"
    return meta, tensors, state


def save(path: Path, run, state: LoopState, data: list[dict], context: dict | None = None) -> None:
    """Write ``run``'s model, optimizer, average and RNG with ``state`` (the run of training.build.Built); the
    provenance of its data, so a resumed run can tell that its data changed meanwhile; and ``context``, what the
    run's checkpoints record of where it started (its init_from and lineage)."""
    tensors = {f"model.{k}": v for k, v in run.raw_model.state_dict().items()}
    opt_tensors, opt_meta = optimizer_tensors(run.opt)
    tensors.update(opt_tensors)
    tensors.update({f"step.{k}": v for k, v in run.raw_model.step_state().items()})  # e.g. lm.carry_state's
    tensors["rng.torch"] = torch.get_rng_state()
    if run.device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(run.device)
    if run.average:
        tensors.update(run.average.tensors())
        state.ema_updates = run.average.updates
    state.scaler = run.scaler.state_dict() if run.scaler is not None else None
    state.rng_python = list(random.getstate()[1])
    meta = {
        "task": run.recipe.task,
        "kind": "resume",
        "recipe": run.recipe.to_dict(),
        "labels": run.labels,
        "optimizer": opt_meta,
        "precision": run.precision,  # what train.precision resolved to: "fastest" is not timed again on resuming
        "loop": state.to_dict(),
        "data": data,
        "context": context or {},
    }
    ckpt.save(path, tensors, meta, run.tok.model_proto)


def check_same_data(stored_meta: dict, data: list[dict]) -> None:
    """Resuming on other data would not continue the run: its batches are positions in the data it began on.
    Content keys are compared (paths may be written differently); a resume state without them is not checked."""

    def keys(entries: list[dict]) -> list:
        return [e.get("sha256") or e.get("token_stream") for e in entries if "sha256" in e or "token_stream" in e]

    if "data" in stored_meta and keys(stored_meta["data"]) != keys(data):
        raise UsageError(
            "--resume: the training data changed since this run started (its files' contents differ); "
            "start over with --force, or restore the data"
        )


def model_weights(tensors: dict) -> dict:
    return {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}


def restore(run, meta: dict, tensors: dict, state: LoopState) -> None:
    """Put a resume file's optimizer, average and RNG back into ``run`` (built with ``model_weights``)."""
    restore_optimizer(run.opt, tensors, meta["optimizer"])
    steps = {k.removeprefix("step."): v.to(run.device) for k, v in tensors.items() if k.startswith("step.")}
    run.raw_model.restore_step_state(steps)
    if run.average:
        run.average.restore(tensors, state.ema_updates)
    if run.scaler is not None and state.scaler:
        run.scaler.load_state_dict(state.scaler)
    torch.set_rng_state(tensors["rng.torch"])
    if run.device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], run.device)
    random.setstate((3, tuple(state.rng_python), None))
