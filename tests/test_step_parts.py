"""The training step's hot parts, rewritten for speed, against the plain forms they replace: sentiment's
pooling against a per-example loop, the loop's clipping against torch's clip_grad_norm_."""

from __future__ import annotations

import pytest
import torch

from lstmtext.heads.classify import ClassifyHead
from lstmtext.training.loop import clip_gradients


def _brute_pool(states: torch.Tensor, lengths: torch.Tensor, pooling: str) -> torch.Tensor:
    rows = []
    for b, n in enumerate(lengths.tolist()):
        real = states[b, :n]  # (n, D)
        parts = {"max": [real.max(dim=0).values], "mean": [real.mean(dim=0)]}
        parts["maxmean"] = parts["max"] + parts["mean"]
        rows.append(torch.cat(parts[pooling]))
    return torch.stack(rows)


@pytest.mark.parametrize("pooling", ["maxmean", "max", "mean"])
def test_pooling_reads_only_real_tokens_in_value_and_gradient(pooling):
    torch.manual_seed(0)
    B, T, D = 5, 7, 4
    lengths = torch.tensor([7, 1, 3, 6, 2])
    states = torch.randn(B, T, D, dtype=torch.float64)
    for b, n in enumerate(lengths.tolist()):
        states[b, n:] = 1e6  # padding larger than any real state: a max that read it would return it
    head = ClassifyHead(D, 2, pooling=pooling).double()
    ours = states.clone().requires_grad_(True)
    plain = states.clone().requires_grad_(True)
    got, want = head.pool(ours, lengths), _brute_pool(plain, lengths, pooling)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    weights = torch.randn_like(want)
    (got * weights).sum().backward()
    (want * weights).sum().backward()
    torch.testing.assert_close(ours.grad, plain.grad, rtol=0, atol=1e-12)
    for b, n in enumerate(lengths.tolist()):
        assert ours.grad[b, n:].abs().sum() == 0  # no gradient reaches padding


def _params_with_grads(scale: float) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(1)
    params = [torch.nn.Parameter(torch.zeros(s)) for s in ((30, 4), (4,), (5, 5))]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * scale
    return params


@pytest.mark.parametrize("scale", [10.0, 1e-3, float("nan")], ids=["clipped", "within", "nan"])
def test_clip_gradients_equals_clip_grad_norm(scale):
    ours, theirs = _params_with_grads(scale), _params_with_grads(scale)
    clip_gradients(ours, 1.0)
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    for a, b in zip(ours, theirs):
        assert torch.equal(a.grad, b.grad) or (a.grad.isnan().all() and b.grad.isnan().all())
    total = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in ours]))
    if scale == 10.0:
        assert abs(total.item() - 1.0) < 1e-5  # brought down to the clip
    elif scale == 1e-3:
        assert total.item() < 0.1  # left as it was
