"""train.sparse_embeddings: row-sparse embedding gradients and DenseSparseAdamW's lazy row update, against
torch's AdamW where every row is used, against a per-row brute force where some are not, and through the CLI."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from lstmtext.errors import UsageError
from lstmtext.training.loop import clip_gradients
from lstmtext.training.optim import DenseSparseAdamW, make_embeddings_sparse


def _pair(weight_decay: float, eps: float = 1e-3):  # an eps this large tells where it is added
    torch.manual_seed(0)
    embed, out = torch.nn.Embedding(6, 3, sparse=True), torch.nn.Linear(3, 2)
    dense_embed, dense_out = copy.deepcopy(embed), copy.deepcopy(out)
    dense_embed.sparse = False

    def groups(e, o):
        return [{"params": [e.weight], "weight_decay": weight_decay}, {"params": list(o.parameters())}]

    ours = DenseSparseAdamW(groups(embed, out), lr=0.05, eps=eps, fused=True)
    theirs = torch.optim.AdamW(groups(dense_embed, dense_out), lr=0.05, eps=eps, fused=True)
    return (embed, out, ours), (dense_embed, dense_out, theirs)


def _step(embed, out, opt, ids, clip=0.0):
    opt.zero_grad(set_to_none=True)
    (out(embed(ids)) ** 2).sum().backward()
    if clip:
        clip_gradients([embed.weight, *out.parameters()], clip)
    opt.step()


@pytest.mark.parametrize("clip", [0.0, 0.3], ids=["no-clip", "clipped"])
def test_dense_sparse_adamw_equals_adamw_when_every_row_is_used(clip):
    """Each batch uses every row (some twice): the lazy update is AdamW's, bit for bit, weight decay and clipping
    included."""
    ours, theirs = _pair(weight_decay=0.1)
    ids = torch.tensor([[0, 1, 2, 3, 4, 5, 5, 2], [3, 3, 1, 0, 2, 4, 5, 1]])
    for _ in range(4):
        _step(*ours, ids, clip)
        _step(*theirs, ids, clip)
        assert ours[0].weight.grad.is_sparse and not theirs[0].weight.grad.is_sparse
    # the rows go through AdamW's own fused kernel: bitwise the dense step
    assert torch.equal(ours[0].weight, theirs[0].weight) and torch.equal(ours[1].weight, theirs[1].weight)
    assert ours[2].state_dict()["state"][0]["step"].item() == 4.0
    assert set(ours[2].state[ours[0].weight]) == {"step", "exp_avg", "exp_avg_sq"}  # AdamW's keys: resume as is


def test_dense_sparse_adamw_moves_only_the_rows_a_batch_uses_by_their_own_moments():
    """Known answer, per row and per number: step 1 uses rows 0 and 1, step 2 rows 1 and 2. Row 0 keeps its weights
    and moments through step 2 (dense AdamW would move it on its momentum); row 2 starts its moments at step 2
    with step 2's bias correction; rows 3-5 never move."""
    (embed, out, opt), _ = _pair(weight_decay=0.0)
    out.requires_grad_(False)  # fixed readout: each row's gradient is known in closed form
    lr, b1, b2, eps = 0.05, 0.9, 0.999, 1e-3
    w = embed.weight.detach().clone().double()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    for t, rows in enumerate(([0, 1], [1, 2]), start=1):
        ids = torch.tensor([rows])
        y = out(embed(ids))  # loss = sum(y²): dL/de_r = 2 · Wᵀ (W e_r + b)
        grads = {r: 2 * out.weight.double().T @ (out.weight.double() @ w[r] + out.bias.double()) for r in rows}
        opt.zero_grad(set_to_none=True)
        (y**2).sum().backward()
        opt.step()
        for r, g in grads.items():  # the brute force, one row at a time
            m[r] = b1 * m[r] + (1 - b1) * g
            v[r] = b2 * v[r] + (1 - b2) * g * g
            w[r] -= lr * (m[r] / (1 - b1**t)) / ((v[r] / (1 - b2**t)).sqrt() + eps)
        if t == 1:
            after_first = embed.weight.detach().clone()
    torch.testing.assert_close(embed.weight.detach().double(), w, rtol=0, atol=1e-6)
    torch.testing.assert_close(opt.state[embed.weight]["exp_avg"].double(), m, rtol=0, atol=1e-7)
    torch.testing.assert_close(opt.state[embed.weight]["exp_avg_sq"].double(), v, rtol=0, atol=1e-9)
    assert torch.equal(embed.weight[0], after_first[0])  # unused at step 2: untouched, moments and all
    assert not torch.equal(embed.weight[2], after_first[2])
    assert math.isclose(opt.state[embed.weight]["step"].item(), 2.0)


