"""The continuous cache of LM evaluation: its probabilities against brute force, the mixture by hand, the
wiring through evaluate and search, and the refusals (`lstmtext evaluate --set lm.cache_size=N`: test_lm.py)."""

from __future__ import annotations

import math

import pytest
import torch
from test_lm import tiny_predictor, tok  # noqa: F401 (tok: a fixture)

from lstmtext.config import build_recipe
from lstmtext.errors import UsageError
from lstmtext.tasks import lm
from lstmtext.tasks.lm_stream import Cache, CacheSettings, mixed_nll, search


def brute_force(history: list[tuple[torch.Tensor, int]], h: torch.Tensor, target: int, size: int, theta: float):
    """Σ over the last ``size`` (state, next piece) pairs before h of softmax(θ h·h_i), where the piece is the
    target; None when there is no pair yet."""
    window = history[-size:]
    if not window:
        return None
    w = torch.softmax(torch.stack([theta * (h @ k) for k, _ in window]), 0)
    return sum(w[i].item() for i, (_, label) in enumerate(window) if label == target)


@pytest.mark.parametrize("size", [1, 3, 7, 50])
def test_cache_probs_equal_brute_force_across_steps_and_shrinking_rows(size):
    """Three steps of a stream of 3 rows (the last row ends after the second step, as stream_rows deals
    them): each row's cache holds only its own past, the last ``size`` states, carried across steps."""
    g = torch.Generator().manual_seed(0)
    cache = Cache(size)
    history: list[list] = [[], [], []]
    settings = [(size, 0.7), (min(size, 2), 1.5)]
    for step, rows in enumerate([3, 3, 2]):
        states = torch.randn(rows, 5, 4, generator=g)
        targets = torch.randint(1, 4, (rows, 5), generator=g)  # a 3-piece vocabulary: many repeats
        p, seen = cache.probs(states, targets, settings)
        assert p.shape == (2, rows, 5)
        for r in range(rows):
            for t in range(5):
                for k, (s, theta) in enumerate(settings):
                    want = brute_force(history[r], states[r, t], int(targets[r, t]), s, theta)
                    assert bool(seen[t]) == (want is not None)
                    assert p[k, r, t].item() == pytest.approx(want or 0.0, abs=1e-6)
                history[r].append((states[r, t], int(targets[r, t])))
        assert cache.keys.shape[1] == min(size, 5 * (step + 1))


def test_cache_scores_in_fp32_under_bf16_autocast():
    """Evaluation in bf16 (--precision bf16, or auto on CUDA) must not round the dot products that θ scales."""
    g = torch.Generator().manual_seed(1)
    states = torch.randn(2, 40, 16, generator=g).bfloat16().float()  # exact in bf16: only the products could round
    targets = torch.randint(1, 5, (2, 40), generator=g)
    want, _ = Cache(30).probs(states, targets, [(30, 4.0)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = Cache(30).probs(states, targets, [(30, 4.0)])
    assert got.dtype == torch.float32 and torch.equal(got, want)


def test_mixed_nll_by_hand():
    log_p = torch.log(torch.tensor([[0.5, 0.5, 0.1]]))
    p_cache = torch.tensor([[0.2, 0.0, 0.9]])
    seen = torch.tensor([True, True, False])
    got = mixed_nll(log_p, p_cache, seen, 0.25)
    want = [-math.log(0.75 * 0.5 + 0.25 * 0.2), -math.log(0.75 * 0.5), -math.log(0.1)]  # unseen: the model alone
    assert got[0].tolist() == pytest.approx(want, rel=1e-6)
    assert mixed_nll(log_p, p_cache, seen, 0.0)[0].tolist() == pytest.approx((-log_p[0]).tolist())


def repetitive_features(tokenizer, chunk: int = 16):
    """Text in which a line recurs: what the cache is for. Chunks short enough that it spans several steps."""
    lines = ["the old town is by a river .", "quietly zebras juggle violet umbrellas", "a small river"] * 6
    recipe = build_recipe("lm", lm.Options, lm.DEFAULTS, overrides=[f"lm.eval_chunk_length={chunk}"])
    return lm.featurize([{"text": t, "split": "test"} for t in lines], tokenizer, [], recipe)


def test_evaluate_with_the_cache_matches_search_and_lowers_perplexity_on_recurring_text(tok):  # noqa: F811
    p = tiny_predictor(tok, layers=1, embed=16, hidden=24)
    feats = repetitive_features(tok)
    rows = 2 * max(f["length"] for f in feats)  # two stream rows: the cache of each is its own
    plain = lm.evaluate(p.model, feats, [], torch.device("cpu"), rows)
    p.model.cache = CacheSettings(40, 0.5, 0.3)
    cached = lm.evaluate(p.model, feats, [], torch.device("cpu"), rows)
    selecting = lm.evaluate(p.model, feats, [], torch.device("cpu"), rows, selection=True)
    assert selecting["nll"] == pytest.approx(plain["nll"], rel=1e-6)  # model selection never uses the cache
    assert cached["pieces"] == plain["pieces"] and cached["ppl_word"] < 0.8 * plain["ppl_word"]
    table = search(p.model, feats, torch.device("cpu"), rows, sizes=[10, 40], thetas=[0.5, 1.0], lams=[0.1, 0.3])
    assert len(table) == 1 + 2 * 2 * 2 and table == sorted(table, key=lambda r: r["ppl_word"])
    by = {(r["size"], r["theta"], r["lam"]): r["ppl_word"] for r in table}
    assert by[(0, 0.0, 0.0)] == pytest.approx(plain["ppl_word"], rel=1e-5)
    assert by[(40, 0.5, 0.3)] == pytest.approx(cached["ppl_word"], rel=1e-5)


@pytest.mark.parametrize(
    "item,fragment",
    [
        ("lm.cache_size=-1", "lm.cache_size"),
        ("lm.cache_lambda=1.0", "lm.cache_lambda"),
        ("lm.cache_theta=-0.5", "lm.cache_theta"),
        ("lm.cache_theta=nan", "lm.cache_theta"),
    ],
)
def test_cache_settings_out_of_range_are_refused(item, fragment):
    with pytest.raises(UsageError, match=fragment):
        build_recipe("lm", lm.Options, lm.DEFAULTS, overrides=[item])


def test_search_refuses_a_size_of_nothing(tok):  # noqa: F811
    p = tiny_predictor(tok, layers=1, embed=16, hidden=24)
    with pytest.raises(UsageError, match="at least 1 state"):
        search(p.model, repetitive_features(tok), torch.device("cpu"), 4096, sizes=[0, 10], thetas=[1.0], lams=[0.1])
