"""Pruning at initialisation: SNIP, GraSP, SynFlow scores and masks, against hand computations."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree
from trees import mlp_apply, mlp_dict

import jaxprune
from jaxprune.init_pruning import _kept_schedule as kept_schedule


def kept(mask):
    return sum(int(m.sum()) for m in jax.tree.leaves(mask) if m.ndim)


def classification_loss(params, batch, temperature=1.0):
    x, y = batch
    logits = mlp_apply(params, x) / temperature
    return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(len(y)), y])


BATCH = (jax.random.normal(jax.random.key(0), (32, 20)), jnp.arange(32) % 4)


# SNIP


def test_snip_mask_keeps_the_largest_abs_grad_times_weight():
    # loss = sum(x @ W): dL/dW[i, j] = sum over the batch of x[:, i], so |g * w| by hand.
    params = {"w": jnp.array([[0.5, -1.0, 2.0], [3.0, 0.1, -0.25]]), "b": jnp.ones(3)}
    x = jnp.array([[1.0, 2.0], [3.0, -1.0]])  # column sums 4 and 1
    loss = lambda p, x: jnp.sum(x @ p["w"] + p["b"])
    by_hand = np.abs(np.array([[4.0], [1.0]]) * np.asarray(params["w"]))  # [[2,4,8],[3,.1,.25]]
    s = jaxprune.scores.snip(loss, params, x, normalize=False)
    np.testing.assert_allclose(s["w"], by_hand)
    mask = jaxprune.snip_mask(loss, params, x, 0.5)
    np.testing.assert_array_equal(mask["w"], [[False, True, True], [True, False, False]])
    assert mask["b"].shape == ()


# GraSP


def test_grasp_hessian_gradient_product_equals_explicit_hessian_times_gradient():
    params = mlp_dict((20, 6, 4))
    for temperature in (1.0, 200.0):
        flat, unravel = ravel_pytree(params)
        loss = lambda f: classification_loss(unravel(f), BATCH, temperature)
        g = jax.jit(jax.grad(loss))(flat)
        hg = jax.jit(jax.hessian(loss))(flat) @ g  # the explicit Hessian, 178 x 178
        expected = unravel(flat * hg)
        s = jaxprune.scores.grasp(
            classification_loss, params, BATCH, temperature=temperature, prunable=".*"
        )
        for path in ("layers_0", "layers_1"):
            for leaf in ("kernel", "bias"):
                np.testing.assert_allclose(
                    s[path][leaf],
                    expected[path][leaf],
                    rtol=2e-3,
                    atol=2e-4 * float(jnp.max(jnp.abs(expected[path][leaf]))),
                )
        assert np.abs(np.asarray(s["layers_0"]["kernel"])).max() > 0


def test_grasp_takes_g_and_h_over_the_scored_weights_only():
    """As GraSP's code: with the kernels scored (the default), H_ww g_w, not (H g)_w."""
    params = mlp_dict((20, 6, 4))
    flat, unravel = ravel_pytree(params)
    loss = lambda f: classification_loss(unravel(f), BATCH, 1.0)
    kernels = {
        k: {"kernel": jnp.ones_like(v["kernel"]), "bias": 0 * v["bias"]} for k, v in params.items()
    }
    is_kernel = ravel_pytree(kernels)[0].astype(bool)
    g = jax.jit(jax.grad(loss))(flat)
    h = jax.jit(jax.hessian(loss))(flat)
    ww = flat * (h @ jnp.where(is_kernel, g, 0))  # H_ww g_w on the kernels
    full = flat * (h @ g)
    s = jaxprune.scores.grasp(classification_loss, params, BATCH, temperature=1.0)
    got = ravel_pytree(
        {k: {"kernel": v["kernel"], "bias": 0 * params[k]["bias"]} for k, v in s.items()}
    )[0]
    scale = float(jnp.abs(ww[is_kernel]).max())
    np.testing.assert_allclose(got[is_kernel], ww[is_kernel], rtol=2e-3, atol=2e-4 * scale)
    assert float(jnp.abs(full - ww)[is_kernel].max()) > 2e-2 * scale  # the biases' share
    assert all(v["bias"].shape == () for v in s.values())


def test_grasp_mask_removes_the_largest_minus_w_hg():
    params = mlp_dict()
    s = jaxprune.scores.grasp(classification_loss, params, BATCH)
    paper = np.concatenate([-np.ravel(s[p]["kernel"]) for p in sorted(s)])  # -w * Hg
    mask = jaxprune.grasp_mask(classification_loss, params, BATCH, 0.75)
    kept_flags = np.concatenate([np.ravel(mask[p]["kernel"]) for p in sorted(mask)])
    removed = paper[~kept_flags]
    assert len(removed) == round(0.75 * len(paper))
    assert removed.min() >= paper[kept_flags].max()  # every removed one beats every kept one
    assert all(mask[p]["bias"].shape == () for p in mask)


