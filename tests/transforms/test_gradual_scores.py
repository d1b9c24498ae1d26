"""gradual_prune: the polynomial schedule with any score (movement, saliency, random, a
function) and at unit or block granularity."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from loops import kernel_counts, run
from reference import keep_count_reference
from trees import mlp_dict

import jaxprune
from jaxprune import schedules

SCHEDULE = dict(begin_step=4, end_step=16, update_every=4)
KEY = jax.random.key(3)


def _tx(score, sparsity=0.9, inner=None, **kwargs):
    key = KEY if score == "random" else None
    inner = optax.adam(1e-2) if inner is None else inner
    return jaxprune.gradual_prune(inner, sparsity, score=score, key=key, **SCHEDULE, **kwargs)


def _saliency_by_hand(params, grads):
    return jax.tree.map(lambda w, g: jnp.abs(w * g) if w.ndim > 1 else jnp.zeros(()), params, grads)


SCORES = ["magnitude", "movement", "saliency", "random", _saliency_by_hand]


def _last_update(t):
    """The step of the mask in force after step t (None: still dense)."""
    begin, end, every = SCHEDULE["begin_step"], SCHEDULE["end_step"], SCHEDULE["update_every"]
    return None if t < begin else min(begin + every * ((t - begin) // every), end)


def _targets(steps, sparsity=0.9):
    s = schedules.polynomial(
        final=sparsity, begin_step=SCHEDULE["begin_step"], end_step=SCHEDULE["end_step"]
    )
    return [None if _last_update(t) is None else float(s(_last_update(t))) for t in range(steps)]


@pytest.mark.parametrize("score", SCORES)
@pytest.mark.parametrize("distribution", ["uniform", "global"])
def test_every_score_hits_the_schedule_exactly(score, distribution):
    params = mlp_dict()
    _, (ps, masks, _) = run(_tx(score, distribution=distribution), params, 20)
    counts = kernel_counts(masks)
    sizes = {k: leaf["kernel"].size for k, leaf in params.items()}
    for t, s in enumerate(_targets(20)):
        if s is None:
            assert all(counts[k][t] == sizes[k] for k in params), t
        elif distribution == "uniform":
            for k in params:
                assert counts[k][t] == keep_count_reference(sizes[k], s), (t, k)
        else:
            total = sum(int(counts[k][t]) for k in params)
            assert total == keep_count_reference(sum(sizes.values()), s), t
        for k in params:  # pruned weights are zero, and stay pruned
            m = np.asarray(masks[k]["kernel"][t])
            assert (np.asarray(ps[k]["kernel"][t])[~m] == 0).all()
            if t:
                assert not (m & ~np.asarray(masks[k]["kernel"][t - 1])).any(), (t, k)


def test_movement_accumulates_minus_w_times_grad_by_hand():
    w0 = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
    grads = [np.array([[1.0, 2.0], [-1.0, 0.5]], np.float32) * (i + 1) for i in range(3)]
    tx = jaxprune.gradual_prune(
        optax.sgd(0.1), 0.5, score="movement", begin_step=3, end_step=6, update_every=3
    )
    params, state = {"w": jnp.asarray(w0)}, tx.init({"w": jnp.asarray(w0)})
    assert isinstance(state, jaxprune.transforms.MovementState)
    np.testing.assert_array_equal(state.movement["w"], np.zeros((2, 2)))
    w, want = w0.copy(), np.zeros((2, 2), np.float32)
    for g in grads:
        want -= w * g
        w = w - np.float32(0.1) * g
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(state.movement["w"], want, rtol=1e-6)
    np.testing.assert_allclose(params["w"], w, rtol=1e-6)
    # Step 3 is the first update: the mask keeps the highest accumulated scores (after
    # this step's -w * g too).
    g = np.ones((2, 2), np.float32)
    want -= w * g
    _, state = tx.update({"w": jnp.asarray(g)}, state, params)
    kept = np.zeros(4, bool)
    s = schedules.polynomial(final=0.5, begin_step=3, end_step=6)(3)
    kept[np.argsort(-want.ravel(), kind="stable")[: keep_count_reference(4, float(s))]] = True
    np.testing.assert_array_equal(state.mask["w"], kept.reshape(2, 2))


def test_saliency_ranks_by_abs_w_times_g():
    params = {"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}
    grads = {"w": jnp.array([[4.0, 1.0], [1.0, 0.1]])}  # |w g| = 4, 2, 3, 0.4
    tx = jaxprune.gradual_prune(
        optax.sgd(0.0), 0.5, score="saliency", initial_sparsity=0.5, begin_step=0, end_step=1
    )
    _, state = tx.update(grads, tx.init(params), params)
    assert state.mask["w"].tolist() == [[True, False], [True, False]]
    magnitude = jaxprune.gradual_magnitude(
        optax.sgd(0.0), 0.5, initial_sparsity=0.5, begin_step=0, end_step=1
    )
    _, state = magnitude.update(grads, magnitude.init(params), params)
    assert state.mask["w"].tolist() == [[False, False], [True, True]]


def test_random_scores_depend_on_the_key_and_keep_exact_counts():
    params = mlp_dict()
    out = []
    for key in (jax.random.key(0), jax.random.key(1)):
        tx = jaxprune.gradual_prune(optax.sgd(0.0), 0.6, score="random", key=key, **SCHEDULE)
        _, (_, masks, _) = run(tx, params, 20)
        for k, leaf in params.items():
            assert int(masks[k]["kernel"][-1].sum()) == keep_count_reference(
                leaf["kernel"].size, 0.6
            )
        out.append(np.asarray(masks["layers_0"]["kernel"][-1]))
    assert not np.array_equal(out[0], out[1])


@pytest.mark.parametrize("score", SCORES)
def test_unit_granularity_keeps_whole_units_in_exact_numbers(score):
    params = mlp_dict()
    _, (_, masks, _) = run(_tx(score, 0.75, granularity="unit"), params, 20)
    for t, s in enumerate(_targets(20, 0.75)):
        for k, leaf in params.items():
            m = np.asarray(masks[k]["kernel"][t])
            kept_units = m.any(axis=0)
            assert (m == kept_units[None, :]).all(), (t, k)  # whole columns
            units = leaf["kernel"].shape[-1]
            want = units if s is None else keep_count_reference(units, s)
            assert kept_units.sum() == want, (t, k)
            assert (np.asarray(masks[k]["bias"][t]) == True).all()  # noqa: E712


@pytest.mark.parametrize("score", ["magnitude", "movement", "saliency", "random"])
def test_block_granularity_keeps_whole_blocks_in_exact_numbers(score):
    params = mlp_dict()
    _, (_, masks, _) = run(_tx(score, 0.5, granularity=(2, 2)), params, 20)
    for k in params:
        m = np.asarray(masks[k]["kernel"][-1])
        rows, cols = m.shape
        blocks = m.reshape(rows // 2, 2, cols // 2, 2)
        assert (blocks.all(axis=(1, 3)) == blocks.any(axis=(1, 3))).all(), k
        assert blocks.any(axis=(1, 3)).sum() == keep_count_reference(rows * cols // 4, 0.5), k


def test_the_jitted_update_matches_the_eager_one():
    params = mlp_dict()
    grads = jax.tree.map(lambda x: jnp.cos(x), params)
    tx = _tx("movement", 0.5, optax.sgd(0.1), granularity="unit")
    eager, jitted = tx.init(params), tx.init(params)
    p_e = p_j = params
    update = jax.jit(tx.update)
    for _ in range(9):  # the mask updates at steps 4 and 8
        u, eager = tx.update(grads, eager, p_e)
        p_e = optax.apply_updates(p_e, u)
        u, jitted = update(grads, jitted, p_j)
        p_j = optax.apply_updates(p_j, u)
    for a, b in zip(jax.tree.leaves((p_e, eager)), jax.tree.leaves((p_j, jitted))):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert float(jaxprune.sparsity(jitted.mask)) > 0


def test_magnitude_keeps_the_state_of_gradual_magnitude():
    params = mlp_dict()
    old = jaxprune.gradual_magnitude(optax.adam(1e-3), 0.5, begin_step=0, end_step=4)
    new = jaxprune.gradual_prune(optax.adam(1e-3), 0.5, begin_step=0, end_step=4)
    for tx in (old, new):
        state = tx.init(params)
        assert type(state) is jaxprune.GradualState
        assert state._fields == ("inner_state", "jaxprune_mask", "count")
    assert jax.tree.structure(old.init(params)) == jax.tree.structure(new.init(params))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(score="movment"), ValueError, "score must be one of.*Did you mean 'movement'"),
        (dict(score="random"), ValueError, "needs key="),
        (dict(score="random", key=0), TypeError, "key must be a JAX random key"),
        (dict(score="saliency", key=KEY), ValueError, "score='random' only"),
        (dict(granularity="rows"), ValueError, "granularity must be"),
        (dict(granularity=(2, 0)), ValueError, "granularity must be"),
        (dict(distribution="erk"), ValueError, "'uniform' or 'global'"),
    ],
)
def test_bad_arguments_are_refused_when_built(kwargs, error, match):
    with pytest.raises(error, match=match):
        jaxprune.gradual_prune(optax.sgd(0.1), 0.5, begin_step=0, end_step=4, **kwargs)


def test_a_block_that_does_not_divide_a_kernel_is_refused_at_init_naming_it():
    tx = jaxprune.gradual_prune(optax.sgd(0.1), 0.5, granularity=(3, 3), begin_step=0, end_step=4)
    with pytest.raises(ValueError, match=r"'layers_0/kernel' has shape \(20, 16\)"):
        tx.init(mlp_dict())


def test_a_score_function_of_the_wrong_shape_is_refused_naming_the_leaf():
    bad = lambda params, grads: jax.tree.map(lambda w: jnp.zeros((3,) * w.ndim), params)  # noqa: E731
    tx = jaxprune.gradual_prune(optax.sgd(0.1), 0.5, score=bad, begin_step=0, end_step=4)
    params = mlp_dict()
    with pytest.raises(ValueError, match="has shape .* at 'layers_0/bias'"):
        tx.update(params, tx.init(params), params)
