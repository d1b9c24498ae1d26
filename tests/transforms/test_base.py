"""What every jaxprune transform shares: chains, nnx.Optimizer, filters, selection methods, step arguments."""

import chex
import jax
import numpy as np
import optax
import pytest
from loops import X, Y, loss_fn, run
from trees import mlp_dict, nnx_model

import jaxprune


@pytest.mark.parametrize("kind", ["gradual", "static", "rigl"])
def test_schedule_free_eval_params_are_pruned_too(kind):
    """Schedule-free keeps a copy of the params in its state (z), from which
    schedule_free_eval_params builds the weights to evaluate: 0 where pruned as well."""
    params = mlp_dict()
    sf = optax.contrib.schedule_free_adamw(1e-2, warmup_steps=2, weight_decay=1e-3)
    key = jax.random.key(0)
    tx = {
        "gradual": lambda: jaxprune.gradual_magnitude(sf, 0.8, begin_step=0, end_step=6),
        "static": lambda: jaxprune.static_sparse(sf, 0.8, key=key),
        "rigl": lambda: jaxprune.rigl(sf, 0.8, end_step=100, update_every=3, key=key),
    }[kind]()
    state = tx.init(params)
    if kind != "gradual":  # gradual starts dense
        params = jaxprune.apply_mask(params, jaxprune.mask_of(state))
    update = jax.jit(tx.update)
    for _ in range(10):
        updates, state = update(jax.grad(loss_fn)(params), state, params)
        params = optax.apply_updates(params, updates)
    mask = jaxprune.mask_of(state)
    assert float(jaxprune.sparsity(mask)) == pytest.approx(0.8, abs=1e-2)
    evaluated = optax.contrib.schedule_free_eval_params(state.inner_state, params)
    for w, m in zip(jax.tree.leaves(evaluated), jax.tree.leaves(mask)):
        if m.ndim:
            assert not np.any(np.asarray(w)[~np.asarray(m)])


@pytest.mark.parametrize("kind", ["rigl", "set", "gradual", "static", "ste"])
def test_transforms_compose_with_chain_and_nnx_optimizer(kind):
    from flax import nnx

    def make(inner):
        key = jax.random.key(0)
        return {
            "rigl": lambda: jaxprune.rigl(inner, 0.8, end_step=8, key=key, update_every=2),
            "set": lambda: jaxprune.set_training(inner, 0.8, end_step=8, key=key, update_every=2),
            "gradual": lambda: jaxprune.gradual_magnitude(
                inner, 0.8, begin_step=0, end_step=6, update_every=2
            ),
            "static": lambda: jaxprune.static_sparse(inner, 0.8, key=key),
            "ste": lambda: jaxprune.straight_through(inner, 0.8),
        }[kind]()

    tx = optax.chain(optax.clip_by_global_norm(1.0), make(optax.adam(1e-2)))
    _, (ps, masks, _) = run_chain(tx, mlp_dict(), 10)
    for k in ps:
        m = np.asarray(masks[k]["kernel"][-1])
        assert (np.asarray(ps[k]["kernel"][-1])[~m] == 0).all()

    model = nnx_model()
    optimizer = nnx.Optimizer(model, make(optax.adam(1e-2)), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss = lambda m: optax.softmax_cross_entropy_with_integer_labels(m(X), Y % 4).mean()
        optimizer.update(model, nnx.grad(loss)(model))

    for _ in range(10):
        step(model, optimizer)
    mask = jaxprune.mask_of(optimizer.opt_state)
    for p, m in zip(jax.tree.leaves(nnx.state(model, nnx.Param)), jax.tree.leaves(mask)):
        if m.ndim:
            assert (np.asarray(p)[~np.asarray(m)] == 0).all()
    assert abs(float(jaxprune.sparsity(mask)) - 0.8) < 0.01


@pytest.mark.parametrize(
    "kind, bad, error, match",
    [
        ("rigl", {"update_every": 2.5}, TypeError, "update_every must be an integer"),
        ("set", {"update_every": 0}, ValueError, "update_every must be >= 1"),
        ("rigl", {"end_step": 0}, ValueError, "end_step must be >= 1"),
        ("rigl", {"end_step": 100.0}, TypeError, "end_step must be an integer"),
        ("set", {"begin_step": -5}, ValueError, "begin_step must be >= 0"),
        ("gradual", {"update_every": True}, TypeError, "update_every must be an integer"),
        ("gradual", {"begin_step": 0.5}, TypeError, "begin_step must be an integer"),
        ("gradual", {"end_step": 0}, ValueError, "need begin_step < end_step"),
    ],
)
def test_schedules_take_integer_step_counts_only(kind, bad, error, match):
    args = {"end_step": 100, "update_every": 10, "begin_step": 0} | bad
    key, sgd = jax.random.key(0), optax.sgd(0.1)
    with pytest.raises(error, match=match):
        if kind == "gradual":
            jaxprune.gradual_magnitude(sgd, 0.5, **args)
        else:
            make = jaxprune.rigl if kind == "rigl" else jaxprune.set_training
            make(sgd, 0.5, key=key, **args)
    ok = {"end_step": np.int64(100), "update_every": np.int32(10), "begin_step": 0}
    jaxprune.rigl(sgd, 0.5, key=key, **ok)  # NumPy integers are integers


def test_transforms_honour_a_prunable_filter_that_chooses_biases():
    params = mlp_dict()
    with_biases = jaxprune.filters.any_of(None, "bias$")
    key = jax.random.key(0)
    for tx in (
        jaxprune.static_sparse(optax.sgd(0.1), 0.5, key=key, prunable=with_biases),
        jaxprune.rigl(
            optax.sgd(0.1), 0.5, end_step=10, update_every=5, key=key, prunable=with_biases
        ),
        jaxprune.gradual_magnitude(
            optax.sgd(0.1), 0.5, begin_step=0, end_step=4, update_every=2, prunable=with_biases
        ),
        jaxprune.straight_through(optax.sgd(0.1), 0.5, prunable=with_biases),
    ):
        state = tx.init(params)
        assert jaxprune.mask_of(state)["layers_0"]["bias"].shape == (16,)


@pytest.mark.parametrize("kind", ["rigl", "set", "gradual", "ste"])
def test_selection_method_gives_the_same_training_and_is_checked(kind):
    def make(method):
        key, sgd = jax.random.key(0), optax.sgd(0.1, momentum=0.9)
        if kind == "gradual":
            return jaxprune.gradual_magnitude(
                sgd, 0.8, begin_step=0, end_step=20, update_every=4, method=method
            )
        if kind == "ste":
            return jaxprune.straight_through(sgd, 0.8, method=method)
        make = jaxprune.rigl if kind == "rigl" else jaxprune.set_training
        return make(sgd, 0.8, end_step=20, key=key, update_every=4, method=method)

    _, (ps_radix, masks_radix, _) = run(make("radix"), mlp_dict(), 24)
    _, (ps_sort, masks_sort, _) = run(make("sort"), mlp_dict(), 24)
    chex.assert_trees_all_equal(masks_radix, masks_sort)
    chex.assert_trees_all_close(ps_radix, ps_sort, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="method must be one of"):
        make("bitonic")


def run_chain(tx, params, steps):
    state = tx.init(params)

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss_fn)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), (params, jaxprune.mask_of(state), None)

    _, trace = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), None, length=steps))(params, state)
    return state, trace