def test_grasp_temperature_goes_to_the_loss():
    params = mlp_dict()
    hot = jaxprune.scores.grasp(classification_loss, params, BATCH, temperature=200.0)
    cold = jaxprune.scores.grasp(classification_loss, params, BATCH, temperature=None)
    assert not np.allclose(hot["layers_0"]["kernel"], cold["layers_0"]["kernel"])
    plain = lambda p, b: classification_loss(p, b)
    none = jaxprune.scores.grasp(plain, params, BATCH, temperature=None)
    np.testing.assert_array_equal(none["layers_0"]["kernel"], cold["layers_0"]["kernel"])
    with pytest.raises(ValueError, match="temperature=None"):
        jaxprune.scores.grasp(plain, params, BATCH)
    for bad in (0.0, -1.0, float("nan"), True, "200"):
        with pytest.raises(ValueError, match="positive"):
            jaxprune.scores.grasp(classification_loss, params, BATCH, temperature=bad)
    for t in (np.float32(200.0), jnp.float32(200.0)):  # numpy / jax scalars are numbers
        s = jaxprune.scores.grasp(classification_loss, params, BATCH, temperature=t)
        np.testing.assert_allclose(s["layers_0"]["kernel"], hot["layers_0"]["kernel"], rtol=1e-6)


# SynFlow


def linear_net(params, x):
    return x @ params["w1"] @ params["w2"]


LINEAR = {
    "w1": jnp.array([[1.0, -2.0, 0.5], [3.0, 0.25, -1.0]]),
    "w2": jnp.array([[2.0, -1.0], [0.5, 4.0], [-3.0, 1.0]]),
}


def test_synflow_equals_the_sum_over_paths_of_products_of_abs_weights():
    w1, w2 = np.abs(np.asarray(LINEAR["w1"])), np.abs(np.asarray(LINEAR["w2"]))
    s1, s2 = np.zeros_like(w1), np.zeros_like(w2)
    for i, j, k in itertools.product(range(2), range(3), range(2)):  # every input-output path
        path = w1[i, j] * w2[j, k]
        s1[i, j] += path
        s2[j, k] += path
    s = jaxprune.scores.synflow(linear_net, LINEAR, (1, 2))  # no data: a shape
    np.testing.assert_allclose(s["w1"], s1, rtol=1e-6)
    np.testing.assert_allclose(s["w2"], s2, rtol=1e-6)
    # Conservation: every layer's scores sum to R, the total flow.
    np.testing.assert_allclose(s1.sum(), s2.sum())


def relu_mlp(params, x):
    return mlp_apply(params, x)


def zero_bias_mlp():
    return jax.tree.map(lambda x: x if x.ndim > 1 else jnp.zeros_like(x), mlp_dict())


