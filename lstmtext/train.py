"""The one training loop for every task. It never branches on the task: the task module reads, featurizes,
collates, builds the model and evaluates; ``model(batch)`` returns (logits, loss).

Resume state (model, optimizer, RNG, data position, best score, elapsed time) is written beside the
checkpoint as ``NAME.resume.safetensors`` at every evaluation, on Ctrl-C and when ``train.max_steps`` is
reached, so ``--resume`` continues the run exactly. Under ``torchrun`` each rank trains on its share of
every epoch's batches (DDP, gloo on CPU, NCCL on CUDA) and only rank 0 writes.
"""

from __future__ import annotations

import json
import math
import os
import platform
import random
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from lstmtext import __version__
from lstmtext import checkpoint as ckpt
from lstmtext.transfer import copy_encoder
from lstmtext.config import ENCODER_SHAPE, parse_duration, resolve_recipe  # noqa: F401 (tests import it here)
from lstmtext.data import bucket_batches, is_hf, sample_path, sha256_file, split_valid
from lstmtext.errors import TrainingStopped, UsageError
from lstmtext.device import autocast_for, pick_device
from lstmtext.paths import companion, default_model_path
from lstmtext.progress import TrainProgress, fmt_seconds, note
from lstmtext.tasks import get_task
from lstmtext.tasks.common import to_device
from lstmtext.tokenizer import Tokenizer


class Interrupted(Exception):
    """Ctrl-C during training; the resume state has been written."""

    def __init__(self, message: str):
        super().__init__(message)


# -- distributed -------------------------------------------------------------------------------------------
@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def broadcast_bytes(data: bytes | None, d: Dist) -> bytes:
    """Rank 0's bytes on every rank (the tokenizer model), through tensors: no pickle."""
    if d.world == 1:
        return data  # type: ignore[return-value]
    import torch.distributed as dist

    n = torch.tensor([len(data) if d.main else 0], dtype=torch.long)
    dist.broadcast(n, 0)
    buf = torch.frombuffer(bytearray(data), dtype=torch.uint8) if d.main else torch.empty(int(n), dtype=torch.uint8)
    dist.broadcast(buf, 0)
    return bytes(buf.numpy().tobytes())


def all_flags(flags: list[int], d: Dist, device) -> list[int]:
    """Max of small integer flags over ranks, so every rank stops at the same step."""
    if d.world == 1:
        return flags
    import torch.distributed as dist

    t = torch.tensor(flags, dtype=torch.long, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


# -- optimizer state without pickle ------------------------------------------------------------------------
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
        # written by an older lstmtext, whose optimizer grouped the parameters differently
        raise UsageError("--resume: this resume state's optimizer groups do not match this version of lstmtext; "
                         "start the run again without --resume (or --init-from its checkpoint)")
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_tensors() -> dict:
    return {"rng.torch": torch.get_rng_state()}


# -- the loop ----------------------------------------------------------------------------------------------
def lr_factor(progress: float, warmup: float, schedule: str) -> float:
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 1e-3)
    if schedule == "constant":
        return 1.0
    rest = min(1.0, (progress - warmup) / max(1e-9, 1 - warmup))
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * rest))
    return max(0.0, 1.0 - rest)


