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


def _just_under_clip() -> list[torch.nn.Parameter]:
    """A norm below the clip by less than torch's 1e-6 guard: clip_grad_norm_ still scales it, slightly."""
    p = torch.nn.Parameter(torch.zeros(1))
    p.grad = torch.tensor([1.0 - 4e-7])
    return [p]


def _one_nan() -> list[torch.nn.Parameter]:
    params = _params_with_grads(1e-3)
    params[1].grad[0] = float("nan")  # the others stay finite: clip_grad_norm_ makes them NaN too
    return params


@pytest.mark.parametrize(
    "make",
    [lambda: _params_with_grads(10.0), lambda: _params_with_grads(1e-3), _just_under_clip, _one_nan],
    ids=["clipped", "within", "just-under", "one-nan"],
)
def test_clip_gradients_equals_clip_grad_norm(make):
    ours, theirs = make(), make()
    clip_gradients(ours, 1.0)
    torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=0, equal_nan=True)


def test_clip_gradients_scales_down_to_the_clip_and_leaves_small_norms_alone():
    big, small = _params_with_grads(10.0), _params_with_grads(1e-3)
    before = [p.grad.clone() for p in small]
    clip_gradients(big, 1.0)
    clip_gradients(small, 1.0)
    assert abs(torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in big])).item() - 1.0) < 1e-5
    assert all(torch.equal(p.grad, b) for p, b in zip(small, before))
