"""Orbax checkpoints: round trips, named points, corrupt-checkpoint fallback."""

import gc
import glob
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxprune.data import batches
from jaxprune.train import (
    Checkpointing,
    Checkpoints,
    CheckpointWarning,
    Logging,
    Parallel,
    create_train_state,
    fit,
    make_mesh,
    restore_checkpoint,
    train_step,
)
from jaxprune.train.testing import TinyCNN, synthetic_dataset

DS = synthetic_dataset(128, (16, 1), 4, seed=0)
TX = optax.chain(optax.clip(1.0), optax.adam(1e-2))  # One object: jit compiles once.


def fresh(seed=0):
    model = TinyCNN(1, 8, 4, rngs=nnx.Rngs(seed))
    return create_train_state(model, TX, seed=seed)


def trained(steps):
    state = fresh()
    for batch, _ in zip(batches(DS, 16, seed=0), range(steps)):
        state, _ = train_step(state, batch)
    return state


def assert_same(a, b):
    # Compare the arrays: two states built with separate optimizer objects have
    # different static `tx` fields, hence different tree structures.
    assert jax.tree.structure(a.arrays()) == jax.tree.structure(b.arrays())
    for x, y in zip(jax.tree.leaves(a.arrays()), jax.tree.leaves(b.arrays())):
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        np.testing.assert_array_equal(x, y)


def test_round_trip_is_exact_including_rng_batch_stats_and_optimizer(tmp_path):
    state = trained(3).replace(rng=jax.random.key(42))
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(3, state, {"note": [1.5, 2.0]})
    with Checkpoints(tmp_path) as ckpts:
        restored, extra = ckpts.restore(fresh(seed=1))
    assert_same(restored, state)
    assert extra == {"note": [1.5, 2.0], "names": []}
    # The restored state trains on exactly like the original.
    batch = next(batches(DS, 16, seed=5))
    assert_same(train_step(restored, batch)[0], train_step(state, batch)[0])


def test_old_checkpoints_rotate_but_named_points_stay(tmp_path):
    template = fresh()
    with Checkpoints(tmp_path, keep_last=2, keep={"rewind": 2}) as ckpts:
        for step in range(1, 7):
            ckpts.save(step, template.replace(step=jnp.int32(step)))
        ckpts.wait()
        assert ckpts.steps() == [2, 5, 6]
        assert ckpts.named() == {"rewind": 2}
        assert int(ckpts.restore(template, "rewind")[0].step) == 2
        assert int(ckpts.restore(template, 5)[0].step) == 5
    assert int(restore_checkpoint(tmp_path, template, "rewind").step) == 2
    assert int(restore_checkpoint(tmp_path, template).step) == 6


def test_keep_accepts_plain_steps(tmp_path):
    template = fresh()
    with Checkpoints(tmp_path, keep_last=1, keep={3}) as ckpts:
        for step in range(1, 6):
            ckpts.save(step, template.replace(step=jnp.int32(step)))
        assert ckpts.steps() == [3, 5]
        assert ckpts.named() == {"step_3": 3}


def test_missing_names_and_steps_are_explained(tmp_path):
    template = fresh()
    with Checkpoints(tmp_path, keep={"rewind": 1}) as ckpts:
        with pytest.raises(FileNotFoundError, match="no checkpoints in"):
            ckpts.restore(template)
        ckpts.save(1, template.replace(step=jnp.int32(1)))
        with pytest.raises(FileNotFoundError, match=r"no checkpoint named 'init'.*'rewind': 1"):
            ckpts.restore(template, "init")
        with pytest.raises(FileNotFoundError, match=r"no checkpoint at step 7.*steps: \[1\]"):
            ckpts.restore(template, 7)
    with pytest.raises(FileNotFoundError, match="no directory"):
        restore_checkpoint(tmp_path / "nope", template)


# Orbax restores in a short-lived asyncio loop. When one read fails (the damaged
# file), tensorstore reads still in flight finish after that loop is closed and
# report "Event loop is closed" as unraisable exceptions, and metadata reads that were
# never started are collected as never-awaited coroutines: noise, nothing lost.
ORBAX_STRAGGLERS = pytest.mark.filterwarnings(
    "ignore:(?s).*(Event loop is closed|coroutine object Store\\._get_array_metadatas)"
    ":pytest.PytestUnraisableExceptionWarning",
    "ignore:coroutine 'Store._get_array_metadatas' was never awaited:RuntimeWarning",
)


def settle():
    """Lets the stragglers above land inside the test that caused them."""
    time.sleep(0.3)
    gc.collect()


def biggest_data_file(step_dir):
    files = [f for f in glob.glob(f"{step_dir}/state/d/*") if os.path.isfile(f)]
    return max(files, key=os.path.getsize)


