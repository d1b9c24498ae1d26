"""RigL, SET, gradual magnitude, static sparse and straight-through as optax transforms."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reference import keep_count_reference
from trees import mlp_apply, mlp_dict, nnx_model

import jaxprune
from jaxprune import schedules

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


@pytest.mark.parametrize("grow", ["rigl", "set"])
def test_dst_keeps_counts_changes_on_schedule_and_stops_at_end(grow):
    params = mlp_dict()
    make = jaxprune.rigl if grow == "rigl" else jaxprune.set_training
    tx = make(
        optax.sgd(0.1, momentum=0.9),
        0.8,
        end_step=40,
        key=jax.random.key(0),
        update_every=5,
        drop_fraction=0.4,
    )
    state0, (ps, masks, _) = run(tx, params, 60)
    m0 = state0.mask
    for k, c in kernel_counts(masks).items():
        assert (c == int(np.asarray(m0[k]["kernel"]).sum())).all(), k  # constant per layer
    fraction = schedules.cosine_decay(alpha=0.4, end_step=40)
    prev = jax.tree.map(np.asarray, m0)
    changed_steps = []
    for t in range(60):
        cur = jax.tree.map(lambda m: np.asarray(m[t]), masks)
        moved = {k: int((cur[k]["kernel"] & ~prev[k]["kernel"]).sum()) for k in cur}
        if any(moved.values()):
            changed_steps.append(t)
            for k in cur:
                active = int(prev[k]["kernel"].sum())
                assert moved[k] <= active - keep_count_reference(active, float(fraction(t))), (t, k)
            # grown weights start at exactly zero
            for k in cur:
                grown = cur[k]["kernel"] & ~prev[k]["kernel"]
                assert (np.asarray(ps[k]["kernel"][t])[grown] == 0).all()
        prev = cur
    assert changed_steps and set(changed_steps) <= {5, 10, 15, 20, 25, 30, 35}
    for k in prev:  # pruned weights exactly zero at the end
        assert (np.asarray(ps[k]["kernel"][-1])[~prev[k]["kernel"]] == 0).all()


def test_rewire_moves_exactly_the_cosine_fraction():
    params = mlp_dict()
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.7)
    # gradients only on inactive weights: nothing dropped can be regrown
    grads = jax.tree.map(lambda m, p: jnp.where(m, 0.0, 1.0 + jnp.abs(p)), mask, params)
    f = schedules.cosine_decay(alpha=0.3, end_step=100)
    for t in (0, 30, 70, 99):
        new = jaxprune.transforms.rewire(params, grads, mask, f(t))
        for k in params:
            old, cur = np.asarray(mask[k]["kernel"]), np.asarray(new[k]["kernel"])
            active = int(old.sum())
            assert int(cur.sum()) == active
            assert int((old & ~cur).sum()) == active - keep_count_reference(active, float(f(t)))
            assert new[k]["bias"].shape == ()


def _two_weight_layer():
    params = {"w": jnp.array([[3.0, 0.1, 0.0, 0.0]] * 2)}
    mask = {"w": jnp.array([[True, True, False, False]] * 2)}
    return params, mask


def _rigl_two_steps(inner, grads1):
    params, mask = _two_weight_layer()
    tx = jaxprune.rigl(inner, mask=mask, end_step=10_000, update_every=1, drop_fraction=0.5)
    state, update = tx.init(params), jax.jit(tx.update)
    g0 = {"w": jnp.array([[1.0, 1.0, 0.0, 0.0]] * 2)}
    u, state = update(g0, state, params)  # a normal step (t = 0): moments build up
    params = optax.apply_updates(params, u)
    before = (params, state)
    u, state = update(grads1, state, params)  # t = 1: a mask update step
    return before, (optax.apply_updates(params, u), state)


def test_dropped_and_regrown_weight_keeps_value_and_state_and_step_is_skipped():
    grads1 = {"w": jnp.array([[0.0, 100.0, 1.0, 0.0]] * 2)}
    (p0, s0), (p1, s1) = _rigl_two_steps(optax.sgd(0.01, momentum=0.9), grads1)
    np.testing.assert_array_equal(s1.mask["w"], s0.mask["w"])
    np.testing.assert_array_equal(p1["w"], p0["w"])  # no optimizer step, value kept
    chex.assert_trees_all_equal(s1.inner_state, s0.inner_state)  # state kept too


@pytest.mark.parametrize("name", ["momentum", "adam", "adamw", "lion", "adafactor"])
def test_grown_weights_and_their_moments_start_at_zero(name):
    inner = {
        "momentum": optax.sgd(0.01, momentum=0.9),
        "adam": optax.adam(0.01),
        "adamw": optax.adamw(0.01, weight_decay=0.1),
        "lion": optax.lion(0.01),
        "adafactor": optax.adafactor(0.01, momentum=0.9),
    }[name]
    grads1 = {"w": jnp.array([[0.0, 0.0, 100.0, 0.0]] * 2)}
    (p0, s0), (p1, s1) = _rigl_two_steps(inner, grads1)
    np.testing.assert_array_equal(s1.mask["w"], [[True, False, True, False]] * 2)
    assert float(p1["w"][0, 1]) == 0.0 and float(p1["w"][0, 2]) == 0.0  # dropped, grown
    assert float(p1["w"][0, 0]) == float(p0["w"][0, 0])  # optimizer step skipped
    per_param = [x for x in jax.tree.leaves(s1.inner_state) if x.shape == (2, 4)]
    before = [x for x in jax.tree.leaves(s0.inner_state) if x.shape == (2, 4)]
    assert per_param, "no per-parameter state found"
    for new, old in zip(per_param, before):
        assert (np.asarray(new)[:, 1:3] == 0).all()  # dropped and grown: zeroed
        np.testing.assert_array_equal(np.asarray(new)[:, 0], np.asarray(old)[:, 0])


@pytest.mark.parametrize("wrapper", ["masked", "multi_transform", "partition"])
def test_moments_are_zeroed_inside_optax_wrappers_that_own_some_leaves(wrapper):
    """optax.masked / multi_transform / partition keep a MaskedNode where a leaf is not
    theirs; the Adam moments of the leaves they do own are still found and zeroed."""
    params = {"w": jnp.ones((2, 4)), "b": jnp.ones(4)}
    adam, labels = optax.adam(0.1), {"w": "adam", "b": "sgd"}
    inner = {
        "masked": lambda: optax.masked(adam, {"w": True, "b": False}),
        "multi_transform": lambda: optax.multi_transform(
            {"adam": adam, "sgd": optax.sgd(0.1)}, labels
        ),
        "partition": lambda: optax.partition({"adam": adam, "sgd": optax.sgd(0.1)}, labels),
    }[wrapper]()
    _, state = inner.update(jax.tree.map(jnp.ones_like, params), inner.init(params), params)
    keep = {"w": jnp.array([[True, False, True, False]] * 2), "b": jnp.ones((), bool)}
    zeroed = jaxprune.transforms.zero_where(state, params, keep)

    def moments(tree):
        return [x for x in jax.tree.leaves(tree) if getattr(x, "shape", ()) == (2, 4)]

    assert len(moments(state)) == 2  # mu and nu
    for new, old in zip(moments(zeroed), moments(state)):
        assert np.all(np.asarray(old) != 0)
        np.testing.assert_array_equal(new, np.where(keep["w"], old, 0))


@pytest.mark.parametrize("wrapper", ["masked", "multi_transform"])
def test_moments_are_found_under_a_prefix_mask_or_prefix_labels(wrapper):
    """A prefix mask (or labels) puts one MaskedNode in place of a whole sub-tree: the
    moments of the sub-trees the wrapper owns are per-parameter state all the same."""
    params = {"enc": {"w": jnp.ones((2, 4)), "b": jnp.ones(4)}, "head": {"w": jnp.ones((4, 3))}}
    adam = optax.adam(0.1)
    inner = {
        "masked": lambda: optax.masked(adam, {"enc": False, "head": True}),
        "multi_transform": lambda: optax.multi_transform(
            {"adam": adam, "sgd": optax.sgd(0.1)}, {"enc": "sgd", "head": "adam"}
        ),
    }[wrapper]()
    _, state = inner.update(jax.tree.map(jnp.ones_like, params), inner.init(params), params)
    keep = jax.tree.map(lambda x: jnp.zeros(x.shape, bool) if x.ndim == 2 else x > 0, params)
    keep["head"]["w"] = jnp.eye(4, 3, dtype=bool)
    zeroed = jaxprune.transforms.zero_where(state, params, keep)
    head = lambda t: [x for x in jax.tree.leaves(t) if getattr(x, "shape", ()) == (4, 3)]  # noqa: E731
    assert len(head(state)) == 2  # mu and nu
    for new, old in zip(head(zeroed), head(state)):
        assert np.all(np.asarray(old) != 0)
        np.testing.assert_array_equal(new, np.where(np.eye(4, 3, dtype=bool), old, 0))
    # What a jaxprune transform inside such a wrapper sees: params with MaskedNodes too.
    owned = {"enc": optax.MaskedNode(), "head": params["head"]}
    inner_state = optax.adam(0.1).init(owned)
    inner_state = jaxprune.transforms.map_per_parameter(inner_state, owned, lambda x, i: x + 1)
    zeroed = jaxprune.transforms.zero_where(
        inner_state, owned, {"enc": optax.MaskedNode(), "head": {"w": keep["head"]["w"]}}
    )
    for new in head(zeroed):
        np.testing.assert_array_equal(new, np.where(np.eye(4, 3, dtype=bool), 1, 0))


@pytest.mark.parametrize("name", ["rigl", "set"])
def test_grown_weights_get_the_inner_optimizers_fresh_state_not_zeros(name):
    """rprop's step sizes start at the learning rate: zeroed, a grown weight never moved
    again (and was the first dropped at the next update)."""
    params = mlp_dict()
    make = jaxprune.rigl if name == "rigl" else jaxprune.set_training
    tx = make(optax.rprop(0.01), 0.8, end_step=100, update_every=5, key=jax.random.key(0))
    state = tx.init(params)
    params = jaxprune.apply_mask(params, jaxprune.mask_of(state))
    update = jax.jit(tx.update, static_argnames="rewire")
    for _ in range(5):  # the step sizes of the active weights move off 0.01
        params, state = step(update, params, state, rewire=False)
    old = jaxprune.mask_of(state)
    params, state = step(update, params, state, rewire=True)
    new = jaxprune.mask_of(state)
    sizes = state.inner_state[0].step_sizes
    for k in params:
        grown = np.asarray(new[k]["kernel"]) & ~np.asarray(old[k]["kernel"])
        kept = np.asarray(new[k]["kernel"]) & np.asarray(old[k]["kernel"])
        assert grown.any() and (np.asarray(sizes[k]["kernel"])[grown] == 0.01).all()
        assert (np.asarray(sizes[k]["kernel"])[kept] != 0.01).any()  # theirs kept
    for _ in range(5):
        params, state = step(update, params, state, rewire=False)
    for k in params:
        grown = np.asarray(new[k]["kernel"]) & ~np.asarray(old[k]["kernel"])
        # they train (all stayed 0 with zeroed step sizes; SET grows some at dead units)
        assert (np.asarray(params[k]["kernel"])[grown] != 0).mean() > 0.5


def step(update, params, state, **kwargs):
    x, y = jax.random.normal(jax.random.key(1), (32, 20)), jnp.arange(32) % 4
    grads = jax.grad(
        lambda p: optax.softmax_cross_entropy_with_integer_labels(mlp_apply(p, x), y).mean()
    )(params)
    u, state = update(grads, state, params, **kwargs)
    return optax.apply_updates(params, u), state


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


@pytest.mark.parametrize("host", [False, True])
def test_update_steps_skip_the_optimizer_step_schedules_included(host):
    """As in RigL's code, where an update step does not run the optimizer, which alone
    advances the global step its learning rate follows: after t steps with u updates,
    every count of the inner optimizer (schedules, inject_hyperparams, Adam's) is t - u."""
    params = mlp_dict()
    schedule = optax.linear_schedule(0.1, 0.0, 100)
    inners = {
        "schedule": optax.adam(schedule),
        "inject": optax.inject_hyperparams(optax.adam)(learning_rate=schedule),
    }
    for name, inner in inners.items():
        tx = jaxprune.rigl(inner, 0.8, end_step=100, update_every=5, key=jax.random.key(0))
        state, update = tx.init(params), jax.jit(tx.update, static_argnames="rewire")
        p = jaxprune.apply_mask(params, state.mask)
        for t in range(12):
            extra = {"rewire": tx.rewires_at(t)} if host else {}
            u, state = update(jax.grad(loss_fn)(p), state, p, **extra)
            p = optax.apply_updates(p, u)
        counts = [
            int(v)
            for k, v in jax.tree_util.tree_leaves_with_path(state.inner_state)
            if jax.tree_util.keystr(k).endswith("count")
        ]
        assert int(state.count) == 12 and len(counts) >= 2, (name, counts)
        assert set(counts) == {10}, (name, counts)  # updates at steps 5 and 10


def test_gradual_magnitude_follows_the_schedule():
    params = mlp_dict()
    tx = jaxprune.gradual_magnitude(
        optax.adam(1e-2), 0.9, begin_step=10, end_step=50, update_every=10
    )
    _, (ps, masks, _) = run(tx, params, 70)
    s = schedules.polynomial(final=0.9, begin_step=10, end_step=50)
    counts = kernel_counts(masks)
    for t in range(70):
        last_update = min(max(10 * (t // 10), 0), 50) if t >= 10 else None
        for k, leaf in params.items():
            n = leaf["kernel"].size
            want = n if last_update is None else keep_count_reference(n, float(s(last_update)))
            assert counts[k][t] == want, (t, k)
            m = np.asarray(masks[k]["kernel"][t])
            assert (np.asarray(ps[k]["kernel"][t])[~m] == 0).all()


def test_polynomial_is_exact_at_steps_past_float32s_integers():
    """Steps beyond 2^24 round in float32; the schedule subtracts in integers first."""
    t0 = 20_000_000
    s = schedules.polynomial(final=0.8, begin_step=t0, end_step=t0 + 10)
    for d in range(11):
        want = 0.8 - 0.8 * (1 - d / 10) ** 3
        assert float(s(jnp.int32(t0 + d))) == pytest.approx(want, abs=1e-6), d
        assert float(s(t0 + d)) == pytest.approx(want, abs=1e-6), d


@pytest.mark.parametrize("power", [0, -1.0, float("nan"), float("inf"), True, "3"])
def test_gradual_power_must_be_a_positive_number(power):
    with pytest.raises(ValueError, match="power must be a finite number > 0"):
        jaxprune.gradual_magnitude(optax.sgd(0.1), 0.8, begin_step=0, end_step=10, power=power)


@pytest.mark.parametrize("distribution", ["er", "erk"])
def test_gradual_refuses_er_and_erk_when_built(distribution):
    with pytest.raises(ValueError, match="'uniform' or 'global'.*topk_mask"):
        jaxprune.gradual_magnitude(
            optax.sgd(0.1), 0.8, begin_step=0, end_step=10, distribution=distribution
        )


def test_static_sparse_is_random_erk_and_fixed():
    params = mlp_dict()
    tx = jaxprune.static_sparse(optax.sgd(0.1), 0.8, key=jax.random.key(3))
    state, (ps, masks, _) = run(tx, params, 5)
    erk = jaxprune.layer_sparsities(params, 0.8, "erk")
    for k in params:
        n = params[k]["kernel"].size
        assert (kernel_counts(masks)[k] == round((1 - erk[f"{k}/kernel"]) * n)).all()
    chex.assert_trees_all_equal(jax.tree.map(lambda m: m[-1], masks), state.mask)


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


def run_chain(tx, params, steps):
    state = tx.init(params)

    def step(carry, _):
        params, state = carry
        updates, state = tx.update(jax.grad(loss_fn)(params), state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), (params, jaxprune.mask_of(state), None)

    _, trace = jax.jit(lambda p, s: jax.lax.scan(step, (p, s), None, length=steps))(params, state)
    return state, trace


def test_dst_needs_params_and_a_key():
    with pytest.raises(ValueError, match="key="):
        jaxprune.rigl(optax.sgd(0.1), 0.9, end_step=10)
    tx = jaxprune.rigl(optax.sgd(0.1), 0.5, end_step=10, update_every=5, key=jax.random.key(0))
    params = {"w": jnp.ones((4, 4))}
    with pytest.raises(ValueError, match="current parameters"):
        tx.update(params, tx.init(params))


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


def test_gradual_magnitude_reaches_the_final_sparsity_off_the_update_grid():
    params = mlp_dict()
    tx = jaxprune.gradual_magnitude(optax.sgd(0.0), 0.8, begin_step=0, end_step=7, update_every=3)
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(9):
        updates, state = update(jax.tree.map(jnp.zeros_like, params), state, params)
        params = optax.apply_updates(params, updates)
    for k, leaf in params.items():  # exactly the final counts, not those of step 6
        assert int(state.mask[k]["kernel"].sum()) == keep_count_reference(leaf["kernel"].size, 0.8)


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


@pytest.mark.parametrize("name", ["momentum", "lion"])
def test_rigl_takes_the_same_steps_on_the_gpu_code_path(name, monkeypatch):
    """On a GPU RigL's update runs under lax.cond (and the selection sorts): traced here
    with the backend reported as "gpu", it trains exactly as the CPU's loop does."""
    inner = {"momentum": optax.sgd(0.1, momentum=0.9), "lion": optax.lion(1e-3)}[name]

    def make():
        return jaxprune.rigl(inner, 0.8, end_step=20, key=jax.random.key(0), update_every=4)

    _, cpu = run(make(), mlp_dict(), 24)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    _, gpu = run(make(), mlp_dict(), 24)
    chex.assert_trees_all_equal(cpu[1], gpu[1])  # masks
    chex.assert_trees_all_close(cpu[0], gpu[0], rtol=1e-6, atol=1e-6)  # params
    chex.assert_trees_all_close(cpu[2], gpu[2], rtol=1e-6, atol=1e-6)  # inner states


def run_host_scheduled(tx, params, steps, flag=lambda t, tx: tx.rewires_at(t)):
    """As `run`, one jitted call a step, with `rewire=` given by the host (static)."""
    state = tx.init(params)

    def step(params, state, rewire):
        updates, state = tx.update(jax.grad(loss_fn)(params), state, params, rewire=rewire)
        return optax.apply_updates(params, updates), state

    static, traced = jax.jit(step, static_argnames="rewire"), jax.jit(step)
    trace = []
    for t in range(steps):
        rewire = flag(t, tx)
        step = static if isinstance(rewire, bool) else traced
        params, state = step(params, state, rewire=rewire)
        trace.append((params, jaxprune.mask_of(state), state.inner_state))
    return state, jax.tree.map(lambda *xs: jnp.stack(xs), *trace)


@pytest.mark.parametrize("name", ["momentum", "lion"])
@pytest.mark.parametrize("kind", ["rigl", "set"])
def test_host_scheduled_rewiring_takes_the_same_steps(kind, name):
    """rewire=tx.rewires_at(t), static: two programs (ordinary and update steps), the
    same training as the schedule tested on the device; a traced flag is taken too."""
    inner = {"momentum": optax.sgd(0.1, momentum=0.9), "lion": optax.lion(1e-3)}[name]
    make = jaxprune.rigl if kind == "rigl" else jaxprune.set_training
    tx = make(inner, 0.8, end_step=14, key=jax.random.key(0), update_every=4, begin_step=1)
    assert isinstance(tx, optax.GradientTransformationExtraArgs)
    assert [t for t in range(20) if tx.rewires_at(t)] == [5, 9, 13]
    _, device = run(tx, mlp_dict(), 16)
    _, host = run_host_scheduled(tx, mlp_dict(), 16)
    changed = [
        t
        for t in range(1, 16)
        if not jax.tree.all(jax.tree.map(lambda m: bool((m[t] == m[t - 1]).all()), device[1]))
    ]
    assert changed[:2] == [5, 9] and set(changed) <= {5, 9, 13}
    chex.assert_trees_all_equal(device[1], host[1])  # masks
    chex.assert_trees_all_close(device[0], host[0], rtol=1e-6, atol=1e-6)  # params
    chex.assert_trees_all_close(device[2], host[2], rtol=1e-6, atol=1e-6)  # inner states
    _, traced = run_host_scheduled(tx, mlp_dict(), 16, lambda t, tx: jnp.array(tx.rewires_at(t)))
    chex.assert_trees_all_equal(device[1], traced[1])


CONTROL = ("while", "conditional", "scatter", "sort")


def test_host_scheduled_ordinary_step_has_no_rewiring_and_flags_are_checked():
    tx = jaxprune.rigl(optax.sgd(0.1, momentum=0.9), 0.8, end_step=200, key=jax.random.key(0))
    params = mlp_dict()
    state = tx.init(params)

    def ops(tx, state, **rewire):
        f = lambda p, s: tx.update(jax.grad(loss_fn)(p), s, p, **rewire)
        hlo = jax.jit(f).lower(params, state).compile().as_text()
        return [op for op in re.findall(r"= \S+ ([\w-]+)\(", hlo) if op in CONTROL]

    masked = jaxprune.masked(optax.sgd(0.1, momentum=0.9), state.mask)
    plain = ops(masked, masked.init(params))  # the loss's own scatter
    assert ops(tx, state, rewire=False) == plain  # the same program as a masked step
    assert len(ops(tx, state, rewire=True)) > len(plain)  # the selection's histograms
    assert len(ops(tx, state)) > len(plain)  # the rewiring, under a loop
    with pytest.raises(ValueError, match="rewire= must be"):
        tx.update(params, state, params, rewire=jnp.array([True, False]))
    with pytest.raises(ValueError, match="rewire= must be"):
        tx.update(params, state, params, rewire=jnp.array(1))
    with pytest.raises(TypeError, match="integer on the host"):
        tx.rewires_at(jnp.array(2))
    assert [t for t in range(300) if tx.rewires_at(np.int64(t))] == [100]  # end_step 200
    tx = jaxprune.rigl(optax.sgd(0.1), 0.8, end_step=1000, key=jax.random.key(0))
    assert tx.rewires_at(np.int64(100)) is True and tx.rewires_at(99) is False