def param_groups(model, weight_decay: float, encoder_lr_scale: float = 1.0) -> list[dict]:
    """AdamW groups: no weight decay on biases, norms and embeddings; the encoder's learning rate scaled by
    ``encoder_lr_scale`` (below 1 fine-tunes an encoder taken with --init-from gently, as ULMFiT's
    discriminative rates do, so the new head's large early gradients do not wash out what it learned)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        key = (name.startswith("encoder."), p.dim() >= 2 and "embed" not in name)
        groups.setdefault(key, []).append(p)
    return [
        {"params": params, "weight_decay": weight_decay if decay else 0.0, "lr_scale": encoder_lr_scale if enc else 1.0}
        for (enc, decay), params in sorted(groups.items())
    ]


def train_step(model, opt, batch: dict, autocast, scaler, clip: float) -> tuple[torch.Tensor, bool]:
    """One optimisation step; a non-finite loss skips the update and reports False."""
    with autocast():
        _, loss = model(batch)
    if not torch.isfinite(loss).item():
        return loss, False
    opt.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
    else:
        loss.backward()
    if clip > 0:
        torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], clip)
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    return loss, True


class WeightAverage:
    """An exponential moving average of the parameters (Polyak averaging), which evaluation and the saved
    checkpoint use while training goes on from the raw weights. On small data such as CoNLL-2003 the raw weights
    jitter from step to step; their average tends to score a little higher and varies less between seeds.

    The decay ramps up as (1 + n) / (10 + n) so that the first steps are not averaged with the initial weights."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay, self.updates = decay, 0
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1 - decay)

    @contextmanager
    def applied(self):
        """The model holds the averaged weights inside the block, its own again after it."""
        with torch.no_grad():
            raw = [p.detach().clone() for p in self.params]
            torch._foreach_copy_(self.params, self.shadow)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self.params, raw)

    def tensors(self) -> dict:
        return {f"ema.{n}": t for n, t in zip(self.names, self.shadow)}

    def restore(self, tensors: dict, updates: int) -> None:
        """Take the average back from resume state; one written without it keeps the current weights."""
        with torch.no_grad():
            for name, t in zip(self.names, self.shadow):
                if f"ema.{name}" in tensors:
                    t.copy_(tensors[f"ema.{name}"])
        self.updates = updates


def _better(a: float | None, b: float | None, higher: bool) -> bool:
    if b is None:
        return True
    if a is None:
        return False
    return a > b if higher else a < b


def build_model_seeded(mod, recipe, vocab_size: int, labels: list[str]):
    """The task's model. With train.init_seed its initial weights depend on that seed alone, and train.seed
    goes on to order the data and draw dropout: runs that differ in train.seed then start from the same
    weights, stay in one basin, and their weights can be averaged (lstmtext average)."""
    tc = recipe.train
    if tc.init_seed:
        torch.manual_seed(tc.init_seed)
    model = mod.build_model(recipe, vocab_size, labels)
    if tc.init_seed:
        torch.manual_seed(tc.seed)
    return model