def test_dense_sparse_adamw_skips_the_rows_on_a_scaler_overflow():
    """A GradScaler that found inf tells the optimizer through ``found_inf``: the fused kernel skips its update,
    and the rows skip theirs too (a NaN gradient would otherwise poison them and their moments for good)."""
    (embed, out, opt), _ = _pair(weight_decay=0.0)
    _step(embed, out, opt, torch.tensor([[0, 1]]))
    before = {k: v.clone() for k, v in opt.state[embed.weight].items()}
    weights = embed.weight.detach().clone()
    opt.zero_grad(set_to_none=True)
    (out(embed(torch.tensor([[0, 1]]))) * float("inf")).sum().backward()
    opt.found_inf = torch.ones(())
    opt.step()
    del opt.found_inf
    assert torch.equal(embed.weight, weights)
    assert all(torch.equal(opt.state[embed.weight][k], v) for k, v in before.items())


def test_clip_gradients_counts_a_sparse_gradient_by_its_summed_rows():
    """An uncoalesced sparse gradient (row 1 twice) is clipped as its dense form would be by clip_grad_norm_."""
    torch.manual_seed(0)
    embed = torch.nn.Embedding(4, 2, sparse=True)
    lin = torch.nn.Linear(2, 1)
    (lin(embed(torch.tensor([1, 1, 3]))) * 5).sum().backward()
    assert not embed.weight.grad.is_coalesced()
    dense = [torch.nn.Parameter(embed.weight.detach().clone()), torch.nn.Parameter(lin.weight.detach().clone())]
    dense[0].grad, dense[1].grad = embed.weight.grad.to_dense(), lin.weight.grad.clone()
    clip_gradients([embed.weight, lin.weight], 0.5)
    torch.nn.utils.clip_grad_norm_(dense, 0.5)
    torch.testing.assert_close(embed.weight.grad.to_dense(), dense[0].grad, rtol=0, atol=1e-7)
    torch.testing.assert_close(lin.weight.grad, dense[1].grad, rtol=0, atol=1e-7)
    assert abs(math.hypot(embed.weight.grad.to_dense().norm(), lin.weight.grad.norm()) - 0.5) < 1e-5


def test_make_embeddings_sparse_switches_all_but_tied_embeddings():
    from lstmtext.config import resolve_recipe
    from lstmtext.tasks import get_task

    small = ["encoder.embed_dim=8", "encoder.hidden_dim=8"]
    sentiment = get_task("sentiment").build_model(resolve_recipe("sentiment", None, small), 30, ["a", "b"])
    assert make_embeddings_sparse(sentiment) == [sentiment.encoder.embed]
    assert sentiment.encoder.embed.sparse
    lm = get_task("lm").build_model(resolve_recipe("lm", None, small), 30, [])
    with pytest.raises(UsageError, match="train.sparse_embeddings: every embedding .* tied"):
        make_embeddings_sparse(lm)
    assert not lm.encoder.embed.sparse
    # NER's auxiliary LM ties the encoder's embedding: only the character embedding beside it switches
    ner_recipe = resolve_recipe("ner", None, [*small, "ner.lm_weight=0.5", "ner.char_dim=4"])
    ner = get_task("ner").build_model(ner_recipe, 30, ["O", "B-PER", "I-PER"])
    assert make_embeddings_sparse(ner) == [ner.head.char_embed]
    assert not ner.encoder.embed.sparse


def test_cli_refuses_sparse_embeddings_for_a_tied_lm(tmp_path):
    """The LM's only embedding is its output layer too: the option would do nothing, so it is refused."""
    from conftest import TINY, assert_usage_error, run_cli

    out = tmp_path / "lm.ckpt"
    proc = run_cli("train", "lm", "-o", out, "--epochs", "1", "-q", *TINY, "--set", "train.sparse_embeddings=true")
    assert_usage_error(proc, "train.sparse_embeddings: every embedding of this model is tied", only_line=False)
    assert not out.exists()
