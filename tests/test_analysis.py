"""jaxprune.analysis: interpolation, barriers, mask overlap and dead units."""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trees
from flax import nnx

from jaxprune import analysis


def _bits(x):
    x = np.asarray(x)
    return x.view(np.uint16 if x.dtype.itemsize == 2 else np.uint32)


def _pair(dtype=jnp.float32):
    a = trees.mlp_dict(seed=0)
    b = trees.mlp_dict(seed=1)
    # Signed zeros and an infinity: endpoints the naive formula does not return exactly.
    a["layers_0"]["bias"] = a["layers_0"]["bias"].at[0].set(-0.0).at[1].set(jnp.inf)
    b["layers_0"]["bias"] = b["layers_0"]["bias"].at[2].set(-0.0)
    return jax.tree.map(lambda x: x.astype(dtype), a), jax.tree.map(lambda x: x.astype(dtype), b)


# ----------------------------------------------------------------------------- interpolate


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_interpolate_returns_the_endpoints_bit_for_bit(dtype):
    a, b = _pair(dtype)
    for alpha, want in ((0.0, a), (1.0, b), (0, a), (1, b)):
        got = analysis.interpolate(a, b, alpha)
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            assert x.dtype == dtype
            np.testing.assert_array_equal(_bits(x), _bits(y))
    path = jax.jit(analysis.interpolate)(a, b, jnp.array([0.0, 0.5, 1.0]))
    for p, x, y in zip(jax.tree.leaves(path), jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(_bits(p[0]), _bits(x))
        np.testing.assert_array_equal(_bits(p[2]), _bits(y))


def test_interpolate_mixes_in_float32_and_rounds_once():
    a, b = {"w": jnp.array([1.0, 2.0], jnp.bfloat16)}, {"w": jnp.array([3.0, 6.0], jnp.bfloat16)}
    got = analysis.interpolate(a, b, 0.3)["w"]
    assert got.dtype == jnp.bfloat16
    want = 0.7 * np.array([1.0, 2.0], np.float32) + 0.3 * np.array([3.0, 6.0], np.float32)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jnp.asarray(want, jnp.bfloat16)))


def test_interpolate_nnx_state_wrapped_and_pure():
    graphdef, a = nnx.split(trees.nnx_model(0))
    _, b = nnx.split(trees.nnx_model(1))
    mid = analysis.interpolate(a, b, 0.5)
    assert jax.tree.structure(mid) == jax.tree.structure(a)
    nnx.merge(graphdef, mid)  # a State the model accepts
    for x, y, m in zip(jax.tree.leaves(a), jax.tree.leaves(b), jax.tree.leaves(mid)):
        np.testing.assert_allclose(m, (x + y) / 2, rtol=1e-6)
    for alpha, want in ((0.0, a), (1.0, b)):
        got = analysis.interpolate(nnx.as_pure(a), nnx.as_pure(b), alpha)
        for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(nnx.as_pure(want))):
            np.testing.assert_array_equal(_bits(x), _bits(y))


class _State(NamedTuple):
    params: dict
    step: jax.Array
    mask: dict


def test_a_1d_alpha_stacks_the_path_and_integer_leaves_come_from_a():
    a, b = _pair()
    sa = _State(a, jnp.array(5, jnp.int32), {"m": jnp.array([True, False])})
    sb = _State(b, jnp.array(9, jnp.int32), {"m": jnp.array([False, True])})
    alphas = jnp.linspace(0.0, 1.0, 7)
    path = analysis.interpolate(sa, sb, alphas)
    assert isinstance(path, _State)
    for i, alpha in enumerate(alphas):
        point = analysis.interpolate(sa, sb, alpha)
        for p, q in zip(jax.tree.leaves(path), jax.tree.leaves(point)):
            assert p.shape == (7, *q.shape) and p.dtype == q.dtype
            np.testing.assert_array_equal(p[i], q)
        assert int(point.step) == 5 and point.mask["m"].tolist() == [True, False]
    np.testing.assert_array_equal(path.step, np.full(7, 5))
    # The stacked path is what vmap over the scalar version gives.
    vmapped = jax.vmap(lambda t: analysis.interpolate(sa, sb, t))(alphas)
    for p, q in zip(jax.tree.leaves(path), jax.tree.leaves(vmapped)):
        np.testing.assert_array_equal(p, q)


def test_interpolate_names_the_first_differing_path():
    a, b = _pair()
    c = {**b, "extra": {"kernel": jnp.ones((2, 2))}}
    with pytest.raises(ValueError, match="'extra/kernel'"):
        analysis.interpolate(a, c, 0.5)
    d = {**b, "layers_1": {**b["layers_1"], "kernel": b["layers_1"]["kernel"].T}}
    with pytest.raises(ValueError, match=r"'layers_1/kernel'.*\(16, 12\).*\(12, 16\)"):
        analysis.interpolate(a, d, 0.5)
    e = jax.tree.map(lambda x: x.astype(jnp.bfloat16), b)
    with pytest.raises(ValueError, match="'layers_0/bias'.*float32.*bfloat16"):
        analysis.interpolate(a, e, 0.5)


