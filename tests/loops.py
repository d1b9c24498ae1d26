"""A full-batch training loop on a small MLP, shared by the transforms' tests."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from trees import mlp_apply

import jaxprune

X = jax.random.normal(jax.random.key(1), (64, 20))
Y = jnp.argmax(X[:, :4], axis=1)


def loss_fn(params):
    return optax.softmax_cross_entropy_with_integer_labels(mlp_apply(params, X), Y).mean()


def run(tx, params, steps):
    """Trains with full-batch gradients; returns per-step params, masks and inner states."""
    state = tx.init(params)

    def step(carry, _):
        params, state = carry
        grads = jax.grad(loss_fn)(params)
        updates, new_state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        return (params, new_state), (params, jaxprune.mask_of(new_state), new_state.inner_state)

    _, trace = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), None, length=steps))(params, state)
    return state, trace


def kernel_counts(masks):
    return {k: np.asarray(masks[k]["kernel"]).sum(axis=(-2, -1)) for k in masks}
