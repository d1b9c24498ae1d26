"""Structured sparsity: unit and block masks keep exact counts of whole items; coupled unit
masks remove a unit in every leaf of its group; slimmed variables compute the masked model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import ZOO_INPUTS

import jaxprune
from jaxprune import models, rebasin

# The default run: a Dense stack and convs with a flatten slot (the batch-norm residual
# nets' groups are checked on ResNet-20 below); every zoo name runs with -m slow.
SMALL = {
    "lenet300_100": {},
    "lenet5": {},
}


def _nnx(name, **overrides):
    model = models.create(name, rngs=nnx.Rngs(0), **overrides)
    model.eval()
    graphdef, state = nnx.split(model)
    # Batch statistics away from their init (0 and 1), so that slicing them matters.
    state = jax.tree_util.tree_map_with_path(
        lambda p, v: (
            v + jnp.abs(jax.random.normal(jax.random.key(len(str(p))), v.shape))
            if ("mean" in str(p) or "var" in str(p))
            else v
        ),
        state,
    )
    x = jax.random.normal(jax.random.key(0), (2, *ZOO_INPUTS[name]))
    fn = lambda v, x: nnx.merge(graphdef, v)(x)  # noqa: E731
    params = nnx.state(model, nnx.Param)
    return fn, state, x, rebasin.permutation_spec(fn, state, x), params


def _check_slim_equals_masked(name, overrides, sparsity=0.5):
    fn, state, x, spec, params = _nnx(name, **overrides)
    mask = jaxprune.unit_mask(spec, jaxprune.unit_scores(spec, params), sparsity, tree=state)
    small, kept = jaxprune.slim(spec, state, mask, return_kept=True)
    for g_name, g in spec.groups.items():
        assert len(kept[g_name]) == jaxprune.keep_count(g.size, sparsity)
    want, got = fn(jaxprune.apply_mask(state, mask), x), fn(small, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))
    n_small = sum(v.size for v in jax.tree.leaves(small))
    assert n_small < 0.5 * sum(v.size for v in jax.tree.leaves(state))


@pytest.mark.parametrize("name", sorted(SMALL))
def test_slimmed_variables_compute_the_masked_model(name):
    _check_slim_equals_masked(name, SMALL[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", models.names())
def test_slimmed_variables_compute_the_masked_model_for_every_zoo_model(name):
    _check_slim_equals_masked(name, {})


def test_a_removed_unit_is_zero_in_every_leaf_of_its_group_resnet20():
    fn, state, x, spec, _ = _nnx("resnet20")
    mask = jaxprune.unit_mask(spec, jaxprune.unit_scores(spec, state), 0.25, tree=state)
    masked = jaxprune.apply_mask(state, mask)
    paths, leaves, _ = jaxprune._tree.leaves_with_paths(masked)
    leaf = dict(zip(paths, leaves))
    m_paths, m_leaves, _ = jaxprune._tree.leaves_with_paths(mask)
    m_leaf = dict(zip(m_paths, m_leaves))
    stream = spec.group_of("blocks/0/conv2/kernel", 3)  # the first stage's residual stream
    removed = [int(i) for i in np.flatnonzero(~np.asarray(m_leaf["stem_norm/mean"]))]
    assert len(removed) == 16 - jaxprune.keep_count(16, 0.25) == 4
    moved = {ref.path for ref in spec.groups[stream].axes}
    # the stem, its norm and statistics, every block's conv2/norm2, every conv1's input
    assert {"stem/kernel", "stem_norm/mean", "stem_norm/var", "blocks/2/norm2/scale"} <= moved
    assert {"blocks/1/conv1/kernel", "blocks/3/project/kernel"} <= moved
    for ref in spec.groups[stream].axes:
        rows = rebasin._spec.unit_view(leaf[ref.path], ref)
        assert not np.asarray(rows[jnp.asarray(removed)]).any(), ref
        assert np.asarray(rebasin._spec.unit_view(m_leaf[ref.path], ref).any(1)).sum() == 12
    # leaves no group moves (the head's bias) get the stand-in
    assert m_leaf["head/bias"].shape == ()
    want, got = fn(masked, x), fn(jaxprune.slim(spec, state, mask), x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))


def test_unit_masks_keep_exact_counts_globally_and_by_mapping():
    fn, state, x, spec, _ = _nnx("lenet300_100")
    scores = jaxprune.unit_scores(spec, state, norm="l2")
    assert {k: v.shape for k, v in scores.items()} == {"hidden/0": (300,), "hidden/1": (100,)}
    mask = jaxprune.unit_mask(spec, scores, 0.8, "global", tree=state)
    kept = [int(mask["hidden"][0]["bias"].sum()), int(mask["hidden"][1]["bias"].sum())]
    assert sum(kept) == jaxprune.keep_count(400, 0.8)
    mask = jaxprune.unit_mask(spec, scores, 0.5, {"hidden/1": 0.9}, tree=state)
    assert int(mask["hidden"][1]["bias"].sum()) == 10
    assert int(mask["hidden"][0]["bias"].sum()) == 150
    # ties: equal scores keep the earlier units
    flat = {k: jnp.zeros_like(v) for k, v in scores.items()}
    mask = jaxprune.unit_mask(spec, flat, 0.5, tree=state)
    assert np.asarray(mask["hidden"][1]["bias"]).tolist() == [True] * 50 + [False] * 50


def test_slim_refuses_masks_that_are_not_whole_units():
    fn, state, x, spec, _ = _nnx("lenet300_100")
    element = jaxprune.topk_mask(jaxprune.scores.magnitude(state), 0.5)
    with pytest.raises(ValueError, match=r"'head/kernel'.*part of unit \d+ of group 'hidden/1'"):
        jaxprune.slim(spec, state, element)
    per_layer = jaxprune.topk_mask(jaxprune.scores.magnitude(state), 0.5, granularity="unit")
    with pytest.raises(ValueError, match="group 'hidden/0' is not pruned the same in every leaf"):
        jaxprune.slim(spec, state, per_layer)
    # hidden/0's columns pruned, but not the next kernel's rows: not the same units
    cols = jaxprune.topk_mask(
        jaxprune.scores.magnitude(state), 0.5, granularity="unit", prunable="hidden/0/kernel"
    )
    with pytest.raises(ValueError, match="group 'hidden/0'"):
        jaxprune.slim(spec, state, cols)
    with pytest.raises(ValueError, match="norm must be one of"):
        jaxprune.unit_scores(spec, state, norm="l3")
    with pytest.raises(ValueError, match="sizes layers by their kernels"):
        jaxprune.unit_mask(spec, jaxprune.unit_scores(spec, state), 0.5, "erk", tree=state)
    with pytest.raises(ValueError, match="missing \\['hidden/1'\\]"):
        jaxprune.unit_mask(spec, {"hidden/0": jnp.ones(300)}, 0.5, tree=state)


def _tree():
    k = jax.random.split(jax.random.key(0), 3)
    return {
        "conv": {"kernel": jax.random.normal(k[0], (3, 3, 8, 16)), "bias": jnp.zeros(16)},
        "dense": {"kernel": jax.random.normal(k[1], (16, 12)), "bias": jnp.zeros(12)},
    }


@pytest.mark.parametrize("distribution", ["uniform", "global", "erk", {"conv": 0.25}])
def test_unit_granularity_keeps_whole_output_units_exactly(distribution):
    scores = jaxprune.scores.magnitude(_tree())
    mask = jaxprune.topk_mask(scores, 0.5, distribution, granularity="unit")
    conv, dense = np.asarray(mask["conv"]["kernel"]), np.asarray(mask["dense"]["kernel"])
    assert (conv.all(axis=(0, 1, 2)) == conv.any(axis=(0, 1, 2))).all()
    assert (dense.all(axis=0) == dense.any(axis=0)).all()
    units = conv.all(axis=(0, 1, 2)).sum(), dense.all(axis=0).sum()
    if distribution == "uniform":
        assert units == (8, 6)
        pooled = np.abs(np.asarray(_tree()["dense"]["kernel"])).sum(0)
        assert set(np.flatnonzero(dense.all(0))) == set(np.argsort(-pooled)[:6])
    elif distribution == "global":
        assert sum(units) == 14
    elif isinstance(distribution, dict):
        assert units == (12, 6)
    assert mask["conv"]["bias"].shape == ()
    # within: 50% of the remaining units
    again = jaxprune.topk_mask(scores, 0.5, granularity="unit", within=mask, overrides=None)
    assert np.asarray(again["dense"]["kernel"]).all(0).sum() == round(0.5 * units[1])
    assert not (np.asarray(again["dense"]["kernel"]) & ~dense).any()


def test_block_granularity_keeps_exact_block_counts():
    scores = jaxprune.scores.magnitude(_tree())
    mask = jaxprune.topk_mask(scores, 0.75, granularity=(4, 4))
    conv = np.asarray(mask["conv"]["kernel"]).reshape(3, 3, 2, 4, 4, 4)
    dense = np.asarray(mask["dense"]["kernel"]).reshape(4, 4, 3, 4)
    assert (conv.all(axis=(3, 5)) == conv.any(axis=(3, 5))).all()
    assert conv.all(axis=(3, 5)).sum() == jaxprune.keep_count(3 * 3 * 2 * 4, 0.75)
    assert dense.all(axis=(1, 3)).sum() == jaxprune.keep_count(12, 0.75)
    glob = jaxprune.topk_mask(scores, 0.75, "global", granularity=(2, 4))
    n_blocks = (
        np.asarray(glob["conv"]["kernel"]).sum() + np.asarray(glob["dense"]["kernel"]).sum()
    ) / 8
    assert n_blocks == jaxprune.keep_count(3 * 3 * 4 * 4 + 8 * 3, 0.75)


def test_granularity_errors():
    scores = jaxprune.scores.magnitude(_tree())
    with pytest.raises(ValueError, match=r"'conv/kernel' has shape \(3, 3, 8, 16\).*5 x 4 blocks"):
        jaxprune.topk_mask(scores, 0.5, granularity=(5, 4))
    for bad in ("units", (0, 2), (2, 2, 2), 4):
        with pytest.raises(ValueError, match="granularity must be"):
            jaxprune.topk_mask(scores, 0.5, granularity=bad)
    with pytest.raises(ValueError, match="jaxprune.unit_mask"):
        jaxprune.topk_mask(scores, 0.5, spec=object())
    # the element path is the default and unchanged
    same = jaxprune.topk_mask(scores, 0.5, granularity="element")
    assert jax.tree.all(jax.tree.map(jnp.array_equal, same, jaxprune.topk_mask(scores, 0.5)))
