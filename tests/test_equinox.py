"""A real Equinox model trained under jaxprune's transforms (``eqx.partition`` of its arrays)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune

SPARSITY = 0.8


def model_and_data():
    """An ``eqx.nn.MLP`` (weights ``(out, in)``: 60x10, 60x60, 5x60, each a multiple of 5
    entries, so that 80% of every layer is a whole number) and a batch it can fit."""
    mkey, xkey, tkey = jax.random.split(jax.random.key(0), 3)
    model = eqx.nn.MLP(10, 5, width_size=60, depth=2, key=mkey)
    x = jax.random.normal(xkey, (128, 10))
    y = jnp.tanh(x @ jax.random.normal(tkey, (10, 5)))
    return model, x, y


def loss_fn(params, static, x, y):
    model = eqx.combine(params, static)
    return jnp.mean((jax.vmap(model)(x) - y) ** 2)


def weights_and_biases(params):
    """The (path, leaf) pairs of the partitioned params, paths as jaxprune reads them."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(p, simple=True, separator="/"): leaf for p, leaf in flat}


def make(kind, params):
    """The transform; ``filters.kernels`` (the default, named here) keeps the biases dense."""
    adam, kernels = optax.adam(1e-2), jaxprune.filters.kernels
    if kind == "masked":
        scores = jaxprune.scores.magnitude(params)
        return jaxprune.masked(adam, jaxprune.topk_mask(scores, SPARSITY, prunable=kernels))
    if kind == "rigl":
        key = jax.random.key(1)
        return jaxprune.rigl(
            adam, SPARSITY, end_step=30, update_every=10, key=key, prunable=kernels
        )
    return jaxprune.straight_through(adam, SPARSITY, prunable=kernels)


@pytest.mark.parametrize("kind", ["masked", "rigl", "straight_through"])
def test_an_equinox_mlp_trains_sparse(kind):
    model, x, y = model_and_data()
    params, static = eqx.partition(model, eqx.is_inexact_array)
    tx = make(kind, params)
    state = tx.init(params)

    @eqx.filter_jit
    def step(params, state):
        loss, grads = jax.value_and_grad(loss_fn)(params, static, x, y)
        updates, state = tx.update(grads, state, params)
        return eqx.apply_updates(params, updates), state, loss

    first = loss_fn(params, static, x, y)
    for _ in range(40):
        params, state, _ = step(params, state)
    assert loss_fn(params, static, x, y) < 0.7 * first

    mask = jaxprune.mask_of(state)
    assert mask is not None, "mask_of finds no mask in the Equinox model's optimizer state"
    np.testing.assert_allclose(jaxprune.sparsity(mask), SPARSITY, rtol=1e-6)

    leaves, kept = weights_and_biases(params), weights_and_biases(mask)
    assert set(leaves) == set(kept)
    weights = [path for path in leaves if path.endswith("weight")]
    assert len(weights) == 3  # the three Linear layers' (out, in) weights
    for path, leaf in leaves.items():
        keep = np.broadcast_to(np.asarray(kept[path]), leaf.shape)
        if path.endswith("weight"):
            assert np.all(np.asarray(leaf)[~keep] == 0.0), f"{path}: a pruned weight moved"
            assert keep.mean() < 1.0
        else:  # biases stay dense (filters.kernels)
            assert keep.all(), f"{path}: a bias was pruned"