def _seed_all(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def train(
    task: str,
    recipe_path: str | None = None,
    overrides: list[str] | tuple = (),
    out: str | Path | None = None,
    init_from: str | None = None,
    resume: bool = False,
    force: bool = False,
    show_progress: bool = True,
) -> dict:
    """Train a model for ``task`` and write the best checkpoint to ``out``. Returns a summary dict."""
    mod = get_task(task)
    out = Path(out) if out else default_model_path(task)
    resume_file = companion(out, "resume.safetensors")
    log_file = companion(out, "metrics.jsonl")
    if resume and init_from:
        raise UsageError("--resume continues a run; --init-from starts a new one: pass only one of them")

    stored_state: dict = {}
    stored_meta: dict = {}
    if resume:
        if not resume_file.exists():
            raise UsageError(f"--resume: no resume state at {resume_file}; start the run without --resume")
        stored_meta, stored_state = ckpt.load(resume_file, task=task, command=f"train {task} --resume")
    elif out.exists() and not force:
        raise UsageError(f"output {out} exists; pass --force to overwrite it or --resume to continue its run")
    if out.exists() and out.is_dir():
        raise UsageError(f"output {out} is a folder; pass a file path such as {out}/model.ckpt")

    init_meta, init_state = ckpt.load(init_from) if init_from else ({}, {})
    shape = {k: v for k, v in init_meta.get("recipe", {}).get("encoder", {}).items() if k in ENCODER_SHAPE}
    recipe = resolve_recipe(task, recipe_path, overrides, stored=stored_meta.get("recipe"),
                            inherited={"encoder": shape} if shape else None)
    tc = recipe.train
    device = pick_device(tc.device)
    d = setup_distributed(device)
    if d.world > 1 and device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 2) // d.world))
    _seed_all(tc.seed)
    max_time = parse_duration(tc.max_time)

    # data
    train_src = recipe.data.train or str(sample_path(task, "train"))
    train_examples = mod.read(train_src, recipe.options, "train")
    dev_src = recipe.data.dev or ("" if recipe.data.train else str(sample_path(task, "dev")))
    if dev_src:
        dev_examples = mod.read(dev_src, recipe.options, "validation")
    else:
        train_examples, dev_examples = split_valid(
            train_examples, recipe.data.valid_fraction, recipe.data.valid_max, tc.seed
        )

    # tokenizer: resume > init-from > trained on this run's training text (on rank 0, then shared)
    if stored_meta:
        tok = Tokenizer(ckpt.tokenizer_proto(stored_meta))
    elif init_meta:
        tok = Tokenizer(ckpt.tokenizer_proto(init_meta))
    else:
        proto = None
        if d.main:
            t0 = time.perf_counter()
            tc_ = recipe.tokenizer
            proto = Tokenizer.train(
                mod.tokenizer_texts(train_examples), tc_.vocab_size, tc_.model_type, tc_.character_coverage,
                tc_.max_sentences, tc.init_seed or tc.seed,
            ).model_proto
            note(f"tokenizer: trained in {time.perf_counter() - t0:.1f}s")
        tok = Tokenizer(broadcast_bytes(proto, d))
    labels = stored_meta.get("labels") or mod.make_labels(train_examples)
    train_feats = mod.featurize(train_examples, tok, labels, recipe)
    dev_feats = mod.featurize(dev_examples, tok, labels, recipe) if dev_examples else []
    note(
        f"{task}: {len(train_feats)} training examples, {len(dev_feats)} for validation"
        f"{'' if dev_src else ' (a seeded slice of train)'}, vocabulary {len(tok)}"
        + (f", labels {', '.join(labels)}" if labels else "")
    )

    # model
    model = build_model_seeded(mod, recipe, len(tok), labels)
    if init_state:
        copy_encoder(model, init_state, init_from, init_meta, task=recipe.task)
    if stored_state:
        model.load_state_dict({k[len("model."):]: v for k, v in stored_state.items() if k.startswith("model.")})
    model.to(device)
    raw_model = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)

    opt = torch.optim.AdamW(param_groups(raw_model, tc.weight_decay, tc.encoder_lr_scale), lr=tc.lr, foreach=True)
    if stored_state:
        restore_optimizer(opt, stored_state, stored_meta["optimizer"])
    autocast, scaler = autocast_for(device, tc.precision)
    average = WeightAverage(raw_model, tc.ema) if tc.ema else None
    if average and stored_state:
        average.restore(stored_state, stored_meta.get("loop", {}).get("ema_updates", 0))

    lengths = [f["length"] for f in train_feats]

    def epoch_batches(epoch: int) -> list[list[int]]:
        batches = bucket_batches(lengths, tc.batch_tokens, tc.max_batch_size, shuffle=True, seed=tc.seed * 1000 + epoch)
        if d.world > 1:  # equal counts on every rank, or DDP's all-reduce would wait forever
            batches = batches[: len(batches) // d.world * d.world][d.rank :: d.world]
        return batches

    steps_per_epoch = len(epoch_batches(0))
    if steps_per_epoch == 0:
        raise UsageError(f"{train_src}: too few examples to make a batch on each of {d.world} processes")
    total_steps = steps_per_epoch * tc.epochs

    # state carried across resume
    st = stored_meta.get("loop", {})
    step, epoch, pos = st.get("step", 0), st.get("epoch", 0), st.get("pos", 0)
    best, bad_evals = st.get("best"), st.get("bad_evals", 0)
    elapsed_before = st.get("elapsed", 0.0)
    best_metrics = st.get("best_metrics")
    if stored_meta:
        torch.set_rng_state(stored_state["rng.torch"])
        random.setstate((3, tuple(stored_meta["rng_python"]), None))
        note(f"resuming at step {step} (epoch {epoch + 1}, batch {pos}) from {resume_file}")

    higher = getattr(mod, "HIGHER_IS_BETTER", True)
    main_metric = mod.MAIN_METRIC
    provenance_data = [_describe_source(s) for s in (train_src, dev_src) if s]

    def save_resume() -> None:
        if not d.main:
            return
        tensors = {f"model.{k}": v for k, v in raw_model.state_dict().items()}
        opt_tensors, opt_meta = optimizer_tensors(opt)
        tensors.update(opt_tensors)
        tensors.update(rng_tensors())
        if average:
            tensors.update(average.tensors())
        meta = {
            "task": task,
            "kind": "resume",
            "recipe": recipe.to_dict(),
            "labels": labels,
            "optimizer": opt_meta,
            "rng_python": list(random.getstate()[1]),
            "loop": {
                "step": step, "epoch": epoch, "pos": pos, "best": best, "bad_evals": bad_evals,
                "elapsed": elapsed(), "best_metrics": best_metrics,
                "ema_updates": average.updates if average else 0,
            },
        }
        ckpt.save(resume_file, tensors, meta, tok.model_proto)

    def save_best(metrics: dict | None) -> None:
        if not d.main:
            return
        meta = {
            "task": task,
            "recipe": recipe.to_dict(),
            "labels": labels,
            "metrics": metrics or {},
            "provenance": {
                "data": provenance_data,
                "steps": step,
                "epochs": round(step / steps_per_epoch, 3),
                "train_seconds": round(elapsed(), 1),
                "seed": tc.seed,
                "init_seed": tc.init_seed or tc.seed,
                "init_from": str(init_from) if init_from else None,
                "world_size": d.world,
                "device": device.type,
                "lstmtext": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        }
        ckpt.save(out, raw_model.state_dict(), meta, tok.model_proto)

    t_start = time.perf_counter()

    def elapsed() -> float:
        return elapsed_before + time.perf_counter() - t_start

    printed_header: list = []

    last_rate = [0.0]
    span = [0.0, 0, 0, 0.0]  # loss sum, steps, tokens, training seconds since the last evaluation

    def run_eval(lr: float, progress: TrainProgress) -> bool:
        """Evaluate, keep the checkpoint if it is the best so far; True when patience has run out."""
        nonlocal best, bad_evals, best_metrics
        train_loss = span[0] / span[1] if span[1] else float("nan")
        tok_per_s = span[2] / span[3] if span[3] else 0.0
        if span[1]:
            last_rate[0] = tok_per_s
        span[:] = [0.0, 0, 0, 0.0]
        with average.applied() if average else nullcontext():
            if dev_feats:
                metrics = mod.evaluate(raw_model, dev_feats, labels, device, tc.batch_tokens * 2, tok, selection=True)
                raw_model.train()
                value = metrics.get(main_metric)
            else:
                metrics, value = {}, None
            improved = not dev_feats or _better(value, best, higher)
            if improved:
                best, bad_evals = value, 0
                best_metrics = mod.summary(metrics) if dev_feats else None
                save_best(best_metrics)
            else:
                bad_evals += 1
        row = {
            "step": step, "epoch": round(step / steps_per_epoch, 3), "time": round(elapsed(), 1),
            "lr": lr, "train_loss": train_loss, "tokens_per_s": round(tok_per_s), "best": improved,
            **{f"dev_{k}": v for k, v in (mod.summary(metrics) if dev_feats else {}).items()},
        }
        if d.main:
            with open(log_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(row) + "\n")
            progress.print(_eval_line(row, header=not printed_header))
            printed_header.append(True)
        save_resume()
        return tc.patience > 0 and bad_evals >= tc.patience

    if d.main and not resume:
        log_file.unlink(missing_ok=True)
    model.train()
    progress = TrainProgress(total_steps, enabled=show_progress and d.main)
    stop_reason = "finished"
    window_loss, window_n, window_tokens, window_t = 0.0, 0, 0, time.perf_counter()
    loss_avg = float("nan")
    tok_rate = 0.0
    last_eval_step = step if resume else -1
    try:
        while epoch < tc.epochs and stop_reason == "finished":
            batches = epoch_batches(epoch)
            while pos < len(batches):
                idx = batches[pos]
                step_t0 = time.perf_counter()
                batch = to_device(mod.collate([train_feats[i] for i in idx]), device)
                progress_frac = step / total_steps
                if max_time:
                    progress_frac = max(progress_frac, elapsed() / max_time)
                lr = tc.lr * lr_factor(progress_frac, tc.warmup, tc.schedule)
                for g in opt.param_groups:
                    g["lr"] = lr * g["lr_scale"]
                loss, finite = train_step(model, opt, batch, autocast, scaler, tc.clip)
                if finite and average:
                    average.update()
                bad = 0 if finite else 1
                step += 1
                pos += 1
                timeout = 1 if max_time and elapsed() >= max_time else 0
                bad, timeout = all_flags([bad, timeout], d, device)
                if bad:
                    kept = f"the last good checkpoint {out} is kept" if out.exists() else "no checkpoint was written yet"
                    raise TrainingStopped(
                        f"loss became NaN or infinite at step {step}; training stopped and {kept}; "
                        f"try a lower learning rate (--set train.lr={tc.lr / 10:g}) or --set train.clip=1"
                    )
                window_loss += loss.item()
                window_n += 1
                n_tokens = int(batch["lengths"].sum()) * d.world
                window_tokens += n_tokens
                now = time.perf_counter()
                span[0] += loss.item()
                span[1] += 1
                span[2] += n_tokens
                span[3] += now - step_t0
                if now - window_t >= 2.0 or window_n >= 50:
                    loss_avg, tok_rate = window_loss / window_n, window_tokens / (now - window_t)
                    window_loss, window_n, window_tokens, window_t = 0.0, 0, 0, now
                remaining = (
                    max(0.0, max_time - elapsed()) if max_time and elapsed() / max_time > step / total_steps
                    else elapsed() / max(step, 1) * (total_steps - step)
                )
                progress.update(
                    step, progress_frac, f"epoch {epoch + 1}/{tc.epochs} loss {loss_avg:.3f} {tok_rate:,.0f} tok/s", remaining
                )
                if tc.eval_every and step % tc.eval_every == 0:
                    last_eval_step = step
                    if run_eval(lr, progress):
                        stop_reason = f"no improvement in {tc.patience} evaluations (early stopping)"
                        break
                if timeout:
                    stop_reason = f"time limit {tc.max_time} reached"
                    break
                if tc.max_steps and step >= tc.max_steps and step < total_steps:
                    stop_reason = "max_steps"
                    break
            else:
                epoch, pos = epoch + 1, 0
                if not tc.eval_every:
                    last_eval_step = step
                    if run_eval(lr, progress):
                        stop_reason = f"no improvement in {tc.patience} evaluations (early stopping)"
        if stop_reason == "max_steps":
            save_resume()
        elif last_eval_step != step:
            run_eval(lr, progress)
    except KeyboardInterrupt:
        progress.close()
        save_resume()
        raise Interrupted(
            f"interrupted at step {step}; resume state saved to {resume_file}; "
            f"continue with: lstmtext train {task} -o {out} --resume"
        ) from None
    finally:
        progress.close()
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    summary = {
        "task": task,
        "checkpoint": str(out),
        "stop": stop_reason,
        "steps": step,
        "train_seconds": round(elapsed(), 1),
        "best": best_metrics,
        "main_metric": main_metric,
        "tokens_per_s": round(last_rate[0]),
    }
    if d.main:
        if stop_reason == "max_steps":
            note(f"stopped after {step} steps (train.max_steps); continue with: lstmtext train {task} -o {out} --resume --set train.max_steps=0")
        else:
            note(f"{stop_reason} after {step} steps in {fmt_seconds(elapsed())}; best checkpoint: {out}")
    return summary


def _eval_line(row: dict, header: bool) -> str:
    """One fixed-width row per evaluation (the header before the first), readable in a log file too."""
    cols = ["step", "epoch", "train_loss"] + [k for k in row if k.startswith("dev_")] + ["tokens_per_s", "best"]
    cells, names = [], []
    for c in cols:
        v = row.get(c)
        if isinstance(v, bool):
            text = "*" if v else ""
        elif isinstance(v, float):
            text = f"{v:.4f}" if abs(v) < 1e4 else f"{v:,.1f}"
        else:
            text = f"{v:,}" if isinstance(v, int) else str(v)
        width = max(len(c), len(text), 6)
        names.append(c.rjust(width))
        cells.append(text.rjust(width))
    line = "  ".join(cells)
    return ("  ".join(names) + "\n" + line) if header else line


def _describe_source(src: str) -> dict:
    if is_hf(src):
        return {"source": src}
    p = Path(src)
    if p.is_file():
        return {"source": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size}
    return {"source": str(p)}