@ORBAX_STRAGGLERS
@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, damage):
    template = fresh()
    with Checkpoints(tmp_path, keep_last=3) as ckpts:
        for step in (1, 2):
            ckpts.save(step, trained(step))
    victim = biggest_data_file(tmp_path / "2")
    if damage == "truncate":
        os.truncate(victim, os.path.getsize(victim) // 2)
    else:
        os.remove(victim)
    with Checkpoints(tmp_path) as ckpts:
        with pytest.warns(CheckpointWarning, match="checkpoint 2 .* unreadable"):
            restored, _ = ckpts.restore_latest(template)
        assert ckpts.steps() == [1]
    settle()
    assert_same(restored, trained(1))
    assert os.path.isdir(tmp_path / "corrupt" / "2")  # kept for inspection, out of the way


def test_a_readable_checkpoint_of_another_state_is_refused_and_nothing_moves(tmp_path):
    """Another model (or optimizer) in the same directory: an error, not every healthy
    checkpoint set aside as corrupt and the run trained again over it."""
    with Checkpoints(tmp_path, keep_last=3) as ckpts:
        for step in (1, 2):
            ckpts.save(step, trained(step))
    wider = create_train_state(TinyCNN(1, 16, 4, rngs=nnx.Rngs(0)), TX, seed=0)
    with Checkpoints(tmp_path) as ckpts:
        with pytest.raises(ValueError, match="checkpoint 2 .* does not fit .*Nothing was moved"):
            ckpts.restore_latest(wider)
        assert ckpts.steps() == [1, 2]
        with pytest.raises(
            ValueError, match=r"it holds \S+/mean \(8,\) float32.*this state \S+/mean \(16,\)"
        ):
            ckpts.restore(wider, 1)
    assert not os.path.exists(tmp_path / "corrupt")


class Renamed(TinyCNN):
    """TinyCNN's shapes under other names: another model all the same."""

    def __init__(self, *args, rngs):
        super().__init__(*args, rngs=rngs)
        self.head = self.out
        del self.out


def test_a_checkpoint_of_the_same_shapes_under_other_names_is_refused_too(tmp_path):
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, trained(1))
    renamed = create_train_state(Renamed(1, 8, 4, rngs=nnx.Rngs(0)), TX, seed=0)
    with Checkpoints(tmp_path) as ckpts:
        with pytest.raises(ValueError, match=r"does not fit .*/out/kernel .*/head/kernel"):
            ckpts.restore_latest(renamed)
        assert ckpts.steps() == [1]
    assert not os.path.exists(tmp_path / "corrupt")


def test_restore_checkpoint_leaves_a_save_in_flight_alone(tmp_path):
    """Reading a run that is still training must not delete the temporary directory its
    writer is filling (the writer then failed)."""
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(1, trained(1))
    in_flight = tmp_path / "2.orbax-checkpoint-tmp"
    in_flight.mkdir()
    assert_same(restore_checkpoint(tmp_path, fresh(), "latest"), trained(1))
    assert in_flight.is_dir()


def test_restore_latest_returns_none_without_checkpoints(tmp_path):
    with Checkpoints(tmp_path) as ckpts:
        assert ckpts.restore_latest(fresh()) is None


def test_a_checkpoint_whose_contents_disagree_with_its_step_is_refused(tmp_path):
    template = fresh()
    with Checkpoints(tmp_path) as ckpts:
        ckpts.save(4, template.replace(step=jnp.int32(3)))
        with pytest.raises(ValueError, match="holds a state at step 3"):
            ckpts.restore(template, 4)


@ORBAX_STRAGGLERS
def test_fit_resumes_past_a_corrupt_latest_checkpoint_to_the_same_result(tmp_path):
    kwargs = dict(batch_size=16, steps=10, checkpoints=Checkpointing(every=4))
    kwargs |= dict(parallel=Parallel(mesh=make_mesh(1)), logging=Logging(progress=False))
    reference = fit(fresh(), DS, workdir=str(tmp_path / "ref"), **kwargs)
    fit(fresh(), DS, workdir=str(tmp_path / "run"), **kwargs)
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["10", "4", "8"]
    victim = biggest_data_file(tmp_path / "run" / "checkpoints" / "10")
    os.truncate(victim, os.path.getsize(victim) // 2)
    with pytest.warns(CheckpointWarning, match="checkpoint 10 .* unreadable"):
        resumed = fit(fresh(), DS, workdir=str(tmp_path / "run"), **kwargs)
    settle()
    assert_same(resumed.state, reference.state)
    ref_metrics = (tmp_path / "ref" / "metrics.jsonl").read_text()
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == ref_metrics
