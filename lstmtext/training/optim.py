"""``train.sparse_embeddings``: embeddings that take row-sparse gradients, and the AdamW that steps them.

A dense embedding's gradient is a (V, E) tensor that is zero outside the rows a batch used, yet the backward
writes all of it, the clip reads all of it, and AdamW reads and writes the weights and both moments of every
row each step: for SST-2's 8,000 × 300 embedding that is most of the model's parameters and most of the step's
optimiser traffic. With ``nn.Embedding(sparse=True)`` the backward yields only the used rows, and
``DenseSparseAdamW`` updates only those rows, with their own moments: lazy Adam (TensorFlow's LazyAdam, PyTorch's
SparseAdam, AllenNLP's DenseSparseAdam). A row a batch does not use keeps its weights and moments until a batch
uses it, where dense AdamW keeps moving it on its momentum; so the option changes training, and a recipe
adopts it only after a comparison on dev data. Every dense gradient goes through AdamW's own (fused) step.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim.adamw import adamw

from lstmtext.errors import UsageError


def make_embeddings_sparse(model: nn.Module) -> list[nn.Embedding]:
    """Switch the model's embeddings to row-sparse gradients, all but those an output layer reuses as its
    weights (the LM's and the translator's tied decoders: a tied weight's gradient is dense anyway, and DDP
    would expect a sparse one). Refused where none is left."""
    tied = set()
    for module in model.modules():
        tied.update(id(e.weight) for e in getattr(module, "tied_embeddings", ()))  # heads/__init__.py
    switched = [m for m in model.modules() if isinstance(m, nn.Embedding) and id(m.weight) not in tied]
    if not switched:
        raise UsageError(
            "train.sparse_embeddings: every embedding of this model is tied to an output layer, whose gradient "
            "is dense; leave the option off for this task"
        )
    for m in switched:
        m.sparse = True
    return switched


class DenseSparseAdamW(torch.optim.AdamW):
    """AdamW whose parameters with a sparse gradient take lazy Adam's row update (the module docstring): the rows
    a batch used go through AdamW's own kernel, so their arithmetic is the dense step's, and a step in which a
    batch uses every row equals AdamW's. The state (``step``, ``exp_avg``, ``exp_avg_sq``) has AdamW's keys, so
    the resume file and ``state_dict`` are unchanged. A GradScaler's ``found_inf`` and ``grad_scale`` (fp16 on
    CUDA) reach the rows' kernel as they reach the dense one, so an overflow skips both. AdamW's step hooks, were
    any registered, would run around its dense part only."""

    def __init__(self, params, **kwargs) -> None:
        super().__init__(params, **kwargs)
        if any(g["amsgrad"] or g["maximize"] for g in self.param_groups):
            raise ValueError("DenseSparseAdamW: amsgrad and maximize have no sparse form here")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        groups = self.param_groups
        sparse = [(p, p.grad, g) for g in groups for p in g["params"] if p.grad is not None and p.grad.is_sparse]
        for p, _, _ in sparse:  # AdamW's own step skips a parameter without a gradient
            p.grad = None
        try:
            super().step()
        finally:
            for p, grad, _ in sparse:
                p.grad = grad
        found_inf, scale = getattr(self, "found_inf", None), getattr(self, "grad_scale", None)  # a GradScaler's
        for p, grad, group in sparse:
            self._sparse_step(p, grad, group, found_inf, scale)
        return loss

    def _sparse_step(self, p: torch.Tensor, grad: torch.Tensor, group: dict, found_inf, scale) -> None:
        """The rows a batch used, gathered into their own tensors, stepped by AdamW's functional form with the
        group's own kernel (so each row's arithmetic is the dense step's), and written back."""
        grad = grad.coalesce()  # one entry per row: the sum of that row's gradients
        rows, g = grad.indices()[0], grad.values()  # (R,), (R, E)
        state = self.state[p]
        if not state:  # where AdamW keeps it: on the parameter's device for the fused kernel, else on the CPU
            on = p.device if group["fused"] or group["capturable"] else torch.device("cpu")
            state["step"] = torch.zeros((), dtype=torch.float32, device=on)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        # (R, E) copies; index_select copies whole rows, where p[rows] indexes element by element
        w, m, v = (t.index_select(0, rows) for t in (p, state["exp_avg"], state["exp_avg_sq"]))
        adamw(
            [w], [g], [m], [v], [], [state["step"]],  # the step count moves (or not, on an overflow) in here
            foreach=group["foreach"], capturable=group["capturable"], differentiable=False, fused=group["fused"],
            grad_scale=scale, found_inf=found_inf, amsgrad=False, beta1=group["betas"][0], beta2=group["betas"][1],
            lr=group["lr"], weight_decay=group["weight_decay"], eps=group["eps"], maximize=False,
        )  # fmt: skip
        p.index_copy_(0, rows, w)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
