"""The fenced fast paths and the plain reference paths train the same way."""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest
from trees import mlp_apply, mlp_dict

import jaxprune
from jaxprune import _fastpath


def loss_fn(params):
    x = jax.random.normal(jax.random.key(1), (32, 20))
    y = jnp.argmax(x[:, :4], axis=1)
    return optax.softmax_cross_entropy_with_integer_labels(mlp_apply(params, x), y).mean()


def train(tx, steps=12):
    params = mlp_dict()
    state = tx.init(params)
    params = jaxprune.apply_mask(params, jaxprune.mask_of(state))

    @jax.jit
    def step(params, state):
        updates, state = tx.update(jax.grad(loss_fn)(params), state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
    return params, jaxprune.mask_of(state)


KINDS = {
    "masked": lambda i: jaxprune.masked(
        i, jaxprune.topk_mask(jaxprune.scores.magnitude(mlp_dict()), 0.7)
    ),
    "rigl": lambda i: jaxprune.rigl(i, 0.8, end_step=10, update_every=3, key=jax.random.key(0)),
    "set": lambda i: jaxprune.set_training(
        i, 0.8, end_step=10, update_every=3, key=jax.random.key(0)
    ),
    "ste": lambda i: jaxprune.straight_through(i, 0.75),
}


@pytest.mark.parametrize("inner", ["momentum", "lion"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_fast_and_reference_paths_agree(kind, inner):
    make = {"momentum": lambda: optax.sgd(0.1, momentum=0.9), "lion": lambda: optax.lion(1e-3)}
    fast = train(KINDS[kind](make[inner]()))
    with _fastpath.reference_paths():
        assert _fastpath.backend() == "reference" and not _fastpath.on_cpu()
        reference = train(KINDS[kind](make[inner]()))
    chex.assert_trees_all_equal(fast[1], reference[1])  # masks
    chex.assert_trees_all_close(fast[0], reference[0], rtol=1e-6, atol=1e-6)  # params
    assert _fastpath.backend() == jax.default_backend()
