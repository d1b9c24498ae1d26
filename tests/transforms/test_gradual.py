"""gradual_magnitude: magnitude pruning on a polynomial schedule (Zhu & Gupta 2017)."""

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


def test_gradual_magnitude_reaches_the_final_sparsity_off_the_update_grid():
    params = mlp_dict()
    tx = jaxprune.gradual_magnitude(optax.sgd(0.0), 0.8, begin_step=0, end_step=7, update_every=3)
    state, update = tx.init(params), jax.jit(tx.update)
    for _ in range(9):
        updates, state = update(jax.tree.map(jnp.zeros_like, params), state, params)
        params = optax.apply_updates(params, updates)
    for k, leaf in params.items():  # exactly the final counts, not those of step 6
        assert int(state.mask[k]["kernel"].sum()) == keep_count_reference(leaf["kernel"].size, 0.8)
