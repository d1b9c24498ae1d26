"""Data parallelism on the 8 fake CPU devices that tests/conftest.py creates."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import PartitionSpec

from jaxprune.data import batches
from jaxprune.train import (
    create_train_state,
    evaluate,
    make_mesh,
    make_train_step,
    place_state,
    shard_batch,
    state_sharding,
)
from jaxprune.train.testing import TinyCNN, synthetic_dataset

DS = synthetic_dataset(256, (16, 1), 4, seed=0)


def trajectory(mesh, steps=12, rule=None):
    # BatchNorm makes the test stricter: its statistics need a cross-device mean.
    model = TinyCNN(1, 8, 4, rngs=nnx.Rngs(0))
    state = place_state(create_train_state(model, optax.sgd(0.1, 0.9), seed=0), mesh, rule)
    step = make_train_step(state_sharding=state_sharding(state, mesh, rule))
    losses = []
    for batch in batches(DS, 32, seed=0):
        state, metrics = step(state, shard_batch(batch, mesh))
        losses.append(float(metrics["loss"]))
        if len(losses) == steps:
            break
    return state, np.array(losses)


def test_eight_devices_follow_the_single_device_trajectory():
    assert jax.device_count() == 8, "tests/conftest.py should force 8 host devices"
    one_state, one = trajectory(make_mesh(1))
    eight_state, eight = trajectory(make_mesh(8))
    np.testing.assert_allclose(eight, one, rtol=2e-5, atol=1e-6)
    assert one[-1] < one[0]  # it trained, so the comparison means something
    kernel = eight_state.params["conv"]["kernel"]
    assert kernel.sharding.is_fully_replicated and len(kernel.sharding.device_set) == 8
    np.testing.assert_allclose(kernel, one_state.params["conv"]["kernel"], rtol=1e-4, atol=1e-6)
    place = lambda b: shard_batch(b, make_mesh(8))  # noqa: E731
    np.testing.assert_allclose(
        evaluate(eight_state, DS, batch_size=64, place=place)["loss"],
        evaluate(one_state, DS, batch_size=64)["loss"],
        rtol=1e-4,
    )


def test_a_sharding_rule_places_leaves_and_training_keeps_them():
    def rule(path, leaf):
        # The conv kernel (3, 1, 8) and its momentum: 8 features over 8 devices.
        return PartitionSpec(None, None, "data") if leaf.ndim == 3 else None

    state, losses = trajectory(make_mesh(8), steps=3, rule=rule)
    kernel = state.params["conv"]["kernel"]
    assert kernel.sharding.spec == PartitionSpec(None, None, "data")
    assert state.params["out"]["kernel"].sharding.is_fully_replicated
    _, reference = trajectory(make_mesh(1), steps=3)
    np.testing.assert_allclose(losses, reference, rtol=2e-5, atol=1e-6)


def test_batch_rows_are_split_over_the_data_axis():
    batch = shard_batch({"x": np.arange(16, dtype=np.float32).reshape(16, 1)}, make_mesh(8))
    shards = sorted(batch["x"].addressable_shards, key=lambda s: s.index[0].start)
    assert [s.data.shape for s in shards] == [(2, 1)] * 8
    np.testing.assert_array_equal(shards[3].data[:, 0], [6.0, 7.0])


def test_shard_batch_explains_an_indivisible_batch():
    with pytest.raises(ValueError, match="not divisible by the 8 devices"):
        shard_batch({"x": np.zeros((60, 2), np.float32)}, make_mesh(8))


TWO_HOSTS = """
import sys, jax, numpy as np
from jax.sharding import Mesh
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
from jaxprune.train import make_mesh, shard_batch
x = np.arange(16, dtype=np.float32)[:, None]
devices = np.asarray(jax.devices())
for mesh in (make_mesh(), Mesh(devices.reshape(4, 2), ("data", "model")),
             Mesh(devices.reshape(2, 4), ("model", "data"))):
    got = shard_batch({"x": x}, mesh)["x"]
    for s in got.addressable_shards:
        assert np.array_equal(np.asarray(s.data), x[s.index]), (mesh, s.index)
print("ok")
"""


def test_shard_batch_on_two_processes_whatever_the_mesh_layout(tmp_path):
    """Two processes of 4 CPU devices each (jax.distributed): every device gets its own
    rows of the global batch, with "data" the outer or the inner mesh axis."""
    import os
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        address = f"localhost:{sock.getsockname()[1]}"
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=4"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", TWO_HOSTS, address, str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (0, 1)
    ]
    outs = [p.communicate(timeout=240)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0 and out.strip().endswith("ok"), out[-2000:]


def test_make_mesh_rejects_too_many_devices():
    with pytest.raises(ValueError, match="asked for 9 devices but 8 exist"):
        make_mesh(9)
