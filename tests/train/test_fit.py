"""`fit`: run directory, reproducibility, resume, NaN stop, named checkpoints."""

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from helpers import Crash, crashing_at

from jaxprune.data import batches
from jaxprune.train import (
    Checkpointing,
    Evaluation,
    Logging,
    Parallel,
    create_train_state,
    fit,
    make_mesh,
    read_metrics,
    restore_checkpoint,
)
from jaxprune.train.testing import TinyCNN, synthetic_dataset

TRAIN = synthetic_dataset(200, (16, 1), 4, seed=0)  # 200 // 16 = 12 steps per epoch
TEST = synthetic_dataset(70, (16, 1), 4, seed=1)
TX = optax.adam(1e-2)  # One object: the step compiles once per fit call, not per state.


def fresh(seed=0, tx=TX):
    return create_train_state(TinyCNN(1, 4, 4, rngs=nnx.Rngs(seed)), tx, seed=seed)


def noise(rng, x):
    return x + 0.1 * jax.random.normal(rng, x.shape)


def run(workdir, state=None, **overrides):
    """`fit` with this file's settings; an option group given as a dict changes those fields."""
    kwargs = dict(
        workdir=str(workdir),
        batch_size=16,
        steps=30,
        seed=0,
        eval=Evaluation(data=TEST, every=10),
        logging=Logging(every=4, progress=False),
        checkpoints=Checkpointing(every=7),
        augment=noise,
        parallel=Parallel(mesh=make_mesh(1)),
        config={"model": "tiny_cnn"},
    )
    for name, value in overrides.items():
        kwargs[name] = dataclasses.replace(kwargs[name], **value) if type(value) is dict else value
    return fit(fresh() if state is None else state, TRAIN, **kwargs)


def leaves(state):
    return [np.asarray(x) for x in jax.tree.leaves((state.params, state.model_state))]


def assert_bitwise_equal(a, b):
    for x, y in zip(leaves(a), leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def metrics_text(workdir):
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return f.read()


def poisoned_at(step):
    """Batches whose step-`step` batch holds a NaN (the update that makes step+1)."""
    seen = [0]

    def poisoned(*args, **kwargs):
        for batch in batches(*args, **kwargs):
            if seen[0] == step:
                batch = {"x": np.full_like(batch["x"], np.nan), "y": batch["y"]}
            seen[0] += 1
            yield batch

    return poisoned


def test_fit_writes_config_metrics_checkpoints_and_results(tmp_path):
    out = run(tmp_path)
    assert int(out.state.step) == 30
    records = read_metrics(tmp_path)
    train = [r["step"] for r in records if r["split"] == "train"]
    test = [r["step"] for r in records if r["split"] == "test"]
    assert train == [4, 8, 12, 16, 20, 24, 28, 30]
    assert test == [0, 10, 20, 30]
    assert all(r["count"] == 70 for r in records if r["split"] == "test")
    with open(tmp_path / "config.json") as f:
        config = json.load(f)
    assert config["config"] == {"model": "tiny_cnn"}
    assert config["fit"]["batch_size"] == 16 and config["fit"]["steps"] == 30
    with open(tmp_path / "results.json") as f:
        results = json.load(f)
    assert results["eval"]["test"] == [r for r in records if r["split"] == "test"][-1]
    assert results["train"]["step"] == 30 and results["timing"]["examples_per_s"] > 0
    assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [21, 28, 30]
    first, last = records[1]["loss"], results["train"]["loss"]
    assert last < first  # it learns


def test_same_seed_gives_the_same_numbers_and_another_seed_does_not(tmp_path):
    a = run(tmp_path / "a", steps=12)
    b = run(tmp_path / "b", steps=12)
    assert metrics_text(tmp_path / "a") == metrics_text(tmp_path / "b")
    assert_bitwise_equal(a.state, b.state)
    run(tmp_path / "c", steps=12, seed=1)
    assert metrics_text(tmp_path / "a") != metrics_text(tmp_path / "c")


@pytest.mark.parametrize("crash_step", [3, 15, 22])
def test_an_interrupted_fit_resumes_to_the_uninterrupted_result(tmp_path, crash_step):
    reference = run(tmp_path / "ref")
    with pytest.raises(Crash):
        run(tmp_path / "run", batches=crashing_at(crash_step))
    resumed = run(tmp_path / "run")
    assert_bitwise_equal(resumed.state, reference.state)
    assert metrics_text(tmp_path / "run") == metrics_text(tmp_path / "ref")
    again = run(tmp_path / "run")  # a finished run: nothing to do, nothing duplicated
    assert_bitwise_equal(again.state, reference.state)
    assert metrics_text(tmp_path / "run") == metrics_text(tmp_path / "ref")
    assert again.results["eval"] == reference.results["eval"]
    # Timing covers the training kept, over the segments: every one of the 30 steps' 16
    # examples once; a rerun with nothing to do reports the finished run's timing.
    for out in (reference, resumed, again):
        timing = out.results["timing"]
        assert timing["examples_per_s"] * timing["wall_s"] == pytest.approx(30 * 16)
    assert again.results["timing"] == resumed.results["timing"]


def test_a_nan_loss_stops_the_run_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 17;.* good one is step 14"):
        run(tmp_path, batches=poisoned_at(16), logging=dict(every=100))
    steps = sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))
    assert steps[-1] == 14  # 21 would have held NaN parameters
    last = restore_checkpoint(tmp_path, fresh(), 14)
    assert all(np.isfinite(x).all() for x in leaves(last))
    assert max(r["step"] for r in read_metrics(tmp_path)) <= 16


