"""Masks on every kind of tree: apply, check, count, report, pack/unpack."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from trees import linen_params, mlp_dict, mlp_list, nnx_model

import jaxprune


def _nnx_states():
    from flax import nnx

    model = nnx_model()
    wrapped = nnx.state(model, nnx.Param)
    return wrapped, nnx.as_pure(wrapped)


def _trees():
    wrapped, pure = _nnx_states()
    return {
        "dict": mlp_dict(),
        "list": mlp_list(),
        "linen": linen_params(),
        "nnx_wrapped": wrapped,
        "nnx_pure": pure,
    }


@pytest.mark.parametrize("kind", ["dict", "list", "linen", "nnx_wrapped", "nnx_pure"])
def test_mask_has_the_params_structure_and_apply_zeroes_exactly(kind):
    params = _trees()[kind]
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.75)
    assert jax.tree.structure(mask) == jax.tree.structure(params)
    pruned = jaxprune.apply_mask(params, mask)
    assert jax.tree.structure(pruned) == jax.tree.structure(params)
    for p, q, m in zip(jax.tree.leaves(params), jax.tree.leaves(pruned), jax.tree.leaves(mask)):
        assert q.dtype == p.dtype and q.shape == p.shape
        if m.ndim == 0:  # not prunable: untouched (biases, norms)
            assert p.ndim < 2
            np.testing.assert_array_equal(q, p)
        else:
            assert p.ndim >= 2
            q, m, p = np.asarray(q), np.asarray(m), np.asarray(p)
            assert (q[~m] == 0).all() and not np.signbit(q[~m]).any()
            np.testing.assert_array_equal(q[m], p[m])
    report = jaxprune.sparsity_report(mask)
    assert abs(report.sparsity - float(jaxprune.sparsity(mask))) < 1e-6
    assert all(l.kept == jaxprune.keep_count(l.size, 0.75) for l in report.leaves)


def test_nnx_wrapped_mask_applies_to_pure_params_and_back():
    wrapped, pure = _nnx_states()
    mask_w = jaxprune.topk_mask(jaxprune.scores.magnitude(wrapped), 0.5)
    mask_p = jaxprune.topk_mask(jaxprune.scores.magnitude(pure), 0.5)
    chex.assert_trees_all_equal(jax.tree.leaves(mask_w), jax.tree.leaves(mask_p))
    out = jaxprune.apply_mask(pure, mask_w)
    assert jax.tree.structure(out) == jax.tree.structure(pure)
    out = jaxprune.apply_mask(wrapped, mask_p)
    assert jax.tree.structure(out) == jax.tree.structure(wrapped)


def test_dense_mask_and_sparsity():
    params = mlp_dict()
    mask = jaxprune.dense_mask(params)
    assert float(jaxprune.sparsity(mask)) == 0.0
    assert mask["layers_0"]["bias"].shape == () and mask["layers_0"]["kernel"].all()
    mask["layers_0"]["kernel"] = mask["layers_0"]["kernel"].at[:10].set(False)
    expected = 10 * 16 / (320 + 192 + 48)
    assert abs(float(jaxprune.sparsity(mask)) - expected) < 1e-6
    assert abs(float(jax.jit(jaxprune.sparsity)(mask)) - expected) < 1e-6


def test_report_table_and_dict():
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(mlp_dict()), 0.9)
    report = jaxprune.sparsity_report(mask)
    text = str(report)
    assert "layers_0/kernel" in text and "total" in text and "90.00%" in text
    d = report.to_dict()
    assert d["size"] == 560 and d["kept"] == sum(r["kept"] for r in d["leaves"])
    assert [r["path"] for r in d["leaves"]] == [f"layers_{i}/kernel" for i in range(3)]


def test_check_mask_names_the_first_differing_path():
    params = mlp_dict()
    mask = jaxprune.dense_mask(params)
    other = jaxprune.dense_mask(mlp_dict(sizes=(20, 16, 4)))
    with pytest.raises(ValueError, match="'layers_2/bias'"):
        jaxprune.apply_mask(params, other)
    del mask["layers_1"]
    with pytest.raises(ValueError, match="'layers_1/bias'"):
        jaxprune.apply_mask(params, mask)


def test_check_mask_names_shape_and_dtype_errors():
    params = mlp_dict()
    mask = jaxprune.dense_mask(params)
    mask["layers_1"]["kernel"] = jnp.ones((16, 13), bool)
    with pytest.raises(ValueError, match=r"'layers_1/kernel' has shape \(16, 13\).*\(16, 12\)"):
        jaxprune.apply_mask(params, mask)
    mask["layers_1"]["kernel"] = jnp.ones((16, 12), jnp.float32)
    with pytest.raises(TypeError, match="'layers_1/kernel' has dtype float32"):
        jaxprune.apply_mask(params, mask)
    ints = {"w": jnp.ones((3, 3), jnp.int32)}
    with pytest.raises(TypeError, match="'w' has dtype int32"):
        jaxprune.apply_mask(ints, {"w": jnp.ones((3, 3), bool)})
    with pytest.raises(ValueError, match="Nothing to prune"):
        jaxprune.apply_mask({"b": jnp.ones(3)}, {"b": jnp.ones((), bool)})
    mask = jaxprune.dense_mask(params)
    mask["layers_1"]["bias"] = jnp.zeros((), bool)  # "prune it all" is a full-shaped mask
    with pytest.raises(ValueError, match=r"'layers_1/bias' is a 0-d False.*shape \(12,\)"):
        jaxprune.apply_mask(params, mask)


@given(
    st.lists(st.tuples(st.integers(1, 9), st.integers(1, 17)), min_size=1, max_size=4),
    st.integers(0, 1000),
)
def test_pack_unpack_round_trip(shapes, seed):
    rng = np.random.default_rng(seed)
    params = {
        f"l{i}": {"kernel": jnp.zeros(s), "bias": jnp.zeros(s[1])} for i, s in enumerate(shapes)
    }
    mask = {
        k: {"kernel": jnp.asarray(rng.random(v["kernel"].shape) < 0.3), "bias": jnp.ones((), bool)}
        for k, v in params.items()
    }
    packed = jaxprune.pack_mask(mask)
    for k, s in zip(params, shapes):
        assert packed[k]["kernel"].dtype == jnp.uint8
        assert packed[k]["kernel"].shape == (-(-s[0] * s[1] // 8),)
    chex.assert_trees_all_equal(jaxprune.unpack_mask(packed, params), mask)
    shapes_only = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    chex.assert_trees_all_equal(jaxprune.unpack_mask(packed, shapes_only), mask)


def test_unpack_into_nnx_state_and_wrong_size_error():
    wrapped, _ = _nnx_states()
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(wrapped), 0.5)
    back = jaxprune.unpack_mask(jaxprune.pack_mask(mask), wrapped)
    assert jax.tree.structure(back) == jax.tree.structure(wrapped)
    chex.assert_trees_all_equal(jax.tree.leaves(back), jax.tree.leaves(mask))
    params = mlp_dict()
    packed = jaxprune.pack_mask(jaxprune.dense_mask(params))
    packed["layers_0"]["kernel"] = packed["layers_0"]["kernel"][:3]
    with pytest.raises(ValueError, match="'layers_0/kernel'"):
        jaxprune.unpack_mask(packed, params)


def test_masks_can_be_donated():
    # Every stand-in is its own buffer, so a mask can be donated to a jitted function.
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(mlp_dict()), 0.5)
    buffers = [m.unsafe_buffer_pointer() for m in jax.tree.leaves(mask)]
    assert len(set(buffers)) == len(buffers)
    out = jax.jit(lambda m: jax.tree.map(jnp.logical_not, m), donate_argnums=0)(mask)
    assert jax.tree.structure(out) == jax.tree.structure(mask)


def test_sparsity_of_float_weights_counts_their_nonzeros():
    # A tree of weights (not a mask), 90% of every kernel zeroed: sparsity counts the
    # nonzeros as sparsity_report does (it used to sum the weights' values: 1.0036).
    params = jaxprune.apply_mask(
        mlp_dict(), jaxprune.topk_mask(jaxprune.scores.magnitude(mlp_dict()), 0.9)
    )
    kernels = {k: {"kernel": v["kernel"]} for k, v in params.items()}
    assert float(jaxprune.sparsity(kernels)) == pytest.approx(
        jaxprune.sparsity_report(kernels).sparsity
    )
    assert float(jaxprune.sparsity(kernels)) == pytest.approx(0.9, abs=1e-3)
    assert float(jax.jit(jaxprune.sparsity)(params)) == pytest.approx(
        jaxprune.sparsity_report(params).sparsity
    )
