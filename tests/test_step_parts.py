"""The training step's hot parts, rewritten for speed, against the plain forms they replace: sentiment's
pooling against a per-example loop, the loop's clipping against torch's clip_grad_norm_, dropout's 16-bit
masks against the distribution F.dropout draws from."""

from __future__ import annotations

import pytest
import torch

from lstmtext.config import build_recipe
from lstmtext.dropout import LEVELS, Dropout, drop_count, dropout
from lstmtext.heads.classify import ClassifyHead
from lstmtext.tasks import TASKS, get_task
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


# -- dropout -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("p", [0.1, 0.25, 0.5, 0.8])
def test_dropout_drops_at_its_rate_and_scales_to_keep_the_expectation(p):
    torch.manual_seed(0)
    n = 1 << 20
    out = dropout(torch.ones(n), p)
    k = drop_count(p)
    assert abs(k / LEVELS - p) <= 0.5 / LEVELS
    dropped = (out == 0).double().mean().item()
    assert abs(dropped - k / LEVELS) < 5 * (p * (1 - p) / n) ** 0.5  # five standard deviations of a binomial
    kept = out[out != 0]
    assert torch.equal(kept, torch.full_like(kept, LEVELS / (LEVELS - k)))  # E[out] = 1 exactly


def test_dropout_at_a_quarter_keeps_with_scale_four_thirds():
    assert drop_count(0.25) == 16384
    torch.manual_seed(1)
    out = dropout(torch.ones(64), 0.25)
    assert set(out.tolist()) == {0.0, torch.tensor(4 / 3).item()}


def test_dropout_draws_each_position_alone():
    """Every position, whichever quarter of its 64-bit draw it reads, keeps half the time at p = 0.5, and
    neighbours keep together a quarter of the time: a draw that left a quarter's bits biased (the top one of
    a non-negative int64) or shared bits between neighbours fails."""
    torch.manual_seed(2)
    draws = 4000
    keep = torch.stack([dropout(torch.ones(16), 0.5) != 0 for _ in range(draws)]).double()  # (draws, 16)
    assert (keep.mean(0) - 0.5).abs().max() < 5 * (0.25 / draws) ** 0.5
    both = (keep[:, :-1] * keep[:, 1:]).mean(0)  # (15,)
    assert (both - 0.25).abs().max() < 5 * (0.25 * 0.75 / draws) ** 0.5


def test_dropout_gradient_passes_where_the_forward_kept_and_nowhere_else():
    torch.manual_seed(3)
    x = (torch.rand(5, 7, 3) + 0.5).requires_grad_(True)  # no zeros of its own
    out = dropout(x, 0.3)
    weights = torch.randn(out.shape)
    (out * weights).sum().backward()
    scale = LEVELS / (LEVELS - drop_count(0.3))
    kept = out != 0
    assert 0 < kept.sum() < kept.numel()
    torch.testing.assert_close(out, torch.where(kept, x.detach() * scale, 0.0), rtol=0, atol=0)
    torch.testing.assert_close(x.grad, torch.where(kept, weights * scale, 0.0), rtol=0, atol=0)


def test_dropout_repeats_under_a_seed_keeps_its_dtype_and_is_the_identity_off_training():
    x = torch.randn(3, 11)  # 33 elements: the last 64-bit draw is used in part
    torch.manual_seed(4)
    first = dropout(x, 0.4)
    torch.manual_seed(4)
    assert torch.equal(first, dropout(x, 0.4))
    assert dropout(x, 0.4, training=False) is x and dropout(x, 0.0) is x
    assert dropout(x.bfloat16(), 0.4).dtype == torch.bfloat16
    assert torch.equal(dropout(x, 1.0), torch.zeros_like(x))
    module = Dropout(0.4)
    assert isinstance(module, torch.nn.Dropout) and repr(module) == repr(torch.nn.Dropout(0.4))
    assert module.eval()(x) is x
    torch.manual_seed(4)
    assert torch.equal(module.train()(x), first)


@pytest.mark.parametrize("task", sorted(TASKS))
def test_every_dropout_in_every_tasks_model_draws_16_bit_masks(task):
    """A plain nn.Dropout in a model would draw its mask with bernoulli_, several times as slow on CPU."""
    mod = get_task(task)
    recipe = build_recipe(task, mod.Options, mod.DEFAULTS)
    labels = {"sentiment": ["neg", "pos"], "ner": ["O", "B-PER", "I-PER"]}.get(task, [])
    model = mod.build_model(recipe, 100, labels)
    drops = [m for m in model.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops and all(type(m) is Dropout for m in drops)