def nan_update_at(count):
    """An optax transform that turns the update number `count` (0-based) into NaNs."""

    def init(params):
        return jnp.zeros((), jnp.int32)

    def update(updates, state, params=None):
        poison = jnp.where(state == count, jnp.nan, 0.0)
        return jax.tree.map(lambda u: u + poison, updates), state + 1

    return optax.GradientTransformation(init, update)


def test_non_finite_parameters_are_never_checkpointed(tmp_path):
    state = fresh(tx=optax.chain(optax.adam(1e-2), nan_update_at(13)))
    # The loss of update 14 is finite (computed before it); its parameters are not.
    with pytest.raises(FloatingPointError, match=r"parameters are not finite after step 14"):
        run(tmp_path, state=state, logging=dict(every=100))
    assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints"))[-1] == 7


def test_a_rerun_with_another_config_is_refused(tmp_path):
    run(tmp_path, steps=4)
    with pytest.raises(ValueError, match=r"different config \(differs at \['fit.batch_size'\]"):
        run(tmp_path, steps=4, batch_size=8)


def test_epochs_and_a_named_rewind_point(tmp_path):
    out = run(
        tmp_path, steps=None, epochs=2, checkpoints=dict(keep={"rewind": 5}, every=100, keep_last=1)
    )
    assert int(out.state.step) == 24
    assert sorted(int(s) for s in os.listdir(tmp_path / "checkpoints")) == [5, 24]
    rewound = restore_checkpoint(tmp_path, fresh(), "rewind")
    assert int(rewound.step) == 5
    five = run(tmp_path / "five", steps=5)
    assert_bitwise_equal(rewound, five.state)


def test_fit_starts_at_a_rewound_states_step(tmp_path):
    rewound = run(tmp_path / "a", steps=5).state
    cont = run(tmp_path / "b", state=rewound, steps=30)
    full = run(tmp_path / "c", steps=30)
    assert_bitwise_equal(cont.state, full.state)
    assert read_metrics(tmp_path / "b")[0]["step"] == 5


def test_fit_on_eight_devices_follows_one_device(tmp_path):
    one = run(tmp_path / "one", steps=12)
    eight = run(tmp_path / "eight", steps=12, parallel=dict(mesh=make_mesh(8)))
    for a, b in zip(read_metrics(tmp_path / "one"), read_metrics(tmp_path / "eight"), strict=True):
        assert (a["step"], a["split"]) == (b["step"], b["split"])
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5)
    for x, y in zip(leaves(one.state), leaves(eight.state)):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)


def test_fit_argument_errors_say_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="exactly one of steps or epochs"):
        run(tmp_path, steps=None)
    with pytest.raises(ValueError, match="exceeds the 200 training examples"):
        run(tmp_path, batch_size=256)
    for bad in (0, -5, 2.5):
        with pytest.raises(ValueError, match=f"batch_size must be a positive integer, got {bad}"):
            run(tmp_path, batch_size=bad)
    for bad in (0, -3):
        with pytest.raises(ValueError, match=f"steps={bad} leaves nothing to train"):
            run(tmp_path, steps=bad)
    with pytest.raises(ValueError, match=r"epochs=0 \(0 steps\) leaves nothing"):
        run(tmp_path, steps=None, epochs=0)
    if len(jax.devices()) >= 8:
        with pytest.raises(ValueError, match="batch_size=12 is not divisible by the 8 devices"):
            run(tmp_path, batch_size=12, parallel=dict(mesh=make_mesh(8)))
    other = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("batch",))
    with pytest.raises(ValueError, match="axes \\('batch',\\); batches are split along"):
        run(tmp_path, parallel=dict(mesh=other))
    assert not any(tmp_path.iterdir())  # nothing written
    with pytest.raises(ValueError, match="eval split name 'train'"):
        run(tmp_path, eval=dict(data={"train": TEST}))
