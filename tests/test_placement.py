"""Sharded parameters over 8 host devices: masks keep the sharding, selection stays exact."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from trees import mlp_apply, mlp_dict

import jaxprune

KINDS = ("Explicit", "Auto")


def mesh(kind):
    if len(jax.devices()) < 8:
        pytest.skip("needs 8 devices: XLA_FLAGS=--xla_force_host_platform_device_count=8")
    return jax.make_mesh((8,), ("model",), axis_types=(getattr(AxisType, kind),))


def shard(tree, mesh):
    spec = lambda x: P(None, "model") if x.ndim == 2 else P("model") if x.ndim else P()
    return jax.tree.map(lambda x: jax.device_put(x, NamedSharding(mesh, spec(x))), tree)


def assert_sharded_like(mask, params):
    for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask)):
        if m.ndim:
            assert m.sharding.is_equivalent_to(p.sharding, m.ndim), (m.sharding, p.sharding)


# Every pair of method, distribution and kind of sharding in the default run (6 of the
# 12 combinations); the rest with -m slow.
PAIRWISE = {
    ("radix", "uniform", "Explicit"),
    ("radix", "global", "Auto"),
    ("radix", "erk", "Auto"),
    ("sort", "uniform", "Auto"),
    ("sort", "global", "Explicit"),
    ("sort", "erk", "Explicit"),
}


@pytest.mark.parametrize(
    "method, distribution, kind",
    [
        pytest.param(*c, marks=() if c in PAIRWISE else pytest.mark.slow)
        for c in itertools.product(("radix", "sort"), ("uniform", "global", "erk"), KINDS)
    ],
)
def test_sharded_selection_equals_single_device(method, distribution, kind):
    params = mlp_dict(sizes=(32, 64, 32, 16), seed=3)
    sharded = shard(params, mesh(kind))
    make = lambda p: jaxprune.topk_mask(
        jaxprune.scores.magnitude(p), 0.9, distribution, method=method
    )
    single = make(params)
    for multi in (make(sharded), jax.jit(make)(sharded)):
        chex.assert_trees_all_equal(jax.device_get(single), jax.device_get(multi))
        assert_sharded_like(multi, sharded)


@pytest.mark.parametrize("kind", ["Explicit", "Auto"])
def test_sharded_within_nm_and_pack(kind):
    m = mesh(kind)
    params = mlp_dict(sizes=(32, 64, 32, 16), seed=3)
    sharded = shard(params, m)
    scores = jaxprune.scores.magnitude(sharded)
    first = jaxprune.topk_mask(scores, 0.5)
    second = jaxprune.topk_mask(scores, 0.5, within=first)
    chex.assert_trees_all_equal(
        jax.device_get(second),
        jax.device_get(jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.75)),
    )
    assert_sharded_like(second, sharded)
    nm = jaxprune.nm_mask(scores, 2, 4)
    chex.assert_trees_all_equal(
        jax.device_get(nm),
        jax.device_get(jaxprune.nm_mask(jaxprune.scores.magnitude(params), 2, 4)),
    )
    assert_sharded_like(nm, sharded)
    back = jaxprune.unpack_mask(jaxprune.pack_mask(second), sharded)
    chex.assert_trees_all_equal(jax.device_get(back), jax.device_get(second))
    assert_sharded_like(back, sharded)
    pruned = jaxprune.apply_mask(
        sharded, jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.5)
    )
    assert_sharded_like(pruned, sharded)


@pytest.mark.parametrize("kind", KINDS)
def test_nm_random_and_loaded_masks_are_placed_like_their_parameters(kind):
    m = mesh(kind)
    params = mlp_dict(sizes=(32, 64, 32, 16), seed=3)
    spec = lambda x: P("model", None) if x.ndim == 2 else P()
    rows = jax.tree.map(lambda x: jax.device_put(x, NamedSharding(m, spec(x))), params)
    nm = jaxprune.nm_mask(jaxprune.scores.magnitude(rows), 1, 8)  # blocks straddle devices
    want = jaxprune.nm_mask(jaxprune.scores.magnitude(params), 1, 8)
    chex.assert_trees_all_equal(jax.device_get(nm), jax.device_get(want))
    assert_sharded_like(nm, rows)
    assert_sharded_like(jaxprune.random_like(jax.random.key(0), nm), rows)
    loaded = jax.tree.map(np.asarray, nm)  # as train.load_mask gives it
    assert_sharded_like(jaxprune.mask_of(jaxprune.masked(optax.sgd(0.1), loaded).init(rows)), rows)


def test_count_selects_under_a_vmap_over_an_explicitly_sharded_axis():
    """One member per device on an Explicit mesh: the documented way (method="count")
    gives every member its own mask, as if selected alone."""
    m = mesh("Explicit")
    host = np.asarray(jax.random.normal(jax.random.key(2), (8, 16, 24)))
    members = jax.device_put({"w": host}, NamedSharding(m, P("model", None, None)))
    select = lambda q: jaxprune.topk_mask(q, 0.5, method="count")  # noqa: E731
    got = np.asarray(jax.device_get(jax.jit(jax.vmap(select))(members)["w"]))
    for i in range(8):
        want = jaxprune.topk_mask({"w": jnp.asarray(host[i])}, 0.5, method="radix")["w"]
        np.testing.assert_array_equal(got[i], np.asarray(want))


def test_sharded_masked_training_equals_single_device():
    params = mlp_dict(sizes=(32, 64, 32, 16), seed=3)
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.8, "global")
    params = jaxprune.apply_mask(params, mask)
    tx = jaxprune.masked(optax.sgd(0.05, momentum=0.9), mask)
    x = jax.random.normal(jax.random.key(0), (64, 32))
    y = jnp.arange(64) % 16

    @jax.jit
    def run(params, state):
        def step(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(
                lambda p: optax.softmax_cross_entropy_with_integer_labels(mlp_apply(p, x), y).mean()
            )(p)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss

        return jax.lax.scan(step, (params, state), None, length=20)

    (p1, _), l1 = run(params, tx.init(params))
    sharded = shard(params, mesh("Auto"))
    state = tx.init(sharded)  # puts the (single-device) mask on the parameters' sharding
    assert_sharded_like(jaxprune.mask_of(state), sharded)
    (p8, s8), l8 = run(sharded, state)
    np.testing.assert_allclose(l1, l8, rtol=1e-5)
    chex.assert_trees_all_close(jax.device_get(p1), jax.device_get(p8), rtol=1e-4, atol=1e-6)
    assert_sharded_like(jaxprune.mask_of(s8), p8)
    for p, m in zip(jax.tree.leaves(p8), jax.tree.leaves(jaxprune.mask_of(s8))):
        if m.ndim:
            assert (np.asarray(p)[~np.asarray(m)] == 0).all()


def test_explicit_sharded_masked_updates():
    params = mlp_dict(sizes=(32, 64, 32, 16), seed=3)
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.8)
    sharded = shard(params, mesh("Explicit"))
    tx = jaxprune.masked(optax.adam(0.1), mask)
    state = tx.init(sharded)
    assert_sharded_like(jaxprune.mask_of(state), sharded)
    target = jax.tree.map(lambda p: p + 1.0, sharded)

    @jax.jit
    def step(p, s):
        g = jax.grad(
            lambda p: sum(
                jnp.sum((a - b) ** 2) for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(target))
            )
        )(p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    p, s = step(sharded, state)
    p, s = step(p, s)
    assert_sharded_like(p, sharded)
    for q, m in zip(jax.tree.leaves(p), jax.tree.leaves(mask)):
        if m.ndim:
            assert (np.asarray(q)[~np.asarray(m)] == 0).all()
