"""IMP round logic: exact remaining counts, nested masks, rewinding, baselines, KD loss."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import keep_count_reference
from trees import mlp_dict

import jaxprune
from jaxprune import lottery


def test_remaining_counts_follow_the_rates_exactly_and_masks_nest():
    params = mlp_dict(sizes=(40, 30, 20, 10))
    mask = jaxprune.dense_mask(params)
    expect = {f"layers_{i}/kernel": n for i, n in enumerate([1200, 600, 200])}
    rng = np.random.default_rng(0)
    prune = jax.jit(
        lambda p, m: lottery.prune_round(p, m, 0.2, overrides={"layers_2/": lottery.half_rate})
    )  # compiled once for all rounds
    for _ in range(8):
        # a different "trained" network every round
        trained = jax.tree.map(lambda p: p + jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        new = prune(trained, mask)
        for path in expect:
            rate = 0.1 if path.startswith("layers_2") else 0.2
            expect[path] = keep_count_reference(expect[path], rate)
        assert lottery.kept_counts(new) == expect
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(mask)):
            assert not np.any(np.asarray(a) & ~np.asarray(b))  # subset of the previous mask
        mask = new
    total = sum(expect.values()) / 2000
    assert abs(total - (1200 * 0.8**8 + 600 * 0.8**8 + 200 * 0.9**8) / 2000) < 2e-3


def test_rounds_prune_every_leaf_the_mask_prunes_biases_too():
    """A mask that prunes biases (dense_mask with a prunable filter) gets them pruned at
    the same rate each round, never brought back dense."""
    params = mlp_dict(sizes=(40, 30, 20, 10))
    mask = jaxprune.dense_mask(params, prunable=["kernel$", "bias$"])
    expect = lottery.kept_counts(mask)
    assert "layers_0/bias" in expect
    for _ in range(3):
        new = lottery.prune_round(params, mask, 0.5)
        expect = {k: keep_count_reference(n, 0.5) for k, n in expect.items()}
        assert lottery.kept_counts(new) == expect
        for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(mask)):
            assert not np.any(np.asarray(a) & ~np.asarray(b))
        mask = new


def test_one_shot_prunes_the_leaves_its_filter_chooses_biases_too():
    params = mlp_dict(sizes=(40, 30, 20, 10))
    with_biases = ["kernel$", "bias$"]
    mask = lottery.one_shot(params, 0.5, prunable=with_biases)
    want = lottery.prune_round(params, jaxprune.dense_mask(params, prunable=with_biases), 0.5)
    chex.assert_trees_all_equal(mask, want)
    assert lottery.kept_counts(mask)["layers_0/bias"] == 15


def test_global_round_prunes_the_total_fraction():
    params = mlp_dict(sizes=(40, 30, 20, 10))
    mask = lottery.prune_round(params, jaxprune.dense_mask(params), 0.3, distribution="global")
    assert sum(lottery.kept_counts(mask).values()) == keep_count_reference(2000, 0.3)


def test_rewind_restores_exactly_the_saved_values_on_survivors():
    saved = mlp_dict(seed=1)
    mask = lottery.one_shot(mlp_dict(seed=2), 0.8)
    ticket = lottery.rewind(saved, mask)
    for s, t, m in zip(jax.tree.leaves(saved), jax.tree.leaves(ticket), jax.tree.leaves(mask)):
        s, t, m = np.asarray(s), np.asarray(t), np.asarray(m)
        np.testing.assert_array_equal(t[m] if m.ndim else t, s[m] if m.ndim else s)
        if m.ndim:
            assert (t[~m] == 0).all()


def test_baselines_keep_the_mask_or_the_counts():
    mask = lottery.one_shot(mlp_dict(seed=2), 0.8)
    fresh = mlp_dict(seed=5)
    reinit = lottery.random_reinit(fresh, mask)
    for a, b, m in zip(
        jax.tree.leaves(reinit), jax.tree.leaves(mlp_dict(seed=2)), jax.tree.leaves(mask)
    ):
        if m.ndim:
            assert ((np.asarray(a) != 0) == np.asarray(m)).all()  # same mask
            assert not np.allclose(np.asarray(a)[np.asarray(m)], np.asarray(b)[np.asarray(m)])
    rp = jaxprune.random_like(jax.random.key(0), mask)
    assert lottery.kept_counts(rp) == lottery.kept_counts(mask)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(rp), jax.tree.leaves(mask)))


def _kept_units(mask):
    """Per kernel: its kept output units, checking that each is kept whole."""
    out = {}
    for path, m in zip(lottery.kept_counts(mask), [x for x in jax.tree.leaves(mask) if x.ndim]):
        m = np.asarray(m)
        assert (m == m.any(axis=0)[None, :]).all(), path  # whole columns
        out[path] = m.any(axis=0)
    return out


def test_unit_rounds_prune_the_remaining_units_exactly_and_pruned_units_stay_pruned():
    params = mlp_dict(sizes=(40, 30, 20, 10))
    mask = jaxprune.dense_mask(params)
    expect = {"layers_0/kernel": 30, "layers_1/kernel": 20, "layers_2/kernel": 10}
    rng = np.random.default_rng(0)
    prune = jax.jit(
        lambda p, m: lottery.prune_round(
            p, m, 0.3, overrides={"layers_2/": lottery.half_rate}, granularity="unit"
        )
    )
    before = _kept_units(mask)
    for _ in range(3):
        trained = jax.tree.map(lambda p: p + jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
        mask = prune(lottery.rewind(trained, mask), mask)
        units = _kept_units(mask)
        for path in expect:
            expect[path] = keep_count_reference(expect[path], 0.15 if "2" in path else 0.3)
            assert units[path].sum() == expect[path], path
            assert not (units[path] & ~before[path]).any()  # a pruned unit stays pruned
        before = units
    assert expect == {"layers_0/kernel": 10, "layers_1/kernel": 7, "layers_2/kernel": 6}


def test_unit_baselines_keep_the_unit_counts_with_whole_units():
    params = mlp_dict(sizes=(40, 30, 20, 10))
    mask = lottery.one_shot(params, 0.5, granularity="unit")
    units = _kept_units(mask)
    assert {p: int(u.sum()) for p, u in units.items()} == {
        "layers_0/kernel": 15,
        "layers_1/kernel": 10,
        "layers_2/kernel": 5,
    }
    rp = jaxprune.random_like(jax.random.key(0), mask, granularity="unit")
    rp_units = _kept_units(rp)
    assert all(rp_units[p].sum() == units[p].sum() for p in units)
    assert any((rp_units[p] != units[p]).any() for p in units)
    other = jaxprune.random_like(jax.random.key(1), mask, granularity="unit")
    assert any((_kept_units(other)[p] != rp_units[p]).any() for p in units)
    shot = lottery.one_shot_like(params, rp, granularity="unit")
    chex.assert_trees_all_equal(shot, mask)  # the same counts: the one-shot mask itself
    total = lottery.one_shot_like(params, rp, distribution="global", granularity="unit")
    assert sum(int(u.sum()) for u in _kept_units(total).values()) == 30
    blocks = lottery.one_shot(params, 0.5, granularity=(2, 2))
    rb = jaxprune.random_like(jax.random.key(0), blocks, granularity=(2, 2))
    assert lottery.kept_counts(rb) == lottery.kept_counts(blocks)
    for m in (x for x in jax.tree.leaves(rb) if x.ndim):
        b = np.asarray(m).reshape(m.shape[0] // 2, 2, m.shape[1] // 2, 2)
        assert (b.all(axis=(1, 3)) == b.any(axis=(1, 3))).all()  # whole blocks
    with pytest.raises(ValueError, match="granularity must be"):
        jaxprune.random_like(jax.random.key(0), mask, granularity="row")


def test_rounds_and_remaining():
    assert [lottery.rounds_to_reach(x, 0.2) for x in (1.0, 0.8, 0.5, 0.036)] == [0, 1, 4, 15]
    with pytest.raises(ValueError):
        lottery.rounds_to_reach(0.0, 0.2)


def test_distillation_loss():
    s = jnp.array([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    t = jnp.array([[3.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    y = jnp.array([0, 1])
    ce = float(jnp.mean(-jax.nn.log_softmax(s)[jnp.arange(2), y]))
    assert float(lottery.distillation_loss(s, t, y, alpha=0.0)) == pytest.approx(ce, rel=1e-6)
    T = 2.0
    pt, ls = jax.nn.softmax(t / T), jax.nn.log_softmax(s / T)
    kl = float(jnp.mean(jnp.sum(pt * (jnp.log(pt) - ls), -1)))
    got = float(lottery.distillation_loss(s, t, y, temperature=T, alpha=0.5))
    assert got == pytest.approx(0.5 * T * T * kl + 0.5 * ce, rel=1e-5)
    g = jax.grad(lambda t: lottery.distillation_loss(s, t, y))(t)
    chex.assert_trees_all_equal(g, jnp.zeros_like(t))  # the teacher gets no gradient
