"""Sparse export: BCOO kernels under an unchanged apply function, N:M compressed kernels,
MAC/byte counts, and masks packed to 1 bit in mask files and orbax checkpoints."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from trees import mlp_apply, mlp_dict

import jaxprune
from jaxprune import export

X = jax.random.normal(jax.random.key(1), (5, 20))


def _lenet(name="lenet300_100"):
    from flax import nnx

    from jaxprune import models

    graphdef, params = nnx.split(models.create(name, rngs=nnx.Rngs(0)), nnx.Param)
    return (lambda p, x: nnx.merge(graphdef, p)(x)), nnx.as_pure(params)


def test_bcoo_plain_jax_mlp_matches_the_dense_masked_network():
    params = mlp_dict()
    mask = jaxprune.magnitude_mask(params, 0.8)
    sp = export.to_bcoo(params, mask)
    assert isinstance(sp["layers_0"]["kernel"], jax.experimental.sparse.BCOO)
    assert sp["layers_0"]["bias"] is params["layers_0"]["bias"]
    assert sp["layers_0"]["kernel"].nse == int(mask["layers_0"]["kernel"].sum())
    want = mlp_apply(jaxprune.apply_mask(params, mask), X)
    np.testing.assert_allclose(export.sparse_apply(mlp_apply)(sp, X), want, rtol=1e-5, atol=1e-6)
    jitted = jax.jit(export.sparse_apply(mlp_apply))(sp, X)
    np.testing.assert_allclose(jitted, want, rtol=1e-5, atol=1e-6)
    # A transposed kernel stays sparse.
    t = export.sparse_apply(lambda p, x: x @ p["layers_0"]["kernel"].T.T)(sp, X)
    np.testing.assert_allclose(t, X @ sp["layers_0"]["kernel"].todense(), rtol=1e-5, atol=1e-6)


def test_bcoo_lenet_300_100_matches_the_dense_masked_network():
    apply, params = _lenet()
    mask = jaxprune.magnitude_mask(params, 0.9)
    x = jax.random.normal(jax.random.key(2), (3, 28, 28, 1))
    want = apply(jaxprune.apply_mask(params, mask), x)
    got = jax.jit(export.sparse_apply(apply))(export.to_bcoo(params, mask), x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_kernels_stay_dense_and_a_sparse_one_is_refused_by_name():
    apply, params = _lenet("lenet5")
    mask = jaxprune.magnitude_mask(params, 0.5)
    x = jax.random.normal(jax.random.key(2), (2, 28, 28, 1))
    with pytest.raises(NotImplementedError, match="conv_general_dilated.*Keep that leaf dense"):
        export.sparse_apply(apply)(export.to_bcoo(params, mask), x)
    sp = export.to_bcoo(params, mask, which=lambda path, leaf: leaf.ndim == 2)
    conv = sp["conv1"]["kernel"]
    assert not isinstance(conv, jax.experimental.sparse.BCOO)
    assert (np.asarray(conv)[~np.asarray(mask["conv1"]["kernel"])] == 0).all()
    want = apply(jaxprune.apply_mask(params, mask), x)
    np.testing.assert_allclose(export.sparse_apply(apply)(sp, x), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (4, 8)])
def test_nm_matmul_is_the_dense_masked_product(n, m):
    k1, k2 = jax.random.split(jax.random.key(0))
    # Small integers: every product and sum is exact in float32, so equality is exact.
    w = jax.random.randint(k1, (32, 6), -8, 8).astype(jnp.float32)
    x = jax.random.randint(k2, (7, 32), -8, 8).astype(jnp.float32)
    mask = jaxprune.nm_mask({"w": jax.random.normal(k1, w.shape)}, n, m)["w"]
    packed = export.to_nm(w, mask, n, m)
    assert packed.values.shape == (32 // m, n, 6) and packed.indices.dtype == jnp.uint8
    assert packed.shape == (32, 6)
    np.testing.assert_array_equal(export.nm_matmul(x, packed), x @ jnp.where(mask, w, 0))
    np.testing.assert_array_equal(jax.jit(export.nm_matmul)(x, packed), x @ (w * mask))
    xr = jax.random.normal(k2, (3, 32))
    np.testing.assert_allclose(export.nm_matmul(xr, packed), xr @ (w * mask), rtol=1e-5)


def test_to_nm_pads_sparse_groups_and_refuses_a_mask_that_is_not_n_m():
    w = jnp.arange(8.0).reshape(4, 2) + 1
    fewer = jnp.array([[1, 0], [0, 0], [0, 0], [0, 0]], bool)  # output 1 keeps nothing
    np.testing.assert_array_equal(
        export.nm_matmul(jnp.ones((1, 4)), export.to_nm(w, fewer, 2, 4)), [[1.0, 0.0]]
    )
    with pytest.raises(ValueError, match="keeps 3 of the 4 inputs 0..3 of output 0"):
        export.to_nm(w, jnp.array([[1, 0], [1, 0], [1, 0], [0, 0]], bool), 2, 4)
    with pytest.raises(ValueError, match="2-D"):
        export.to_nm(jnp.ones((3, 3, 4, 2)), jnp.ones((3, 3, 4, 2), bool), 2, 4)


def test_cost_report_hand_counts_a_small_mlp():
    params = mlp_dict()  # 20 -> 16 -> 12 -> 4
    mask = jaxprune.magnitude_mask(params, 0.75)
    report = export.cost_report(jax.jit(mlp_apply), params, mask, X[:2])  # batch of 2
    rows = {l.path: l for l in report.leaves}
    for i, (a, b) in enumerate([(20, 16), (16, 12), (12, 4)]):
        row = rows[f"layers_{i}/kernel"]
        kept = int(mask[f"layers_{i}"]["kernel"].sum())
        assert (row.macs, row.kept_macs) == (2 * a * b, 2 * kept)
        assert (row.nbytes, row.kept_nbytes) == (4 * a * b, 4 * kept)
    assert report.macs == 2 * (320 + 192 + 48) and report.kept == report.kept_nbytes // 4
    d = report.to_dict()
    assert (
        d["macs"] == report.macs
        and d["leaves"][0]["kept_macs"] == rows["layers_0/kernel"].kept_macs
    )
    assert "kept MACs" in str(report) and "kept MACs" not in str(jaxprune.sparsity_report(mask))
    assert "macs" not in jaxprune.sparsity_report(mask).to_dict()


def test_cost_report_hand_counts_a_small_conv_net():
    rng = np.random.default_rng(0)
    params = {
        "conv": jnp.asarray(rng.normal(size=(3, 3, 3, 4)), jnp.float32),  # HWIO
        "head": jnp.asarray(rng.normal(size=(6 * 6 * 4, 5)), jnp.float32),
    }

    def apply(p, x):
        h = jax.lax.conv_general_dilated(
            x, p["conv"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.relu(h).reshape(x.shape[0], -1) @ p["head"]

    mask = jaxprune.magnitude_mask(params, 0.5, distribution="uniform")
    report = export.cost_report(apply, params, mask, jnp.ones((1, 8, 8, 3)))
    conv, head = report.leaves
    assert conv.macs == 6 * 6 * 3 * 3 * 3 * 4  # out_h * out_w * k_h * k_w * c_in * c_out
    assert conv.kept_macs == conv.macs * conv.kept // conv.size == 6 * 6 * conv.kept
    assert head.macs == 144 * 5 and head.kept_macs == head.kept
    # The zoo's LeNet-5 (SAME first conv on 28x28): 28*28*5*5*1*6 and 10*10*5*5*6*16.
    apply, params = _lenet("lenet5")
    rows = export.cost_report(apply, params, jaxprune.dense_mask(params), jnp.ones((1, 28, 28, 1)))
    macs = {l.path: l.macs for l in rows.leaves}
    assert macs["conv1/kernel"] == 117_600 and macs["conv2/kernel"] == 240_000


def test_checkpoints_pack_masks_and_restore_old_unpacked_ones(tmp_path, monkeypatch):
    import optax
    import orbax.checkpoint as ocp
    from etils import epath
    from flax import nnx

    from jaxprune.train import Checkpoints, checkpoint, create_train_state
    from jaxprune.train.testing import TinyCNN

    model = TinyCNN(1, 8, 4, rngs=nnx.Rngs(0))
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    mask = jaxprune.magnitude_mask(params, 0.7)
    state = create_train_state(model, optax.sgd(0.1), mask=mask)
    with Checkpoints(tmp_path / "new", async_save=False) as ckpts:
        ckpts.save(0, state)
    handler = ocp.StandardCheckpointHandler()
    stored = handler.metadata(epath.Path(tmp_path / "new" / "0" / "state"))
    handler.close()
    arrays = [x for x in jax.tree.leaves(stored["opt_state"]) if len(x.shape)]
    assert not [x for x in arrays if np.dtype(x.dtype) == bool]  # masks: 1 bit per weight
    assert [x for x in arrays if np.dtype(x.dtype) == np.uint8]
    for saver in ("new", "old"):
        if saver == "old":  # a checkpoint written before packing
            monkeypatch.setattr(
                checkpoint, "_storable", functools.partial(checkpoint._storable, pack=False)
            )
            with Checkpoints(tmp_path / "old", async_save=False) as ckpts:
                ckpts.save(0, state)
            monkeypatch.undo()
        with Checkpoints(tmp_path / saver) as ckpts:
            restored, _ = ckpts.restore(state, 0)
        got = jaxprune.mask_of(restored.opt_state)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(jaxprune.mask_of(state.opt_state))):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(a, b)
