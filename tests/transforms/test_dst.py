"""RigL and SET: dynamic sparse training, rewiring on a schedule or told by the host."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from loops import kernel_counts, loss_fn, run
from reference import keep_count_reference
from trees import mlp_apply, mlp_dict

import jaxprune
from jaxprune import schedules


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


def test_dst_needs_params_and_a_key():
    with pytest.raises(ValueError, match="key="):
        jaxprune.rigl(optax.sgd(0.1), 0.9, end_step=10)
    tx = jaxprune.rigl(optax.sgd(0.1), 0.5, end_step=10, update_every=5, key=jax.random.key(0))
    params = {"w": jnp.ones((4, 4))}
    with pytest.raises(ValueError, match="current parameters"):
        tx.update(params, tx.init(params))


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
