"""The model, optimizer, weight average and precision of a run."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from lstmtext.device import autocast_for, resolve_precision
from lstmtext.errors import UsageError
from lstmtext.training.distributed import Dist
from lstmtext.training.optim import DenseSparseAdamW, make_embeddings_sparse
from lstmtext.training.precision import fastest as pick_fastest
from lstmtext.transfer import check_fits, copy_encoder


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
        torch._foreach_lerp_(self.shadow, self.params, 1 - decay)

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


def make_optimizer(model, tc, device: torch.device) -> torch.optim.Optimizer:
    """AdamW over ``param_groups``. The fused kernel updates every tensor in one pass on CPU and CUDA (where
    torch has it); the foreach path, which reads and writes each state tensor several times, serves the rest."""
    fused = device.type in ("cpu", "cuda")
    groups = param_groups(model, tc.weight_decay, tc.encoder_lr_scale)
    sparse = any(isinstance(m, torch.nn.Embedding) and m.sparse for m in model.modules())
    kind = DenseSparseAdamW if sparse else torch.optim.AdamW  # train.sparse_embeddings: training/optim.py
    return kind(groups, lr=tc.lr, fused=fused, foreach=None if fused else True)


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


@dataclass
class Built:
    """What the loop trains: ``model`` is the DDP wrapper under torchrun, ``raw_model`` the task's model."""

    recipe: Any
    tok: Any
    labels: list[str]
    device: torch.device
    model: torch.nn.Module
    raw_model: torch.nn.Module
    opt: torch.optim.Optimizer
    autocast: Any
    scaler: Any
    average: WeightAverage | None
    precision: str  # what train.precision resolved to on this device ("auto", "fastest" → bf16 or fp32)


def build(
    mod, recipe, tok, labels, device: torch.device, d: Dist, init=None, weights=None, precision=None, first=None
) -> Built:
    """The model and its optimizer. ``init`` = (path, meta, tensors) of --init-from; ``weights``: a resumed
    run's model, loaded before DDP spreads rank 0's weights; ``precision``: the one a resumed run trained in;
    ``first``: the run's first batch, on which train.precision "fastest" times the model."""
    tc = recipe.train
    # Before anything is allocated, the recipe a file claims must match the weights it holds.
    if init:
        check_fits(mod, recipe, len(tok), labels, init[2], init[0], init[1])
    if weights is not None:
        from lstmtext.api import check_weights_fit, model_shapes

        check_weights_fit("--resume state", model_shapes(mod, recipe, len(tok), labels), weights)
    model = build_model_seeded(mod, recipe, len(tok), labels)
    if tc.sparse_embeddings:  # before DDP, which asks each module whether its gradient is sparse
        if d.world > 1 and device.type == "cuda":
            raise UsageError(
                "train.sparse_embeddings: NCCL cannot sum sparse gradients; leave it off under torchrun on CUDA"
            )
        make_embeddings_sparse(model)
    if init:
        path, meta, tensors = init
        copy_encoder(model, tensors, path, meta, task=recipe.task)
    if weights is not None:
        model.load_state_dict(weights)
    model.to(device)
    raw_model = model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = make_optimizer(raw_model, tc, device)
    if precision is None:
        fastest = tc.precision == "fastest"
        precision = pick_fastest(raw_model, first, device, d) if fastest else resolve_precision(device, tc.precision)
    autocast, scaler = autocast_for(device, precision)
    average = WeightAverage(raw_model, tc.ema) if tc.ema else None
    return Built(recipe, tok, labels, device, model, raw_model, opt, autocast, scaler, average, precision)
