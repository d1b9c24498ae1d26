"""straight_through: a dense forward through the top-k, N:M and SR-STE's decay."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from loops import loss_fn, run
from trees import mlp_dict

import jaxprune


def test_straight_through_forward_is_topk_of_dense_weights():
    params = mlp_dict()
    tx = jaxprune.straight_through(optax.sgd(0.05, momentum=0.9), 0.75)
    state, (ps, masks, _) = run(tx, params, 30)
    final_state = tx.init(params)
    # replay to get the dense weights at the end
    p = params

    @jax.jit
    def step(p, s):
        u, s = tx.update(jax.grad(loss_fn)(p), s, p)
        return optax.apply_updates(p, u), s

    for _ in range(30):
        p, final_state = step(p, final_state)
    # The state holds the dense weights of the prunable parameters (an empty tuple for
    # the biases, which are their own dense weights): every leaf of the state an array.
    assert all(final_state.dense[k]["bias"] == () for k in params)
    assert all(hasattr(x, "shape") for x in jax.tree.leaves(final_state))
    dense = jax.tree.map(
        lambda d, q: q if isinstance(d, tuple) else d,
        final_state.dense,
        p,
        is_leaf=lambda x: isinstance(x, tuple) and not x,
    )
    top = jaxprune.topk_mask(jaxprune.scores.magnitude(dense), 0.75)
    chex.assert_trees_all_equal(final_state.mask, top)
    for k in params:
        m = np.asarray(top[k]["kernel"])
        q, d = np.asarray(p[k]["kernel"]), np.asarray(dense[k]["kernel"])
        assert (q[~m] == 0).all() and (d[~m] != 0).any()  # dense weights keep their values
        np.testing.assert_allclose(q[m], d[m], rtol=1e-6)
    assert not all(
        np.array_equal(np.asarray(masks[k]["kernel"][0]), np.asarray(masks[k]["kernel"][-1]))
        for k in params
    )


def test_straight_through_starts_sparse_as_its_docstring_says():
    """init keeps the dense weights; apply_mask(params, mask_of(state)) gives a sparse
    first forward pass whose step still updates the pruned dense values."""
    params = mlp_dict()
    tx = jaxprune.straight_through(optax.sgd(0.05), 0.75)
    state = tx.init(params)
    p = jaxprune.apply_mask(params, jaxprune.mask_of(state))
    grads = jax.grad(loss_fn)(p)
    u, state = tx.update(grads, state, p)
    for k in params:
        w, g = np.asarray(params[k]["kernel"]), np.asarray(grads[k]["kernel"])
        np.testing.assert_allclose(state.dense[k]["kernel"], w - 0.05 * g, rtol=1e-6)
        assert (np.asarray(p[k]["kernel"]) == 0).mean() == pytest.approx(0.75, abs=0.01)


def test_straight_through_accelerator_path_takes_the_same_steps(monkeypatch):
    """Off the CPU the mask's stand-ins are passed through instead of made anew;
    parameters, masks and optimizer states are the same (the selection method too
    changes with the backend: sort instead of radix, the same masks)."""
    params = mlp_dict()
    tx = jaxprune.straight_through(optax.sgd(0.05, momentum=0.9), 0.75)
    _, cpu = run(tx, params, 5)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    _, gpu = run(tx, params, 5)
    chex.assert_trees_all_equal(cpu, gpu)


def test_straight_through_pruned_decay_is_sr_stes_term():
    """SR-STE: the inner optimizer sees g + decay * (1 - m) * w, m the mask of the
    forward pass; kept weights and unprunable leaves see g alone."""
    params = {"w": jnp.array([[1.0, -2.0], [3.0, -4.0]]), "b": jnp.array([5.0, 6.0])}
    grads = {"w": jnp.array([[0.5, 0.5], [0.0, 0.0]]), "b": jnp.array([1.0, 1.0])}
    tx = jaxprune.straight_through(optax.sgd(0.1), 0.5, pruned_decay=2.0)
    state = tx.init(params)
    assert state.mask["w"].tolist() == [[False, False], [True, True]]
    p = optax.apply_updates(params, tx.update(grads, state, params)[0])
    dense = tx.update(grads, state, params)[1].dense
    # pruned: w - 0.1 * (g + 2 * w); kept: w - 0.1 * g; the bias: b - 0.1 * g
    np.testing.assert_allclose(dense["w"], [[0.75, -1.65], [3.0, -4.0]], rtol=1e-6)
    np.testing.assert_allclose(p["b"], [4.9, 5.9], rtol=1e-6)
    plain = jaxprune.straight_through(optax.sgd(0.1), 0.5)
    np.testing.assert_allclose(
        plain.update(grads, plain.init(params), params)[1].dense["w"], [[0.95, -2.05], [3.0, -4.0]]
    )


def test_straight_through_takes_injected_sparsity_and_decay_under_jit():
    """optax.inject_hyperparams makes numeric arguments traced hyperparameters: the
    sparsity and the decay may then change between jitted steps."""
    params = {"w": jnp.array([[1.0, -2.0], [3.0, -4.0]]), "b": jnp.array([5.0, 6.0])}
    grads = {"w": jnp.array([[0.5, 0.5], [0.0, 0.0]]), "b": jnp.array([1.0, 1.0])}
    tx = optax.inject_hyperparams(jaxprune.straight_through)(optax.sgd(0.1), sparsity=0.5)
    state = tx.init(params)
    state.hyperparams["sparsity"] = jnp.asarray(0.75)
    state.hyperparams["pruned_decay"] = jnp.asarray(2.0)
    _, state = jax.jit(tx.update)(grads, state, params)
    inner = state.inner_state  # the decay on the init's mask (50%), then the top 25%
    np.testing.assert_allclose(inner.dense["w"], [[0.75, -1.65], [3.0, -4.0]], rtol=1e-6)
    assert inner.mask["w"].tolist() == [[False, False], [False, True]]


def test_straight_through_pruned_decay_shrinks_pruned_weights_and_flips():
    """Over training with Adam, the decay leaves the pruned dense weights smaller and
    the mask changing less often than plain straight-through."""
    params = mlp_dict()
    stats = {}
    for decay in (0.0, 1.0):
        tx = jaxprune.straight_through(optax.adam(1e-2), 0.9, pruned_decay=decay)

        def step(carry, _, tx=tx):
            p, s = carry
            u, s = tx.update(jax.grad(loss_fn)(p), s, p)
            return (optax.apply_updates(p, u), s), s.mask

        scan = jax.jit(lambda p, s, step=step: jax.lax.scan(step, (p, s), None, length=60))
        (_, state), masks = scan(params, tx.init(params))
        pruned = [
            float(jnp.abs(jnp.where(state.mask[k]["kernel"], 0.0, state.dense[k]["kernel"])).mean())
            for k in params
        ]
        flips = sum(int((m[1:] != m[:-1]).sum()) for m in jax.tree.leaves(masks))
        stats[decay] = (pruned, flips)
    (plain, plain_flips), (decayed, decayed_flips) = stats[0.0], stats[1.0]
    assert all(d < 0.5 * q for d, q in zip(decayed, plain)), (decayed, plain)
    assert decayed_flips < plain_flips, (decayed_flips, plain_flips)


def test_straight_through_n_m_keeps_n_of_every_m_inputs():
    """2:4 along the kernels' input axis at every step, the forward mask the N:M mask
    of the dense weights; biases dense; with SR-STE's decay too."""
    params = mlp_dict()
    for decay in (0.0, 2e-4):
        tx = jaxprune.straight_through(optax.adam(1e-2), n_m=(2, 4), pruned_decay=decay)
        _, (ps, masks, _) = run(tx, params, 20)
        for k in params:
            m, w = np.asarray(masks[k]["kernel"]), np.asarray(ps[k]["kernel"])
            steps, n_in, n_out = m.shape
            runs = m.reshape(steps, n_in // 4, 4, n_out).sum(axis=2)
            assert (runs == 2).all(), k
            assert (w[~m] == 0).all() and (w[m] != 0).all()
            assert masks[k]["bias"].shape[1:] == ()  # stand-in: dense
        assert any(
            not np.array_equal(
                np.asarray(masks[k]["kernel"][0]), np.asarray(masks[k]["kernel"][-1])
            )
            for k in params
        )
    state = tx.init(params)
    chex.assert_trees_all_equal(
        state.mask, jaxprune.nm_mask(jaxprune.scores.magnitude(params), 2, 4)
    )
    # (out, in) weights (Equinox's Linear): the runs along the last axis.
    transposed = jax.tree.map(lambda x: x.T, params)
    tx = jaxprune.straight_through(optax.sgd(0.1), n_m=(2, 4), axis=-1)
    chex.assert_trees_all_equal(
        tx.init(transposed).mask,
        jaxprune.nm_mask(jaxprune.scores.magnitude(transposed), 2, 4, axis=-1),
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(), "either a sparsity"),
        (dict(sparsity=0.5, n_m=(2, 4)), "either a sparsity"),
        (dict(n_m=(4, 2)), "0 <= n <= m"),
        (dict(n_m=(2,)), "pair"),
        (dict(n_m="2:4"), "pair"),
        (dict(n_m=(2, 4), distribution="erk"), "distribution and overrides"),
    ],
)
def test_straight_through_rejects_a_bad_target(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxprune.straight_through(optax.sgd(0.1), **kwargs)


def test_straight_through_n_m_names_a_layer_it_cannot_split():
    tx = jaxprune.straight_through(optax.sgd(0.1), n_m=(2, 4))
    with pytest.raises(ValueError, match="multiple of m=4.*head"):
        tx.init({"head": jnp.ones((10, 3)), "body": jnp.ones((8, 10))})


@pytest.mark.parametrize("bad", [-1e-4, float("nan"), float("inf"), True, "2e-4", None])
def test_straight_through_rejects_a_bad_pruned_decay(bad):
    with pytest.raises((TypeError, ValueError), match="pruned_decay must be"):
        jaxprune.straight_through(optax.sgd(0.1), 0.5, pruned_decay=bad)
