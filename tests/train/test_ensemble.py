"""Ensembles: many members (seeds, masks) trained at once with vmap, as if one by one."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import Crash, crashing_at

import jaxprune
from jaxprune.train import (
    Checkpointing,
    Evaluation,
    Logging,
    Parallel,
    create_train_state,
    fit,
    make_mesh,
    make_train_step,
    member,
    read_metrics,
    stack_states,
)
from jaxprune.train.testing import TinyCNN, synthetic_dataset

TRAIN = synthetic_dataset(200, (16, 1), 4, seed=0)
TEST = synthetic_dataset(70, (16, 1), 4, seed=1)


def run(workdir, state, ensemble, **overrides):
    kwargs = dict(
        workdir=str(workdir),
        batch_size=16,
        steps=20,
        eval=Evaluation(data=TEST, every=10),
        logging=Logging(every=5, progress=False),
        checkpoints=Checkpointing(every=7),
        parallel=Parallel(mesh=make_mesh(1), ensemble=ensemble),
    )
    return fit(state, TRAIN, **(kwargs | overrides))


def members(tx, masks):
    out = []
    for i, mask in enumerate(masks):
        s = create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(i)), tx, seed=i)
        opt_state = jaxprune.transforms.replace_mask(s.opt_state, mask)
        out.append(s.replace(params=jaxprune.apply_mask(s.params, mask), opt_state=opt_state))
    return out


def test_ensemble_members_train_as_if_alone(tmp_path):
    dense = create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(0)), optax.adam(1e-2)).params
    scores = [jaxprune.scores.random(jax.random.key(i), dense) for i in range(3)]
    masks = [jaxprune.topk_mask(s, 0.5) for s in scores]
    # SGD: Adam would amplify the rounding differences of batched convolutions.
    tx = jaxprune.masked(optax.sgd(0.1, momentum=0.9), jaxprune.dense_mask)
    states = members(tx, masks)
    together = run(tmp_path / "ensemble", stack_states(states), True)
    records = read_metrics(tmp_path / "ensemble" / "metrics.jsonl")
    for i, state in enumerate(states):
        alone = run(tmp_path / f"alone{i}", state, False)
        for a, b in zip(
            jax.tree.leaves(member(together.state, i).params), jax.tree.leaves(alone.state.params)
        ):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)
        mask_i = jaxprune.mask_of(member(together.state, i).opt_state)
        for a, b in zip(jax.tree.leaves(mask_i), jax.tree.leaves(masks[i])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        alone_acc = alone.results["eval"]["test"]["accuracy"]
        assert together.results["eval"]["test"]["accuracy"][i] == pytest.approx(alone_acc)
    assert len(records[-1]["loss"]) == 3


def test_members_with_their_own_data_orders_are_evaluated_as_if_alone(tmp_path):
    tx = optax.sgd(0.1, momentum=0.9)
    states = [create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(i)), tx, seed=i) for i in (0, 1)]
    together = run(tmp_path / "ensemble", stack_states(states), True, seed=(3, 4))
    for i, (state, seed) in enumerate(zip(states, (3, 4))):
        alone = run(tmp_path / f"alone{i}", state, False, seed=seed)
        alone_acc = alone.results["eval"]["test"]["accuracy"]
        assert together.results["eval"]["test"]["accuracy"][i] == pytest.approx(alone_acc)


def test_ensemble_resumes_after_a_crash(tmp_path):
    tx = jaxprune.masked(optax.sgd(0.1, momentum=0.9), jaxprune.dense_mask)
    dense = create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(0)), tx).params
    masks = [
        jaxprune.topk_mask(jaxprune.scores.random(jax.random.key(i), dense), 0.7) for i in (0, 1)
    ]
    full = run(tmp_path / "full", stack_states(members(tx, masks)), True)
    with pytest.raises(Crash):
        run(tmp_path / "cut", stack_states(members(tx, masks)), True, batches=crashing_at(12))
    resumed = run(tmp_path / "cut", stack_states(members(tx, masks)), True)
    assert read_metrics(tmp_path / "cut" / "metrics.jsonl") == read_metrics(
        tmp_path / "full" / "metrics.jsonl"
    )
    for a, b in zip(jax.tree.leaves(full.state.params), jax.tree.leaves(resumed.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_stack_states_needs_one_tx_and_one_graph():
    a = create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(0)), optax.sgd(0.1))
    b = create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(1)), optax.sgd(0.1))
    with pytest.raises(ValueError, match="tx"):
        stack_states([a, b])


def _mask_update_loops(jaxpr):
    """The condition jaxprs of the while loops in ``jaxpr`` and its sub-jaxprs."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "while":
            found.append(eqn.params["cond_jaxpr"])
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            found += _mask_update_loops(sub)
    return found


@pytest.mark.skipif(
    jax.default_backend() == "gpu", reason="on a GPU RigL's update is a lax.cond, not a loop"
)
def test_shared_counters_keep_mask_updates_under_a_real_branch():
    # The step counters of all members are one shared scalar, so vmap leaves the
    # predicate of RigL's at-most-once mask-update loop unbatched: steps without a mask
    # update do not run it (a batched predicate means "while any member", with a select).
    tx = jaxprune.rigl(optax.sgd(0.1), 0.5, end_step=100, key=jax.random.key(0), update_every=10)
    states = [create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(i)), tx, seed=i) for i in (0, 1)]
    ensemble = stack_states(states)
    assert ensemble.step.shape == () and ensemble.opt_state.count.shape == ()
    assert ensemble.params["conv"]["kernel"].shape[0] == 2
    batch = {"x": TRAIN.x[:16], "y": TRAIN.y[:16]}
    step = make_train_step(ensemble=True)
    loops = _mask_update_loops(jax.make_jaxpr(step)(ensemble, batch).jaxpr)
    assert loops and all(c.out_avals[0].shape == () for c in loops)
    # What the check catches: members with counters of their own.
    batched = ensemble.replace(
        opt_state=ensemble.opt_state._replace(count=jax.numpy.zeros(2, jax.numpy.int32))
    )
    loops = _mask_update_loops(jax.make_jaxpr(step)(batched, batch).jaxpr)
    assert any(c.out_avals[0].shape == (2,) for c in loops)
    out, metrics = step(ensemble, batch)  # no aux: fine
    assert metrics["loss"].shape == (2,) and out.step.shape == ()
    for i in (0, 1):
        alone, _ = make_train_step()(states[i], batch)
        for a, b in zip(jax.tree.leaves(member(out, i).params), jax.tree.leaves(alone.params)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=2e-6)


def test_members_scalars_that_diverge_are_stacked_and_shared_ones_are_copies():
    """Only step counters and mask stand-ins are shared: apply_if_finite's count of
    non-finite steps differs between members once they train (an ensemble step failed on
    it); a shared leaf is a buffer of its own (a donating step deleted member 0's)."""
    tx = jaxprune.masked(optax.apply_if_finite(optax.sgd(0.1), 3), jaxprune.dense_mask)
    states = [create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(i)), tx, seed=i) for i in (0, 1)]
    ensemble = stack_states(states)
    assert ensemble.step.shape == () and ensemble.opt_state.inner_state.notfinite_count.shape == (
        2,
    )
    batch = {"x": TRAIN.x[:16], "y": TRAIN.y[:16]}
    out, metrics = jax.jit(make_train_step(ensemble=True), donate_argnums=0)(ensemble, batch)
    assert metrics["loss"].shape == (2,) and out.step.shape == ()
    make_train_step()(states[0], batch)  # member 0's own arrays are still there