def test_interpolate_rejects_bad_alphas():
    a, b = _pair()
    with pytest.raises(ValueError, match="scalar or a 1-d array"):
        analysis.interpolate(a, b, jnp.zeros((2, 2)))
    with pytest.raises(TypeError, match="alpha must be a number"):
        analysis.interpolate(a, b, "half")
    with pytest.raises(TypeError, match="alpha must be a number"):
        analysis.interpolate(a, b, True)


# ----------------------------------------------------------------------------- barrier


@pytest.mark.parametrize("reference", ["linear", "mean"])
def test_a_path_from_a_network_to_itself_has_barrier_zero(reference):
    a = trees.mlp_dict()
    path = analysis.interpolate(a, a, jnp.linspace(0, 1, 11))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 20)), jnp.float32)
    losses = jax.vmap(lambda p: jnp.mean(trees.mlp_apply(p, x) ** 2))(path)
    np.testing.assert_array_equal(losses, losses[0])  # every point is the network itself
    assert float(analysis.barrier(losses, reference=reference)) == 0.0


def test_barrier_matches_a_hand_example_where_the_references_differ():
    # Measured at alphas 0, 1/3, 2/3, 1.
    # linear: max(2 - 1/3, 4 - 2/3) = 10/3; mean: 4 - (0 + 1) / 2 = 3.5.
    assert math.isclose(float(analysis.barrier([0.0, 2.0, 4.0, 1.0])), 10 / 3, rel_tol=1e-6)
    assert float(analysis.barrier([0.0, 2.0, 4.0, 1.0], reference="mean")) == 3.5
    # linear: max(1 - 8/3, 3 - 4/3) = 5/3; mean: 3 - (4 + 0) / 2 = 1.
    assert math.isclose(float(analysis.barrier([4.0, 1.0, 3.0, 0.0])), 5 / 3, rel_tol=1e-6)
    assert float(analysis.barrier([4.0, 1.0, 3.0, 0.0], reference="mean")) == 1.0
    # Explicit alphas, unevenly spaced: linear max(2 - 0.25, 4 - 0.5) = 3.5.
    assert float(analysis.barrier([0.0, 2.0, 4.0, 1.0], [0.0, 0.25, 0.5, 1.0])) == 3.5
    assert float(analysis.barrier([0.0, 2.0, 1.0, 1.0], [0.0, 0.25, 0.5, 1.0])) == 1.75


def test_barrier_is_signed_and_batched():
    dip = jnp.array([[1.0, 0.5, 0.2, 1.0], [2.0, 2.0, 2.0, 2.0]])
    got = analysis.barrier(dip)
    np.testing.assert_allclose(got, [-0.5, 0.0])
    np.testing.assert_allclose(analysis.barrier(dip, reference="mean"), [-0.5, 0.0])
    assert jax.jit(analysis.barrier)(dip).shape == (2,)


def test_barrier_checks_its_arguments():
    with pytest.raises(ValueError, match="Did you mean 'mean'"):
        analysis.barrier([0.0, 1.0, 0.0], reference="Mean")
    with pytest.raises(ValueError, match="increase from 0 to 1"):
        analysis.barrier([0.0, 1.0, 0.0], [0.0, 0.7, 0.5])
    with pytest.raises(ValueError, match="increase from 0 to 1"):
        analysis.barrier([0.0, 1.0, 0.0], [0.1, 0.5, 1.0])
    with pytest.raises(ValueError, match="one entry per value"):
        analysis.barrier([0.0, 1.0, 0.0], [0.0, 1.0])
    with pytest.raises(ValueError, match="at least 3 points"):
        analysis.barrier([0.0, 1.0])


# ----------------------------------------------------------------------------- mask_overlap


def _random_mask(key, shapes, densities):
    keys = jax.random.split(key, len(shapes))
    return {
        f"layer_{i}": jax.random.bernoulli(k, d, s)
        for i, (k, s, d) in enumerate(zip(keys, shapes, densities))
    } | {"bias": jnp.array(True)}


def test_mask_overlap_of_a_mask_with_itself_is_one():
    mask = _random_mask(jax.random.key(0), [(30, 20), (20, 10)], [0.3, 0.5])
    r = analysis.mask_overlap(mask, mask)
    assert r.iou == 1.0 and set(r.per_layer) == {"layer_0", "layer_1"}  # the stand-in skipped
    assert all(l.iou == 1.0 and l.intersection == l.kept_a == l.union for l in r.per_layer.values())
    assert r.random_iou < 1.0
    text = str(r)
    assert "layer_0" in text and "total" in text and "1.0000" in text


