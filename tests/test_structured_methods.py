"""The one-shot structured methods: L1-norm filter scores and network slimming (bn_l1,
batch-norm scale scores, one global threshold)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxprune
from jaxprune import rebasin


def _net(v, x):
    """Two hidden layers, each scaled and shifted per unit like an eval-mode batch norm."""
    h = jnp.maximum((x @ v["w1"] + v["b1"]) * v["bn1"]["scale"] + v["bn1"]["bias"], 0)
    h = jnp.maximum((h @ v["w2"]) * v["bn2"]["scale"] + v["bn2"]["bias"], 0)
    return h @ v["w3"]


def _vars(seed=0):
    k = jax.random.split(jax.random.key(seed), 6)
    return {
        "w1": jax.random.normal(k[0], (5, 4)),
        "b1": jax.random.normal(k[1], (4,)),
        "bn1": {"scale": jnp.array([0.3, -1.5, 0.05, 0.8]), "bias": jax.random.normal(k[2], (4,))},
        "w2": jax.random.normal(k[3], (4, 3)),
        "bn2": {"scale": jnp.array([-0.1, 2.0, 0.4]), "bias": jax.random.normal(k[4], (3,))},
        "w3": jax.random.normal(k[5], (3, 2)),
    }


def _spec(v):
    return rebasin.permutation_spec(_net, v, jnp.ones((1, 5)))


def _group_of(spec, path):
    return spec.group_of(path, -1)


def test_filter_scores_are_the_l1_norms_of_each_units_own_kernel_slice():
    v = _vars()
    spec = _spec(v)
    scores = jaxprune.filter_scores(spec, v)
    g1, g2 = _group_of(spec, "w1"), _group_of(spec, "w2")
    # Only the layer's own output columns: not the bias, the norm or the next layer's rows.
    np.testing.assert_allclose(scores[g1], np.abs(np.asarray(v["w1"])).sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(scores[g2], np.abs(np.asarray(v["w2"])).sum(axis=0), rtol=1e-6)
    l2 = jaxprune.filter_scores(spec, v, norm="l2")
    np.testing.assert_allclose(l2[g1], np.linalg.norm(np.asarray(v["w1"]), axis=0), rtol=1e-6)


def test_filter_scores_of_a_conv_kernel_pool_its_window_and_inputs():
    def conv(v, x):
        h = jax.lax.conv_general_dilated(
            x, v["k1"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.maximum(h, 0).mean(axis=(1, 2)) @ v["w"]

    v = {
        "k1": jax.random.normal(jax.random.key(0), (3, 3, 2, 6)),
        "w": jax.random.normal(jax.random.key(1), (6, 3)),
    }
    spec = rebasin.permutation_spec(conv, v, jnp.ones((1, 8, 8, 2)))
    (name,) = spec.groups
    expected = np.abs(np.asarray(v["k1"])).reshape(-1, 6).sum(axis=0)
    np.testing.assert_allclose(jaxprune.filter_scores(spec, v)[name], expected, rtol=1e-6)


def test_filter_scores_of_a_residual_stream_sum_every_kernel_writing_into_it():
    def res(v, x):
        h = x @ v["w_in"]
        h = h + jnp.maximum(h @ v["a"], 0) @ v["b"]
        return h @ v["out"]

    shapes = {"w_in": (3, 4), "a": (4, 5), "b": (5, 4), "out": (4, 2)}
    keys = jax.random.split(jax.random.key(2), len(shapes))
    v = {n: jax.random.normal(k, shape) for k, (n, shape) in zip(keys, shapes.items())}
    spec = rebasin.permutation_spec(res, v, jnp.ones((1, 3)))
    stream = _group_of(spec, "w_in")
    expected = np.abs(np.asarray(v["w_in"])).sum(0) + np.abs(np.asarray(v["b"])).sum(0)
    np.testing.assert_allclose(jaxprune.filter_scores(spec, v)[stream], expected, rtol=1e-6)


def test_filter_scores_with_no_kernel_for_a_group_is_an_error():
    v = _vars()
    with pytest.raises(ValueError, match="filter_scores: no leaf of the groups"):
        jaxprune.filter_scores(_spec(v), v, which=r"^w1$")


def test_bn_l1_adds_penalty_times_sign_to_the_scales_and_nothing_elsewhere():
    v = _vars()
    v["bn2"]["scale"] = v["bn2"]["scale"].at[0].set(0.0)  # sign(0) = 0: no push at zero
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.25), v)
    tx = jaxprune.bn_l1(1e-2)
    state = tx.init(v)
    assert state == jaxprune.BnL1State()
    out, new_state = tx.update(grads, state, v)
    assert new_state == state
    for bn in ("bn1", "bn2"):
        expected = 0.25 + 1e-2 * np.sign(np.asarray(v[bn]["scale"]))
        np.testing.assert_array_equal(np.asarray(out[bn]["scale"]), expected.astype(np.float32))
        np.testing.assert_array_equal(out[bn]["bias"], grads[bn]["bias"])
    for leaf in ("w1", "b1", "w2", "w3"):
        np.testing.assert_array_equal(out[leaf], grads[leaf])


def test_bn_l1_chains_before_an_optimizer_under_jit():
    v = _vars()
    tx = optax.chain(jaxprune.bn_l1(0.5), optax.sgd(1.0))
    grads = jax.tree.map(jnp.zeros_like, v)
    updates, _ = jax.jit(tx.update)(grads, tx.init(v), v)
    np.testing.assert_allclose(updates["bn1"]["scale"], -0.5 * np.sign(v["bn1"]["scale"]))
    np.testing.assert_array_equal(updates["w1"], 0.0)


def test_bn_l1_checks_its_input():
    with pytest.raises(ValueError, match="penalty=-1"):
        jaxprune.bn_l1(-1)
    tx = jaxprune.bn_l1(1e-4)
    with pytest.raises(ValueError, match="needs the parameters"):
        tx.update({"s": jnp.ones(2)}, tx.init(None))


def test_slimming_prunes_the_smallest_abs_gamma_globally_with_exact_counts():
    v = _vars()
    spec = _spec(v)
    scores = jaxprune.bn_scale_scores(spec, v)
    g1, g2 = _group_of(spec, "w1"), _group_of(spec, "w2")
    np.testing.assert_allclose(scores[g1], np.abs(v["bn1"]["scale"]))
    np.testing.assert_allclose(scores[g2], np.abs(v["bn2"]["scale"]))
    mask = jaxprune.unit_mask(spec, scores, 4 / 7, "global", tree=v)
    # |gamma| over both layers: 0.3 1.5 0.05 0.8 | 0.1 2.0 0.4; 3 of 7 kept: 1.5, 0.8, 2.0.
    assert mask["bn1"]["scale"].tolist() == [False, True, False, True]
    assert mask["bn2"]["scale"].tolist() == [False, True, False]
    assert int(mask["bn1"]["scale"].sum() + mask["bn2"]["scale"].sum()) == 3
    small = jaxprune.slim(spec, v, mask)
    assert small["w1"].shape == (5, 2) and small["w2"].shape == (2, 1)


def test_slimming_prunes_coupled_leaves_all_zero():
    v = _vars()
    spec = _spec(v)
    mask = jaxprune.unit_mask(spec, jaxprune.bn_scale_scores(spec, v), 0.5, "global", tree=v)
    pruned = jaxprune.apply_mask(v, mask)
    gone1 = ~np.asarray(mask["bn1"]["scale"])
    gone2 = ~np.asarray(mask["bn2"]["scale"])
    assert gone1.any() and gone2.any()
    for leaf in (pruned["w1"], pruned["b1"][None], pruned["bn1"]["scale"][None]):
        assert np.all(np.asarray(leaf)[..., gone1] == 0)
    assert np.all(np.asarray(pruned["bn1"]["bias"])[gone1] == 0)
    assert np.all(np.asarray(pruned["w2"])[gone1, :] == 0)
    assert np.all(np.asarray(pruned["w2"])[:, gone2] == 0)
    assert np.all(np.asarray(pruned["bn2"]["bias"])[gone2] == 0)
    assert np.all(np.asarray(pruned["w3"])[gone2, :] == 0)
    x = jax.random.normal(jax.random.key(3), (7, 5))
    np.testing.assert_allclose(
        _net(jaxprune.slim(spec, v, mask), x), _net(pruned, x), rtol=1e-5, atol=1e-6
    )


def test_l1_filter_pruning_is_per_layer():
    v = _vars()
    spec = _spec(v)
    mask = jaxprune.unit_mask(spec, jaxprune.filter_scores(spec, v), 0.5, tree=v)
    assert int(mask["b1"].sum()) == 2 and int(mask["bn2"]["bias"].sum()) == round(0.5 * 3)
    kept = np.argsort(-np.abs(np.asarray(v["w1"])).sum(0))[:2]
    assert sorted(np.flatnonzero(np.asarray(mask["b1"])).tolist()) == sorted(kept.tolist())


def test_bn_scale_scores_of_a_group_without_a_scale_is_an_error():
    def mlp(v, x):
        return jnp.maximum(x @ v["w1"], 0) @ v["w2"]

    v = {"w1": jnp.ones((3, 4)), "w2": jnp.ones((4, 2))}
    spec = rebasin.permutation_spec(mlp, v, jnp.ones((1, 3)))
    with pytest.raises(ValueError, match="bn_scale_scores: no leaf of the groups .* scale"):
        jaxprune.bn_scale_scores(spec, v)


def test_bn_scale_scores_average_a_groups_scales():
    def res(v, x):
        h = (x @ v["w_in"]) * v["n0"]["scale"]
        h = h + (jnp.maximum(h @ v["a"], 0) @ v["b"]) * v["n1"]["scale"]
        return h @ v["out"]

    v = {
        "w_in": jnp.ones((3, 2)),
        "n0": {"scale": jnp.array([1.0, -3.0])},
        "a": jnp.ones((2, 2)),
        "b": jnp.ones((2, 2)),
        "n1": {"scale": jnp.array([0.5, 1.0])},
        "out": jnp.ones((2, 2)),
    }
    # The inner group `a` has no scale: name only the stream's scales and check the mean.
    spec = rebasin.permutation_spec(res, v, jnp.ones((1, 3)))
    stream = _group_of(spec, "w_in")
    with pytest.raises(ValueError, match="no leaf of the groups"):
        jaxprune.bn_scale_scores(spec, v)
    only = rebasin.PermutationSpec({stream: spec.groups[stream]}, dict(spec.shapes))
    np.testing.assert_allclose(jaxprune.bn_scale_scores(only, v)[stream], [0.75, 2.0])