def test_synflow_scales_with_a_layer_and_the_input_and_keeps_its_ranking():
    params = zero_bias_mlp()
    base = jaxprune.scores.synflow(relu_mlp, params, (1, 20))
    scaled = dict(
        params, layers_1=dict(params["layers_1"], kernel=3.0 * params["layers_1"]["kernel"])
    )
    wide_input = lambda p, x: relu_mlp(p, 5.0 * x)
    for fn, p, c in ((relu_mlp, scaled, 3.0), (wide_input, params, 5.0)):
        s = jaxprune.scores.synflow(fn, p, (1, 20))
        for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(base)):
            np.testing.assert_allclose(a, c * b, rtol=1e-5)
        for d in ("global", "uniform"):
            a, b = jaxprune.topk_mask(s, 0.8, d), jaxprune.topk_mask(base, 0.8, d)
            assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_synflow_in_float64_ranks_like_float32_and_survives_overflow():
    params = zero_bias_mlp()
    s32 = jaxprune.scores.synflow(relu_mlp, params, (1, 20))
    s64 = jaxprune.scores.synflow(relu_mlp, params, (1, 20), float64=True)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(s64))
    top = max(float(x.max()) for x in jax.tree.leaves(s64))
    assert 0.5 <= top < 1.0  # scaled by a power of two
    ratio = np.asarray(s32["layers_0"]["kernel"]) / np.asarray(s64["layers_0"]["kernel"])
    np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
    assert np.log2(ratio.flat[0]) == pytest.approx(round(np.log2(ratio.flat[0])), abs=1e-5)
    m32, m64 = jaxprune.topk_mask(s32, 0.9, "global"), jaxprune.topk_mask(s64, 0.9, "global")
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(m32), jax.tree.leaves(m64)))
    i32 = jaxprune.synflow_mask(relu_mlp, params, (1, 20), 0.9, rounds=10)
    i64 = jaxprune.synflow_mask(relu_mlp, params, (1, 20), 0.9, rounds=10, float64=True)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(i32), jax.tree.leaves(i64)))
    # Weights scaled by 2^43 in three layers: a flow 2^129 times larger, beyond float32.
    huge = jax.tree.map(lambda x: 2.0**43 * x, params)
    with pytest.raises(FloatingPointError, match="float64=True"):
        jaxprune.scores.synflow(relu_mlp, huge, (1, 20))
    big = jaxprune.scores.synflow(relu_mlp, huge, (1, 20), float64=True)
    for a, b in zip(jax.tree.leaves(big), jax.tree.leaves(s64)):
        np.testing.assert_allclose(a, b, rtol=1e-5)  # the same flow, up to 2^-e
    # ... and scaled by 2^-43: a flow 2^-129 times smaller, below float32's range, where
    # the smaller scores flush to 0 (an error, not a mask chosen by position).
    tiny = jax.tree.map(lambda x: 2.0**-43 * x, params)
    for fn in (
        lambda **kw: jaxprune.scores.synflow(relu_mlp, tiny, (1, 20), **kw),
        lambda **kw: jaxprune.synflow_mask(relu_mlp, tiny, (1, 20), 0.9, rounds=3, **kw),
    ):
        with pytest.raises(FloatingPointError, match="underflowed float32.*float64=True"):
            fn()
    small = jaxprune.scores.synflow(relu_mlp, tiny, (1, 20), float64=True)
    for a, b in zip(jax.tree.leaves(small), jax.tree.leaves(s64)):
        np.testing.assert_allclose(a, b, rtol=1e-5)


@pytest.mark.parametrize("score", ["snip", "grasp"])
def test_gradient_scores_refuse_nan_and_all_zero_scores(score):
    """NaN scores, or all 0 (nothing to rank), would make top-k keep entries by position."""
    fn = getattr(jaxprune.scores, score)
    x, y = BATCH
    with pytest.raises(FloatingPointError, match=f"{score}: a score is inf or NaN"):
        fn(classification_loss, mlp_dict(), (x.at[0, 0].set(jnp.nan), y))
    # zero input, zero biases: every activation is 0, so is every kernel's gradient
    zero = (jnp.zeros_like(x), y)
    params = {k: {**v, "bias": jnp.zeros_like(v["bias"])} for k, v in mlp_dict().items()}
    with pytest.raises(ValueError, match=f"{score}: every score is 0"):
        fn(classification_loss, params, zero)
    with pytest.raises(ValueError, match="every score is 0"):
        getattr(jaxprune, f"{score}_mask")(classification_loss, params, zero, 0.5)
    if score == "snip":  # under jit nothing can raise: normalised zeros stay 0, not NaN
        s = jax.jit(lambda b: fn(classification_loss, params, b))(zero)
        assert all(bool(jnp.all(v == 0)) for v in jax.tree.leaves(s) if v.ndim)


@pytest.mark.parametrize("distribution", ["global", "uniform", "erk"])
def test_iterative_synflow_keeps_exact_counts(distribution):
    params = mlp_dict((20, 16, 12, 4))
    mask = jaxprune.synflow_mask(
        relu_mlp, params, (1, 20), 0.9, rounds=20, distribution=distribution
    )
    n = sum(p["kernel"].size for p in params.values())
    assert kept(mask) == jaxprune.keep_count(n, 0.9)
    if distribution != "global":
        expected = jaxprune.layer_sparsities(params, 0.9, distribution)
        for path, s in expected.items():
            layer, leaf = path.split("/")
            assert int(mask[layer][leaf].sum()) == round((1 - s) * params[layer][leaf].size)
    assert all(mask[p]["bias"].shape == () for p in mask)


def test_one_round_of_synflow_is_one_shot_and_more_rounds_differ():
    params = mlp_dict((20, 16, 12, 4))
    one = jaxprune.synflow_mask(relu_mlp, params, (1, 20), 0.95, rounds=1)
    shot = jaxprune.topk_mask(jaxprune.scores.synflow(relu_mlp, params, (1, 20)), 0.95, "global")
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(shot)))
    many = jaxprune.synflow_mask(relu_mlp, params, (1, 20), 0.95)  # 100 rounds, the default
    assert kept(many) == kept(one)
    assert any(
        not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(many))
    )


