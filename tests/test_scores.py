"""Scores: magnitude, random, SNIP on hand examples."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from trees import mlp_apply, mlp_dict

import jaxprune


def test_magnitude_and_stand_ins():
    params = mlp_dict()
    s = jaxprune.scores.magnitude(params)
    np.testing.assert_array_equal(s["layers_0"]["kernel"], np.abs(params["layers_0"]["kernel"]))
    assert s["layers_0"]["bias"].shape == () and s["layers_0"]["kernel"].dtype == jnp.float32


def test_random_scores_are_deterministic_and_differ_per_leaf():
    params = {"a": jnp.zeros((8, 8)), "b": jnp.zeros((8, 8))}
    s1 = jaxprune.scores.random(jax.random.key(0), params)
    chex.assert_trees_all_equal(s1, jaxprune.scores.random(jax.random.key(0), params))
    assert not np.array_equal(s1["a"], s1["b"])
    assert not np.array_equal(s1["a"], jaxprune.scores.random(jax.random.key(1), params)["a"])


def test_snip_equals_abs_grad_times_weight_on_a_hand_example():
    # loss = sum(x @ W) with x = [1, 2]: dL/dW[i, j] = x[i].
    params = {"w": jnp.array([[0.5, -1.0, 2.0], [3.0, 0.0, -0.25]]), "b": jnp.ones(3)}
    loss = lambda p, x: jnp.sum(x @ p["w"] + p["b"])
    s = jaxprune.scores.snip(loss, params, jnp.array([[1.0, 2.0]]), normalize=False)
    np.testing.assert_allclose(s["w"], [[0.5, 1.0, 2.0], [6.0, 0.0, 0.5]])
    assert s["b"].shape == ()
    n = jaxprune.scores.snip(loss, params, jnp.array([[1.0, 2.0]]))
    np.testing.assert_allclose(n["w"], np.asarray(s["w"]) / 10.0, rtol=1e-6)


def test_snip_on_an_mlp_matches_autodiff_and_supports_aux():
    params = mlp_dict()
    x = jax.random.normal(jax.random.key(0), (16, 20))
    y = jnp.arange(16) % 4

    def loss(p, batch):
        logits = mlp_apply(p, batch[0])
        l = -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(16), batch[1]])
        return l, logits

    s = jaxprune.scores.snip(loss, params, (x, y), normalize=False, has_aux=True)
    g = jax.grad(lambda p: loss(p, (x, y))[0])(params)
    np.testing.assert_allclose(
        s["layers_1"]["kernel"],
        np.abs(g["layers_1"]["kernel"] * params["layers_1"]["kernel"]),
        rtol=1e-6,
    )
    mask = jaxprune.topk_mask(s, 0.95, "global")
    assert sum(int(m.sum()) for m in jax.tree.leaves(mask) if m.ndim) == 28
