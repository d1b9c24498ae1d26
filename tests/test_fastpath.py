"""The fast-path fence: run_if and skippable_update (exact, no copy of the state when idle), and the fast and reference paths training alike."""

import os
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trees import OPTIMIZERS, mlp_apply, mlp_dict

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


def _grads(params, seed):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return tree.unflatten([jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_run_if_applies_fn_only_when_asked(backend, monkeypatch):
    """A loop where it runs in place (CPU), a cond on a GPU: same results either way."""
    monkeypatch.setattr(jax, "default_backend", lambda: backend)

    def f(pred, x):
        return _fastpath.run_if(pred, lambda c: (c[0] * 2, c[1] + 1), x)

    x = (jnp.arange(3.0), jnp.int32(5))
    control = {e.primitive.name for e in jax.make_jaxpr(f)(True, x).eqns} & {"cond", "while"}
    assert control == ({"cond"} if backend == "gpu" else {"while"}), control
    f = jax.jit(f)
    chex.assert_trees_all_equal(f(True, x), (jnp.arange(3.0) * 2, jnp.int32(6)))
    chex.assert_trees_all_equal(f(False, x), x)


def test_run_if_under_vmap_follows_each_members_predicate():
    f = jax.vmap(lambda pred, x: _fastpath.run_if(pred, lambda c: c + 10.0, x))
    out = f(jnp.array([True, False, True]), jnp.zeros((3, 2)))
    np.testing.assert_array_equal(out, [[10.0, 10.0], [0.0, 0.0], [10.0, 10.0]])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_skippable_update_is_the_inner_update_or_keeps_the_state(name):
    tx = optax.with_extra_args_support(OPTIMIZERS[name]())
    params = mlp_dict()
    # A state after two real steps, so every statistic is non-trivial.
    state, update = tx.init(params), jax.jit(tx.update)  # jitted: one program, not op by op
    for seed in (1, 2):
        state = update(_grads(params, seed), state, params)[1]
    grads = _grads(params, 3)
    skippable = jax.jit(lambda skip: _fastpath.skippable_update(tx, skip, grads, state, params))
    u_ref, s_ref = jax.jit(lambda: tx.update(grads, state, params))()
    u, s = skippable(False)
    # Same computation, but XLA may fuse it differently: equal to float rounding.
    chex.assert_trees_all_close(u, u_ref, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(s, s_ref, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_equal_structs(s, s_ref)
    _, s = skippable(True)
    chex.assert_trees_all_equal(s, state)  # exactly, bit for bit


def test_skippable_update_with_an_update_shaped_unlike_the_gradient():
    """An optimizer whose update reads its old state and has another dtype than the
    gradient takes the last resort (a selection) and is still exact."""

    def init(params):
        return {"m": jax.tree.map(jnp.zeros_like, params)}

    def update(grads, state, params=None):
        u = jax.tree.map(lambda m, g: (m + g).astype(jnp.float16), state["m"], grads)
        return u, {"m": jax.tree.map(lambda m, g: 0.5 * m + g, state["m"], grads)}

    tx = optax.with_extra_args_support(optax.GradientTransformation(init, update))
    params = {"w": jnp.ones((3, 2))}
    state = {"m": {"w": jnp.full((3, 2), 2.0)}}
    grads = {"w": jnp.ones((3, 2))}
    u, s = jax.jit(lambda k: _fastpath.skippable_update(tx, k, grads, state, params))(False)
    assert u["w"].dtype == jnp.float16 and float(u["w"][0, 0]) == 3.0
    np.testing.assert_array_equal(s["m"]["w"], 2.0)
    _, s = jax.jit(lambda k: _fastpath.skippable_update(tx, k, grads, state, params))(True)
    chex.assert_trees_all_equal(s, state)


def test_skippable_update_rejects_a_state_that_changes_layout():
    tx = optax.with_extra_args_support(
        optax.GradientTransformation(
            lambda p: {"n": jnp.zeros((), jnp.int32)},
            lambda g, s, p=None: (g, {"n": s["n"] + 0.5}),  # int32 -> float32
        )
    )
    with pytest.raises(ValueError, match=r"changes .* from one step to the next"):
        _fastpath.skippable_update(tx, True, {"w": jnp.ones(2)}, tx.init(None), None)


# XLA:CPU, donated buffers: what the compiled step copies.
SIZES = (200, 100, 10)


BIG = (200, 100)  # the first kernel's shape, met nowhere else in the step


# The tests compile with XLA:CPU's older fusion code generator (conftest.py); these
# checks are about the program users get, so they compile with the default one.
USERS_CODEGEN = (
    {"xla_cpu_use_fusion_emitters": True}
    if "--xla_cpu_use_fusion_emitters=false" in os.environ.get("XLA_FLAGS", "")
    else None
)


def _copied_shapes(step, *args):
    lowered = jax.jit(step, donate_argnums=(0, 1)).lower(*args)
    hlo = lowered.compile(compiler_options=USERS_CODEGEN).as_text()
    entry = hlo[hlo.index("\nENTRY") :]
    return re.findall(r"= \w+\[([\d,]*)\]\{[^}]*\} copy\(", entry)


def _train_step(tx):
    def step(params, state, grads):
        u, state = tx.update(grads, state, params)
        return optax.apply_updates(params, u), state

    return step


def _naive_skip(inner):
    """The selection the skip replaces: copies the state at every donated step."""

    def update(grads, state, params=None):
        u, new = inner.update(grads, state, params)
        skip = state[0].count % 100 == 99 if hasattr(state[0], "count") else False
        return u, jax.tree.map(lambda a, b: jnp.where(skip, a, b), state, new)

    return optax.GradientTransformation(inner.init, update)


def _big_copies(tx):
    params = mlp_dict(SIZES)
    shapes = _copied_shapes(_train_step(tx), params, tx.init(params), _grads(params, 0))
    return [s for s in shapes if tuple(int(d) for d in s.split(",") if d) == BIG]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks XLA:CPU's compiled program")
@pytest.mark.parametrize("name", ["momentum", "adam", "lion"])
def test_rigl_steps_copy_no_weight_or_mask_buffers(name):
    """RigL's mask rewiring and optimizer-step skip must not copy the donated
    per-parameter state (momentum, moments, mask) at every step."""
    tx = jaxprune.rigl(OPTIMIZERS[name](), 0.5, end_step=1000, key=jax.random.key(0))
    assert _big_copies(tx) == []


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="checks XLA:CPU's compiled program")
def test_the_copy_check_sees_the_copies_of_a_naive_skip():
    assert _big_copies(_naive_skip(optax.adam(1e-2))) != []
