"""Exact top-k selection: counts, ties, distributions, within, N:M, random_like, errors."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import keep_count_reference, topk_reference
from trees import mlp_dict

import jaxprune
from jaxprune.select import _engine, _keys

DIMS = st.sampled_from([1, 2, 3, 5, 8, 13])
SPARSITY = st.one_of(
    st.sampled_from([0.0, 0.1, 0.2, 0.5, 0.9, 0.99]), st.floats(0.0, 0.999, allow_nan=False)
)


@st.composite
def score_trees(draw):
    """A dict of 1-3 2-D score leaves (often with heavy ties) plus a 1-D bias."""
    n = draw(st.integers(1, 3))
    ties = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    tree = {}
    for i in range(n):
        shape = (draw(DIMS), draw(DIMS))
        vals = rng.integers(0, 3, shape) if ties else rng.normal(size=shape)
        tree[f"l{i}"] = {"kernel": jnp.asarray(vals, jnp.float32), "bias": jnp.zeros(shape[1])}
    return tree


def kernels_of(tree):
    return [tree[k]["kernel"] for k in sorted(tree)]


TOPK_CASES = given(
    score_trees(),
    SPARSITY,
    st.sampled_from(["uniform", "global"]),
    st.sampled_from(["radix", "sort", "count"]),
    st.booleans(),
)


def check_topk_matches_reference(tree, sparsity, distribution, method, use_within):
    kernels = kernels_of(tree)
    within, cands = None, None
    if use_within:
        rng = np.random.default_rng(len(kernels))
        cands = [rng.random(k.shape) < 0.6 for k in kernels]
        within = {
            k: {"kernel": jnp.asarray(c), "bias": jnp.ones((), bool)}
            for k, c in zip(sorted(tree), cands)
        }
    counts = [int(c.sum()) for c in cands] if cands else [k.size for k in kernels]
    if distribution == "uniform":
        groups = [((i,), keep_count_reference(c, sparsity)) for i, c in enumerate(counts)]
    else:
        groups = [(tuple(range(len(kernels))), keep_count_reference(sum(counts), sparsity))]
    mask = jaxprune.topk_mask(tree, sparsity, distribution, within=within, method=method)
    expected = topk_reference(kernels, groups, cands)
    for got, want in zip(kernels_of(mask), expected):
        np.testing.assert_array_equal(np.asarray(got), want)
    for k in tree:
        assert mask[k]["bias"].shape == ()
    kept = sum(int(m.sum()) for m in kernels_of(mask))
    assert kept == sum(k for _, k in groups)


# Every example compiles its own selection (new shapes): the profile's 20 in the default
# run (conftest.py), many more with -m slow.
test_topk_matches_reference_exactly = TOPK_CASES(check_topk_matches_reference)
test_topk_matches_reference_on_many_examples = pytest.mark.slow(
    settings(max_examples=150)(TOPK_CASES(check_topk_matches_reference))
)


def test_radix_and_sort_agree_on_large_tied_scores():
    rng = np.random.default_rng(1)
    tree = {
        f"l{i}": jnp.asarray(rng.integers(0, 50, s), jnp.float32)
        for i, s in enumerate([(300, 100), (100, 64), (64, 10)])
    }
    for dist in ["uniform", "global", "erk"]:
        a = jaxprune.topk_mask(tree, 0.83, dist, method="radix")
        for other in ("sort", "count"):
            chex.assert_trees_all_equal(a, jaxprune.topk_mask(tree, 0.83, dist, method=other))


def test_radix_skips_its_last_pass_only_where_the_bucket_fits():
    # 1.0 plus 0-5 ulps: six keys that differ only in their last 10 bits, the bits
    # of the radix selection's last pass. k = 8 keeps the six (the pass is skipped),
    # k = 5 three of them (the pass runs); shuffled, so positions break no ties.
    rng = np.random.default_rng(0)
    close = (np.arange(6, dtype=np.uint32) + np.uint32(0x3F800000)).view(np.float32)
    x = np.concatenate([close, np.float32([2.0, 3.0, 0.5, 0.25])])
    order = rng.permutation(x.size)
    scores = [jnp.asarray(x[order].reshape(2, 5))]
    for k in range(x.size + 1):
        got = _engine.select(scores, [None], [((0,), k)], "radix")[0]
        want = np.argsort(-x, kind="stable")[:k]
        np.testing.assert_array_equal(np.asarray(got).ravel(), np.isin(order, want), err_msg=k)
        chex.assert_trees_all_equal(got, _engine.select(scores, [None], [((0,), k)], "sort")[0])


def test_nan_scores_rank_last_and_negative_zero_ties_with_zero():
    s = {"w": jnp.array([[jnp.nan, -1.0, 0.0, -0.0, jnp.inf, -jnp.inf]])}
    for m in ["radix", "sort", "count"]:
        order = [jaxprune.topk_mask(s, 1 - k / 6, method=m)["w"][0].tolist() for k in range(1, 7)]
        assert order[0] == [False, False, False, False, True, False], m
        assert order[1] == [False, False, True, False, True, False], m
        assert order[2] == [False, False, True, True, True, False], m  # 0 and -0: earlier first
        assert order[4] == [False, True, True, True, True, True], m  # NaN last, below -inf


def test_jit_equals_eager_with_traced_sparsity():
    params = mlp_dict()
    scores = jaxprune.scores.magnitude(params)
    for dist in ["uniform", "global"]:
        eager = jaxprune.topk_mask(scores, 0.7, dist)
        jitted = jax.jit(lambda s, sp: jaxprune.topk_mask(s, sp, dist))(scores, 0.7)
        chex.assert_trees_all_equal(eager, jitted)
    erk = jaxprune.topk_mask(scores, 0.7, "erk")
    chex.assert_trees_all_equal(erk, jax.jit(lambda s: jaxprune.topk_mask(s, 0.7, "erk"))(scores))


def test_vmap_over_seeds_equals_one_by_one():
    params = mlp_dict()

    def random_mask(key):
        return jaxprune.topk_mask(jaxprune.scores.random(key, params), 0.8, "global")

    keys = jax.random.split(jax.random.key(3), 4)
    batched = jax.jit(jax.vmap(random_mask))(keys)
    for i in range(4):
        one = jax.jit(random_mask)(keys[i])
        chex.assert_trees_all_equal(jax.tree.map(lambda x: x[i], batched), one)
    assert not np.array_equal(batched["layers_0"]["kernel"][0], batched["layers_0"]["kernel"][1])


def test_vmap_over_sparsities():
    scores = jaxprune.scores.magnitude(mlp_dict())
    masks = jax.vmap(lambda s: jaxprune.topk_mask(scores, s))(jnp.array([0.1, 0.5, 0.9]))
    kept = masks["layers_0"]["kernel"].sum(axis=(1, 2))
    assert kept.tolist() == [keep_count_reference(320, s) for s in (0.1, 0.5, 0.9)]


def test_within_prunes_a_fraction_of_what_remains_and_nests():
    params = mlp_dict()
    scores = jaxprune.scores.magnitude(params)
    mask = jaxprune.dense_mask(params)
    expected = {k: params[k]["kernel"].size for k in params}
    for _ in range(5):
        new = jaxprune.topk_mask(scores, 0.2, within=mask)
        for k in params:
            expected[k] = keep_count_reference(expected[k], 0.2)
            assert int(new[k]["kernel"].sum()) == expected[k]
            assert not np.any(np.asarray(new[k]["kernel"]) & ~np.asarray(mask[k]["kernel"]))
        mask = new


def test_within_is_kept_where_prunable_leaves_a_leaf_out():
    """A leaf `within` prunes but `prunable` excludes keeps `within`'s pruning (no leaf
    comes back dense): the result is always a subset of `within`."""
    params = mlp_dict()
    scores = jaxprune.scores.magnitude(params, prunable=["kernel$", "bias$"])
    mask = jaxprune.topk_mask(scores, 0.5, prunable=["kernel$", "bias$"])
    assert mask["layers_0"]["bias"].shape == params["layers_0"]["bias"].shape
    new = jaxprune.topk_mask(scores, 0.5, within=mask)  # default prunable: kernels only
    for k in params:
        np.testing.assert_array_equal(new[k]["bias"], mask[k]["bias"])
        assert int(new[k]["kernel"].sum()) == keep_count_reference(
            int(mask[k]["kernel"].sum()), 0.5
        )


def test_overrides_first_layer_dense_output_half_rate():
    params = mlp_dict()
    ov = {"layers_0/": 0.0, "layers_2/": lambda s: s / 2}
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.6, overrides=ov)
    assert int(mask["layers_0"]["kernel"].sum()) == 320
    assert int(mask["layers_1"]["kernel"].sum()) == keep_count_reference(192, 0.6)
    assert int(mask["layers_2"]["kernel"].sum()) == keep_count_reference(48, 0.3)


def test_global_with_override_meets_the_total():
    params = mlp_dict()
    mask = jaxprune.topk_mask(
        jaxprune.scores.magnitude(params), 0.5, "global", overrides={"layers_2/": 0.0}
    )
    total = keep_count_reference(320 + 192 + 48, 0.5)
    assert int(mask["layers_2"]["kernel"].sum()) == 48
    assert sum(int(mask[k]["kernel"].sum()) for k in params) == total


def test_explicit_mapping_distribution():
    params = mlp_dict()
    dist = {"layers_0": 0.5, "layers_1": 0.25}
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.1, dist)
    assert [int(mask[f"layers_{i}"]["kernel"].sum()) for i in range(3)] == [160, 144, 43]
    with pytest.raises(ValueError, match="layers_2/kernel"):
        jaxprune.topk_mask(jaxprune.scores.magnitude(params), distribution=dist)


def test_global_ranking_is_global():
    tree = {"a": jnp.full((4, 4), 10.0), "b": jnp.full((4, 4), 1.0)}
    mask = jaxprune.topk_mask(tree, 0.5, "global")
    assert int(mask["a"].sum()) == 16 and int(mask["b"].sum()) == 0


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_sparsity_is_refused(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        jaxprune.topk_mask(jaxprune.scores.magnitude(mlp_dict()), bad)


def test_unmeetable_distributions_are_refused():
    scores = jaxprune.scores.magnitude(mlp_dict())
    with pytest.raises(ValueError, match="Unmeetable"):  # dense first layer > total budget
        jaxprune.topk_mask(scores, 0.95, "global", overrides={"layers_0/": 0.0})
    with pytest.raises(ValueError, match="Unmeetable"):
        jaxprune.topk_mask(scores, 0.95, "erk", overrides={"layers_0/": 0.0})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        jaxprune.topk_mask(scores, 0.5, overrides={"layers_0/": 1.5})
    with pytest.raises(ValueError, match="matches no prunable leaf"):
        jaxprune.topk_mask(scores, 0.5, overrides={"layers_9/": 0.0})
    with pytest.raises(ValueError, match="Unknown distribution"):
        jaxprune.topk_mask(scores, 0.5, "erdos")
    with pytest.raises(ValueError, match="concrete sparsity"):
        jax.jit(lambda s: jaxprune.topk_mask(scores, s, "erk"))(0.5)


def test_patterns_shadowed_or_malformed_and_sparsities_that_are_not_numbers():
    scores = jaxprune.scores.magnitude(mlp_dict())
    with pytest.raises(ValueError, match="'layers_2/kernel'.*take the overrides pattern 'kernel'"):
        jaxprune.topk_mask(scores, 0.5, overrides={"kernel": 0.5, "layers_2/kernel": 0.0})
    with pytest.raises(ValueError, match="distribution pattern 'layers_2'.*'.\\*' first"):
        jaxprune.topk_mask(scores, 0.5, {".*": 0.9, "layers_2": 0.0})
    with pytest.raises(ValueError, match="overrides pattern 'layers\\[' is not a valid regular"):
        jaxprune.topk_mask(scores, 0.5, overrides={"layers[": 0.0})
    for bad in ("0.9", True, np.array([0.5, 0.5]), None):
        with pytest.raises((TypeError, ValueError), match="sparsity"):
            jaxprune.topk_mask(scores, bad)
    assert jaxprune.topk_mask(scores, np.float32(0.5))["layers_0"]["kernel"].sum() == 160


@pytest.mark.parametrize("distribution", ["uniform", "global", "er", "erk"])
def test_an_empty_leaf_keeps_nothing_and_reports(distribution):
    params = {"a": jnp.ones((4, 5)), "e": jnp.ones((0, 5))}
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.5, distribution)
    assert int(mask["a"].sum()) == 10 and mask["e"].shape == (0, 5)
    report = jaxprune.sparsity_report(mask)
    assert (report.kept, report.size, report.leaves[1].sparsity) == (10, 20, 0.0)
    assert "0x5" in str(report)


def test_nothing_prunable_and_integer_parameters_are_refused():
    with pytest.raises(ValueError, match="Nothing to prune"):
        jaxprune.scores.magnitude({"bias": jnp.ones(3), "scale": jnp.ones(3)})
    with pytest.raises(TypeError, match="'table'.*int32"):
        jaxprune.scores.magnitude({"table": jnp.ones((3, 3), jnp.int32)})


def test_within_must_match_scores():
    scores = jaxprune.scores.magnitude(mlp_dict())
    within = jaxprune.dense_mask(mlp_dict(sizes=(20, 16, 4)))
    with pytest.raises(ValueError, match="layers_2"):
        jaxprune.topk_mask(scores, 0.5, within=within)


@given(st.sampled_from([(1, 4), (2, 4), (4, 8), (3, 3)]), DIMS, DIMS, st.booleans())
def test_nm_masks_are_valid_and_keep_the_largest(nm, a, b, ties):
    n, m = nm
    rng = np.random.default_rng(a * 31 + b)
    shape = (3, a * m, b)
    s = rng.integers(0, 2, shape) if ties else rng.normal(size=shape)
    mask = jaxprune.nm_mask({"w": jnp.asarray(s, jnp.float32)}, n, m)["w"]
    blocks_m = np.asarray(mask).reshape(3, a, m, b)
    blocks_s = s.reshape(3, a, m, b)
    assert (blocks_m.sum(axis=2) == n).all()
    kept_min = np.where(blocks_m, blocks_s, np.inf).min(axis=2)
    dropped_max = np.where(blocks_m, -np.inf, blocks_s).max(axis=2)
    assert (kept_min >= dropped_max).all()


def test_nm_mask_on_conv_kernel_and_errors():
    s = jaxprune.scores.random(
        jax.random.key(0), {"conv": jnp.ones((3, 3, 8, 16)), "bias": jnp.ones(16)}
    )
    mask = jaxprune.nm_mask(s, 2, 4)
    assert mask["bias"].shape == ()
    assert (np.asarray(mask["conv"]).reshape(3, 3, 2, 4, 16).sum(axis=3) == 2).all()
    with pytest.raises(ValueError, match="multiple of m=3.*'conv'"):
        jaxprune.nm_mask(s, 2, 3)
    with pytest.raises(ValueError, match="0 <= n <= m"):
        jaxprune.nm_mask(s, 5, 4)
    with pytest.raises(TypeError, match="needs integers"):
        jaxprune.nm_mask(s, True, 4)  # a bool is not a count
    chex.assert_trees_all_equal(jaxprune.nm_mask(s, np.int64(2), np.int32(4)), mask)


def test_random_like_keeps_counts_and_moves_entries():
    params = mlp_dict()
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.8)
    r1 = jaxprune.random_like(jax.random.key(0), mask)
    r2 = jaxprune.random_like(jax.random.key(0), mask)
    chex.assert_trees_all_equal(r1, r2)
    for k in params:
        assert int(r1[k]["kernel"].sum()) == int(mask[k]["kernel"].sum())
        assert not np.array_equal(r1[k]["kernel"], mask[k]["kernel"])
        assert r1[k]["bias"].shape == ()


def test_order_keys_are_monotone():
    x = jnp.sort(jax.random.normal(jax.random.key(0), (1000,)) * 1e3)
    keys = np.asarray(_keys.order_keys(x)).astype(np.int64)
    assert (np.diff(keys) >= 0).all() and keys.min() >= 2


def large_values(values, shape, rng):
    if values == "normal":
        return rng.normal(size=shape)
    if values == "integers":
        return rng.integers(0, 1000, shape)
    return rng.normal(size=shape) * (rng.random(shape) < 0.1)  # mostly zero


# The default run mixes the three kinds of values in one tree (one set of programs to
# compile); -m slow also runs each kind in every leaf.
@pytest.mark.parametrize(
    "values",
    [
        ("normal", "integers", "mostly_zero"),
        pytest.param(("normal",) * 3, marks=pytest.mark.slow),
        pytest.param(("integers",) * 3, marks=pytest.mark.slow),
        pytest.param(("mostly_zero",) * 3, marks=pytest.mark.slow),
    ],
    ids=lambda v: "-".join(dict.fromkeys(v)),
)
def test_radix_matches_sort_on_large_leaves(values):
    # Large leaves (sizes not multiples of the histogram copies), heavy ties and
    # exact zeros, per-layer and global, with and without a mask to select within.
    rng = np.random.default_rng(7)
    shapes = {"a": (301, 250), "b": (77, 13), "c": (129, 67)}
    tree = {
        name: jnp.asarray(large_values(v, shape, rng), jnp.float32)
        for v, (name, shape) in zip(values, shapes.items())
    }
    within = {k: jnp.asarray(rng.random(v.shape) < 0.3) for k, v in tree.items()}
    for s in (0.1, 0.5, 0.9, 0.999):
        for distribution in ("uniform", "global"):
            for w in (None, within):
                a = jaxprune.topk_mask(tree, s, distribution, within=w, method="radix")
                for other in ("sort", "count"):
                    b = jaxprune.topk_mask(tree, s, distribution, within=w, method=other)
                    chex.assert_trees_all_equal(a, b)
            if distribution == "uniform":  # the exact count of every layer
                for name in tree:  # (the last `a` selected within `within`)
                    assert int(a[name].sum()) == keep_count_reference(int(w[name].sum()), s)


def test_off_the_cpu_the_plain_sums_give_the_same_masks(monkeypatch):
    # On the CPU, counts and histogram sums are products with ones (fewer reducer
    # computations), in float32 below 2**24 entries a group and else in int32; other
    # backends use plain sums. All must keep the same entries.
    rng = np.random.default_rng(3)
    tree = {"a": jnp.asarray(rng.integers(0, 50, (97, 31)), jnp.float32)}
    tree["b"] = jnp.asarray(rng.normal(size=(41, 7)) * (rng.random((41, 7)) < 0.2), jnp.float32)
    within = {k: jnp.asarray(rng.random(v.shape) < 0.4) for k, v in tree.items()}

    def masks():  # one group per leaf, and one over both leaves with a within mask
        return [
            jaxprune.topk_mask(tree, s, d, within=w, method="radix")
            for s in (0.3, 0.9)
            for d, w in (("uniform", None), ("global", within))
        ]

    on_cpu = masks()
    assert int(_keys.count(within["a"])) == int(np.asarray(within["a"]).sum())
    monkeypatch.setattr(_keys, "F32_EXACT", 0)
    _engine._select_jit.clear_cache()  # trace the selection again, now with int32 sums
    chex.assert_trees_all_equal(masks(), on_cpu)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    _engine._select_jit.clear_cache()  # trace the selection again, now with the sums
    chex.assert_trees_all_equal(masks(), on_cpu)
    assert int(_keys.count(within["a"])) == int(np.asarray(within["a"]).sum())
    monkeypatch.undo()
    _engine._select_jit.clear_cache()  # not the other programs: later tests reuse them


@pytest.mark.parametrize(
    "build",
    [
        lambda s, d: jaxprune.topk_mask(jaxprune.scores.magnitude(mlp_dict()), s, d),
        lambda s, d: jaxprune.layer_sparsities(mlp_dict(), s, d),
        lambda s, d: jaxprune.magnitude_mask(mlp_dict(), s, distribution=d),
    ],
    ids=["topk_mask", "layer_sparsities", "magnitude_mask"],
)
def test_a_percentage_or_a_miscased_distribution_suggests_the_intended_one(build):
    with pytest.raises(ValueError, match=r"\[0, 1\); got 95.0.*Did you mean 0.95\?"):
        build(95, "uniform")
    for typo in ("ERK", "erk ", " Erk"):
        with pytest.raises(ValueError, match="Unknown distribution.*Did you mean 'erk'\\?"):
            build(0.5, typo)
    with pytest.raises(TypeError, match="distribution must be a name or a mapping"):
        build(0.5, 3)


def test_a_schedule_suggests_a_fraction_for_a_percentage():
    with pytest.raises(ValueError, match="final must be .*Did you mean 0.9\\?"):
        jaxprune.schedules.polynomial(final=90, begin_step=0, end_step=10)
