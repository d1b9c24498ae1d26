"""The transforms package's public line, its deprecated old paths, and its checks at build."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from trees import mlp_dict, nnx_model

import jaxprune


def test_the_public_names_are_the_flat_list():
    names = set(jaxprune.transforms.__all__)
    assert {"masked", "rigl", "mask_of", "replace_mask", "rewire_schedule"} <= names
    assert all(hasattr(jaxprune.transforms, n) for n in names)
    assert callable(jaxprune.transforms.masked)  # the function, not a module
    assert "register_mask_state" not in names


@pytest.mark.parametrize(
    "module, name",
    [("base", "zero_where"), ("dst", "rigl"), ("ste", "STEState"), ("inplace", "run_if")],
)
def test_old_module_paths_warn_and_still_resolve(module, name):
    with pytest.warns(DeprecationWarning, match=f"jaxprune.transforms.{module}"):
        value = getattr(getattr(jaxprune.transforms, module), name)
    assert callable(value)
    with pytest.warns(DeprecationWarning, match="register_mask_state"):
        assert jaxprune.transforms.register_mask_state(dict) is dict


def test_mask_of_an_nnx_optimizer_is_a_snapshot_of_plain_arrays():
    from flax import nnx

    model = nnx_model()
    params = nnx.state(model, nnx.Param)
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.5)
    tx = jaxprune.rigl(optax.sgd(0.1), mask=mask, end_step=100, update_every=1)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    before = jaxprune.mask_of(optimizer)
    wrapped = lambda x: isinstance(x, nnx.Variable)  # noqa: E731
    assert not any(wrapped(x) for x in jax.tree.leaves(before, is_leaf=wrapped))
    kept = [np.asarray(x).copy() for x in jax.tree.leaves(before)]

    def loss(model):
        return jnp.sum(model(jnp.ones((4, 20))) ** 2)

    for _ in range(3):
        optimizer.update(model, nnx.grad(loss)(model))
    after = jaxprune.mask_of(optimizer)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(after), kept))
    for x, k in zip(jax.tree.leaves(before), kept):
        np.testing.assert_array_equal(x, k)  # the snapshot did not move


def test_mask_of_and_replace_mask_find_the_field_by_name():
    params = {"w": jnp.ones((2, 2))}
    inner = jaxprune.masked(optax.sgd(0.1), jaxprune.dense_mask)
    # A multi_transform label called "mask" is not the mask.
    tx = optax.multi_transform({"mask": inner}, {"w": "mask"})
    state = tx.init(params)
    eye = {"w": jnp.eye(2, dtype=bool)}
    state = jaxprune.transforms.replace_mask(state, eye)
    np.testing.assert_array_equal(jaxprune.mask_of(state)["w"], eye["w"])
    with pytest.raises(ValueError, match="No jaxprune mask"):
        jaxprune.transforms.replace_mask(optax.sgd(0.1).init(params), eye)


def test_rewire_schedule_is_the_transforms_own():
    tx = jaxprune.rigl(optax.sgd(0.1), 0.5, end_step=10, update_every=4, key=jax.random.key(0))
    schedule = jaxprune.transforms.rewire_schedule(tx)
    assert [t for t in range(12) if schedule(t)] == [4, 8]
    assert jaxprune.transforms.rewire_schedule(jaxprune.masked(optax.sgd(0.1), {})) is None


@pytest.mark.parametrize("make", [jaxprune.rigl, jaxprune.set_training])
def test_dst_refuses_a_schedule_without_rewiring_when_built(make):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="begin_step=0, update_every=100 and end_step=100"):
        make(optax.sgd(0.1), 0.5, end_step=100, key=key)
    with pytest.raises(ValueError, match="begin_step=95, update_every=10 and end_step=100"):
        make(optax.sgd(0.1), 0.5, begin_step=95, update_every=10, end_step=100, key=key)
    make(optax.sgd(0.1), 0.5, update_every=99, end_step=100, key=key)  # step 99 rewires


def test_dst_refuses_a_sparsity_and_a_mask_together():
    params = mlp_dict()
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.8)
    with pytest.raises(ValueError, match="not both"):
        jaxprune.rigl(optax.sgd(0.1), 0.9, mask=mask, end_step=1000, key=jax.random.key(0))
    with pytest.raises(ValueError, match="not neither"):
        jaxprune.set_training(optax.sgd(0.1), end_step=1000, key=jax.random.key(0))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"sparsity": 95}, ValueError, "fraction of entries"),
        ({"sparsity": "0.9"}, TypeError, "must be a number"),
        ({"sparsity": 0.9, "distribution": "ERK"}, ValueError, "Unknown distribution"),
    ],
)
def test_sparsity_and_distribution_are_checked_when_built_not_at_init(kwargs, error, match):
    key = jax.random.key(0)
    sparsity = kwargs.pop("sparsity")
    with pytest.raises(error, match=match):
        jaxprune.rigl(optax.sgd(0.1), sparsity, end_step=1000, key=key, **kwargs)
    with pytest.raises(error, match=match):
        jaxprune.static_sparse(optax.sgd(0.1), sparsity, key=key, **kwargs)