@given(
    n=st.integers(1, 10**6),
    frac=st.floats(0.0, 1.0),
    rounds=st.integers(1, 120),
    schedule=st.sampled_from(["exponential", "linear"]),
)
def test_kept_schedule_never_grows_and_ends_at_k(n, frac, rounds, schedule):
    k = int(frac * n)
    plan = kept_schedule(n, k, rounds, schedule)
    assert len(plan) == rounds and plan[-1] == k
    assert all(n >= a >= b >= k for a, b in zip([n, *plan], plan))


def test_exponential_schedule_is_the_papers():
    plan = kept_schedule(10**6, 10**3, 100)
    assert plan[49] == round(10**6 * 10**-1.5)  # halfway, in log space
    assert plan[0] == round(10**6 * 10 ** (-3 / 100))


# Random and magnitude; what every mask function shares


def test_magnitude_and_random_masks():
    params = mlp_dict()
    mag = jaxprune.magnitude_mask(params, 0.9)
    expected = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.9, "global")
    assert all(
        np.array_equal(a, b) for a, b in zip(jax.tree.leaves(mag), jax.tree.leaves(expected))
    )
    rnd = jaxprune.random_mask(jax.random.key(0), params, 0.9)
    for name, layer in rnd.items():
        size = params[name]["kernel"].size
        assert int(layer["kernel"].sum()) == jaxprune.keep_count(size, 0.9)  # uniform
    other = jaxprune.random_mask(jax.random.key(1), params, 0.9)
    assert not np.array_equal(rnd["layers_0"]["kernel"], other["layers_0"]["kernel"])


def all_masks(params, sparsity, **kwargs):
    return {
        "snip": jaxprune.snip_mask(classification_loss, params, BATCH, sparsity, **kwargs),
        "grasp": jaxprune.grasp_mask(classification_loss, params, BATCH, sparsity, **kwargs),
        "synflow": jaxprune.synflow_mask(relu_mlp, params, (1, 20), sparsity, rounds=5, **kwargs),
        "magnitude": jaxprune.magnitude_mask(params, sparsity, **kwargs),
        "random": jaxprune.random_mask(jax.random.key(0), params, sparsity, **kwargs),
    }


def test_every_mask_prunes_kernels_only_and_honours_options():
    params = mlp_dict()
    for name, mask in all_masks(params, 0.8).items():
        jaxprune.check_mask(mask, params)
        assert all(mask[p]["bias"].shape == () for p in mask), name
        assert float(jaxprune.sparsity(mask)) == pytest.approx(0.8, abs=1e-3), name
    biases = all_masks(params, 0.5, prunable="bias$")  # 1-D leaves, when asked for
    for name, mask in biases.items():
        assert mask["layers_0"]["kernel"].shape == () and mask["layers_0"]["bias"].shape == (16,)
        assert kept(mask) == 16, name  # half of the 32 biases
    only_first = all_masks(params, 0.5, prunable="layers_0/kernel")
    for name, mask in only_first.items():
        assert mask["layers_1"]["kernel"].shape == (), name
        assert int(mask["layers_0"]["kernel"].sum()) == 160, name
    erk = jaxprune.layer_sparsities(params, 0.8, "erk")
    assert erk["layers_2/kernel"] < 0.7 < 0.8 < erk["layers_0/kernel"]
    for name, mask in all_masks(params, 0.8, distribution="erk").items():
        for path, s in erk.items():
            layer = path.split("/")[0]
            size = params[layer]["kernel"].size
            assert int(mask[layer]["kernel"].sum()) == round((1 - s) * size), name


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_every_mask_rejects_a_bad_sparsity(sparsity):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        all_masks(mlp_dict(), sparsity)


def test_bad_inputs_say_what_is_wrong():
    params = mlp_dict()
    for shape in ((), (1, 0), "20", (1, 2.5)):
        with pytest.raises(ValueError, match="input_shape"):
            jaxprune.synflow_mask(relu_mlp, params, shape, 0.5)
    with pytest.raises(ValueError, match="rounds"):
        jaxprune.synflow_mask(relu_mlp, params, (1, 20), 0.5, rounds=0)
    with pytest.raises(ValueError, match="schedule"):
        jaxprune.synflow_mask(relu_mlp, params, (1, 20), 0.5, schedule="cubic")
    with pytest.raises(TypeError, match="apply_fn"):
        jaxprune.scores.synflow("net", params, (1, 20))
    with pytest.raises(ValueError, match="Nothing to prune"):
        jaxprune.snip_mask(classification_loss, params, BATCH, 0.5, prunable="nothing")
    with pytest.raises(ValueError, match="distribution"):
        jaxprune.magnitude_mask(params, 0.5, distribution="layerwise")