def test_mask_overlap_of_random_masks_is_near_its_expectation():
    shapes, density = [(60, 50), (50, 40)], [0.2, 0.6]
    for seed in range(5):
        ka, kb = jax.random.split(jax.random.key(seed))
        a = _random_mask(ka, shapes, density)
        b = _random_mask(kb, shapes, density)
        r = analysis.mask_overlap(a, b)
        for path, l in r.per_layer.items():
            # Given the kept counts, |A & B| is hypergeometric: its spread bounds the IoU's.
            n, k1, k2 = l.size, l.kept_a, l.kept_b
            mean = k1 * k2 / n
            sd = math.sqrt(mean * (1 - k1 / n) * (n - k2) / (n - 1))
            assert abs(l.intersection - mean) < 4 * sd, (seed, path)
            assert l.random_iou == pytest.approx(mean / (k1 + k2 - mean))
            assert abs(l.iou - l.random_iou) < 4 * sd / (k1 + k2 - mean - 4 * sd)
        assert abs(r.iou - r.random_iou) < 0.02, seed
        assert r.iou < 0.5  # far from the 1 of a mask with itself


def test_mask_overlap_hand_example_and_errors():
    a = {"w": np.array([[True, True, True, False]]), "b": np.array(True)}
    b = {"w": np.array([[False, True, True, True]]), "b": np.array(True)}
    r = analysis.mask_overlap(a, b)
    layer = r.per_layer["w"]
    assert (layer.intersection, layer.union, layer.iou) == (2, 4, 0.5)
    # E|A & B| = 3 * 3 / 4 = 2.25; random IoU = 2.25 / (6 - 2.25) = 0.6.
    assert layer.random_iou == pytest.approx(0.6) and r.random_iou == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"'w'.*\(1, 4\).*\(4, 1\)"):
        analysis.mask_overlap(a, {**b, "w": b["w"].T})
    with pytest.raises(ValueError, match="'v'"):
        analysis.mask_overlap(a, {**b, "v": b["w"]})
    with pytest.raises(TypeError, match="boolean"):
        analysis.mask_overlap(a, {**b, "w": b["w"].astype(np.float32)})


# ----------------------------------------------------------------------------- dead units


def test_dead_unit_rate_dense_by_hand():
    h = np.array(
        [
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 2.0, 0.0],
            [0.0, 3.0, 0.0, -1.0],
        ]
    )
    r = analysis.dead_unit_rate(h)
    layer = r.per_layer["activations"]
    assert layer.units == 4
    assert float(layer.static) == 0.5  # units 0 and 3 never fire
    assert float(layer.dynamic) == pytest.approx(3 / 4)  # 3 of 4 units off on each example
    assert float(analysis.dead_unit_rate(h, threshold=1.5).static) == 0.5
    assert float(analysis.dead_unit_rate(h, threshold=-0.5).static) == 0.0


def test_dead_unit_rate_conv_and_the_weighted_total():
    conv = np.zeros((2, 3, 3, 2))
    conv[0, 1, 2, 0] = 1.0  # channel 0 fires at one position of example 0 only
    dense = np.array([[1.0, 0.0], [1.0, 0.0]])  # unit 1 dead
    r = analysis.dead_unit_rate({"conv": conv, "dense": dense})
    c, d = r.per_layer["conv"], r.per_layer["dense"]
    assert (c.units, float(c.static), float(c.dynamic)) == (2, 0.5, 0.75)
    assert (d.units, float(d.static), float(d.dynamic)) == (2, 0.5, 0.5)
    assert float(r.static) == 0.5 and float(r.dynamic) == pytest.approx(0.625)
    jitted = jax.jit(analysis.dead_unit_rate)({"conv": conv, "dense": dense})
    assert float(jitted.dynamic) == pytest.approx(0.625)
    assert "conv" in str(r) and "62.50%" in str(r)


def test_dead_unit_rate_checks_shapes():
    with pytest.raises(ValueError, match=r"'hidden'.*\(5,\)"):
        analysis.dead_unit_rate({"hidden": np.ones(5)})
    with pytest.raises(ValueError, match="no arrays"):
        analysis.dead_unit_rate({})


def test_random_keys_are_taken_from_a():
    a = {"w": jnp.ones(2), "key": jax.random.key(0)}
    b = {"w": jnp.zeros(2), "key": jax.random.key(1)}
    path = analysis.interpolate(a, b, jnp.linspace(0, 1, 3))
    want = jax.random.key_data(a["key"])
    assert all((jax.random.key_data(k) == want).all() for k in path["key"])
