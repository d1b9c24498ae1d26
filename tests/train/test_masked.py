"""The engine with the core: training under a mask, checkpointed and resumed, mask files."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jaxprune
from jaxprune.data import batches
from jaxprune.train import (
    Checkpointing,
    Logging,
    Parallel,
    create_train_state,
    fit,
    load_mask,
    make_mesh,
    make_train_step,
    restore_checkpoint,
    save_mask,
    train_step,
)
from jaxprune.train.testing import TinyCNN, TinyMLP, synthetic_dataset

TRAIN = synthetic_dataset(160, (16, 1), 4, seed=0)


def magnitude_mask(model, sparsity=0.75):
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    return jaxprune.topk_mask(jaxprune.scores.magnitude(params), sparsity)


def pruned_entries(params, mask):
    """The parameter values at pruned positions, all leaves concatenated."""
    return np.concatenate(
        [
            np.asarray(p)[~np.asarray(m)]
            for p, m in zip(jax.tree.leaves(params), jax.tree.leaves(mask))
            if m.ndim
        ]
    )


def test_a_mask_prunes_at_creation_and_pruned_weights_stay_exactly_zero():
    model = TinyMLP(16, 32, 4, rngs=nnx.Rngs(0))
    mask = magnitude_mask(model)
    state = create_train_state(model, optax.adamw(1e-2, weight_decay=0.1), mask=mask)
    assert np.all(pruned_entries(state.params, mask) == 0.0)
    assert jax.tree.all(jax.tree.map(np.array_equal, jaxprune.mask_of(state.opt_state), mask))
    for batch in batches(synthetic_dataset(64, (16,), 4), 16, seed=0):
        state, _ = train_step(state, batch)
    zeros = pruned_entries(state.params, mask)
    assert np.all(zeros == 0.0) and not np.any(np.signbit(zeros))  # exactly +0.0
    kept = np.asarray(state.params["hidden"]["kernel"])[np.asarray(mask["hidden"]["kernel"])]
    assert np.count_nonzero(kept) == kept.size  # the survivors trained
    assert float(jaxprune.sparsity(mask)) == pytest.approx(0.75, abs=0.01)


def test_fit_under_a_mask_checkpoints_and_restores_the_mask(tmp_path):
    model = TinyCNN(1, 8, 4, rngs=nnx.Rngs(0))
    mask = magnitude_mask(model, 0.5)
    tx = optax.sgd(0.05, 0.9)
    kwargs = dict(
        workdir=str(tmp_path),
        batch_size=16,
        steps=12,
        checkpoints=Checkpointing(every=5),
        parallel=Parallel(mesh=make_mesh(1)),
        logging=Logging(progress=False),
    )
    out = fit(create_train_state(model, tx, mask=mask), TRAIN, **kwargs)
    template = create_train_state(model, tx, mask=jaxprune.dense_mask(out.state.params))
    restored = restore_checkpoint(tmp_path, template, 10)
    assert jax.tree.all(jax.tree.map(np.array_equal, jaxprune.mask_of(restored.opt_state), mask))
    assert np.all(pruned_entries(out.state.params, mask) == 0.0)
    assert np.all(pruned_entries(restored.params, mask) == 0.0)


def test_fit_under_a_mask_on_eight_devices_keeps_zeros(tmp_path):
    model = TinyCNN(1, 8, 4, rngs=nnx.Rngs(0))
    mask = magnitude_mask(model, 0.5)
    state = create_train_state(model, optax.adam(1e-2), mask=mask)
    out = fit(
        state,
        TRAIN,
        workdir=str(tmp_path),
        batch_size=16,
        steps=6,
        parallel=Parallel(mesh=make_mesh(8)),
        logging=Logging(progress=False),
    )
    assert np.all(pruned_entries(out.state.params, mask) == 0.0)
    assert jaxprune.mask_of(out.state.opt_state)["conv"]["kernel"].sharding.is_fully_replicated


def test_mask_files_round_trip_and_refuse_other_models(tmp_path):
    model = TinyMLP(16, 32, 4, rngs=nnx.Rngs(0))
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    mask = magnitude_mask(model)
    file = save_mask(tmp_path, mask)
    loaded = load_mask(tmp_path, params)
    assert jax.tree.structure(loaded) == jax.tree.structure(mask)
    assert jax.tree.all(jax.tree.map(np.array_equal, loaded, mask))
    assert loaded["hidden"]["bias"].shape == ()  # stand-ins stay stand-ins
    other = nnx.as_pure(nnx.state(TinyMLP(16, 8, 4, rngs=nnx.Rngs(0)), nnx.Param))
    with pytest.raises(ValueError, match="shape"):
        load_mask(file, other)
    cnn = nnx.as_pure(nnx.state(TinyCNN(1, 8, 4, rngs=nnx.Rngs(0)), nnx.Param))
    with pytest.raises(ValueError, match="missing .*'conv/kernel'"):
        load_mask(file, cnn)
    with pytest.raises(FileNotFoundError, match="no mask file"):
        load_mask(tmp_path / "nope.npz", params)
    # The file is plain numpy.
    with np.load(file) as raw:
        assert raw["hidden/kernel"].dtype == bool and jnp.shape(raw["out/bias"]) == ()


class Stop(Exception):
    """Stands in for a crash."""


def test_rigl_steps_told_by_the_host_train_as_the_devices_schedule():
    # fit passes rewire=tx.rewires_at(t) to the step (two programs): the same training
    # as the one program that tests the step count on the device.
    model = TinyCNN(1, 8, 4, rngs=nnx.Rngs(0))
    tx = jaxprune.rigl(optax.adam(1e-2), 0.5, end_step=18, update_every=4, key=jax.random.key(1))
    device = host = create_train_state(model, tx)
    step = make_train_step()
    for t in range(10):
        batch = {"x": TRAIN.x[16 * t : 16 * t + 16], "y": TRAIN.y[16 * t : 16 * t + 16]}
        device, _ = step(device, batch)
        host, _ = step(host, batch, rewire=tx.rewires_at(t))
    assert step._cache_size() == 3  # programs: no flag, False, True
    assert not np.array_equal(  # rewired at steps 4 and 8
        jaxprune.mask_of(create_train_state(model, tx).opt_state)["conv"]["kernel"],
        jaxprune.mask_of(host.opt_state)["conv"]["kernel"],
    )
    for a, b in zip(jax.tree.leaves(device.arrays()), jax.tree.leaves(host.arrays())):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_fit_under_rigl_changes_the_mask_and_resumes_bit_for_bit(tmp_path):
    # RigL's state holds a typed PRNG key and a changing mask: both must survive a resume.
    model = TinyCNN(1, 8, 4, rngs=nnx.Rngs(0))
    tx = jaxprune.rigl(optax.adam(1e-2), 0.5, end_step=18, update_every=4, key=jax.random.key(1))
    kwargs = dict(batch_size=16, steps=20, checkpoints=Checkpointing(every=3))
    kwargs |= dict(parallel=Parallel(mesh=make_mesh(1)), logging=Logging(progress=False))
    reference = fit(create_train_state(model, tx), TRAIN, workdir=str(tmp_path / "ref"), **kwargs)
    initial = jaxprune.mask_of(create_train_state(model, tx).opt_state)
    final = jaxprune.mask_of(reference.state.opt_state)
    assert not np.array_equal(initial["conv"]["kernel"], final["conv"]["kernel"])
    assert float(jaxprune.sparsity(final)) == pytest.approx(0.5, abs=0.01)
    assert np.all(pruned_entries(reference.state.params, final) == 0.0)

    def crash_after_eleven(*args, **kw):
        for i, batch in enumerate(batches(*args, **kw)):
            if kw["epoch"] == 1 and i == 1:  # 10 steps per epoch: before step 12
                raise Stop
            yield batch

    with pytest.raises(Stop):
        fit(
            create_train_state(model, tx),
            TRAIN,
            workdir=str(tmp_path / "run"),
            batches=crash_after_eleven,
            **kwargs,
        )
    resumed = fit(create_train_state(model, tx), TRAIN, workdir=str(tmp_path / "run"), **kwargs)
    for a, b in zip(
        jax.tree.leaves(resumed.state.arrays()), jax.tree.leaves(reference.state.arrays())
    ):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)
