"""rebasin matching: weight, activation and Sinkhorn matching find the permutation that
aligns one model to another (planted permutations recovered exactly)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jaxprune
from jaxprune import _tree, models, rebasin

ZOO = {
    "lenet300_100": ("lenet300_100", {}, (784,)),
    "lenet5": ("lenet5", {}, (28, 28, 1)),
    "resnet20": ("resnet20", {"width": 1}, (8, 8, 3)),
}


def _zoo(name, seed=0):
    """A zoo model's graph, its full state (params and batch stats), params and spec."""
    model_name, overrides, shape = ZOO[name]
    model = models.create(model_name, rngs=nnx.Rngs(seed), **overrides)
    model.eval()
    graph, state = nnx.split(model)
    spec = rebasin.permutation_spec(
        lambda v, x: nnx.merge(graph, v)(x), state, jnp.ones((1, *shape))
    )
    return graph, state, nnx.state(model, nnx.Param), spec


def _assert_trees_equal(x, y):
    px, lx, _ = _tree.leaves_with_paths(x)
    py, ly, _ = _tree.leaves_with_paths(y)
    assert px == py
    for path, u, v in zip(px, lx, ly):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v), err_msg=path)


def _assert_same_perm(p, q):
    assert set(p) == set(q)
    for name in p:
        np.testing.assert_array_equal(np.asarray(p[name]), np.asarray(q[name]), err_msg=name)


def _planted(spec, seed=1):
    perm = rebasin.random_permutation(jax.random.key(seed), spec)
    # The test would pass trivially with an identity plant.
    assert all((np.asarray(p) != np.arange(p.size)).any() for p in perm.values())
    return perm


# ----------------------------------------------------------------- weight matching


@pytest.mark.parametrize("name", list(ZOO))
def test_weight_matching_recovers_a_planted_permutation_of_a_zoo_model(name):
    _, state, _, spec = _zoo(name)
    perm = _planted(spec)
    permuted = rebasin.permute(spec, perm, state)
    found, info = rebasin.weight_matching(spec, state, permuted, return_info=True)
    _assert_trees_equal(rebasin.permute(spec, found, permuted), state)
    _assert_same_perm(found, rebasin.invert_permutation(perm))
    assert 2 <= info.sweeps <= 5
    # At the optimum every matched leaf meets itself: the objective is sum ||w||^2.
    paths, leaves, _ = _tree.leaves_with_paths(state)
    norm = sum(
        float(np.sum(np.asarray(w, np.float64) ** 2))
        for p, w in zip(paths, leaves)
        if p in spec.shapes
    )
    assert info.objective == pytest.approx(norm, rel=1e-9)


def test_the_zoo_specs_have_what_the_matching_must_handle():
    assert rebasin.AxisRef("hidden/0/kernel", 0, 25, 1) in _zoo("lenet5")[3].groups["conv2"].axes
    assert "blocks/0/norm1/var" in _zoo("resnet20")[3].shapes


def test_weight_matching_on_params_only_of_a_batch_norm_model():
    _, state, params, spec = _zoo("resnet20")
    perm = _planted(spec, seed=2)
    found = rebasin.weight_matching(
        spec, params, rebasin.permute(spec, perm, params), key=jax.random.key(5)
    )
    _assert_same_perm(found, rebasin.invert_permutation(perm))


def test_weight_matching_of_two_models_never_falls_below_the_identity():
    _, a, _, spec = _zoo("lenet300_100", seed=0)
    _, b, _, _ = _zoo("lenet300_100", seed=1)
    found, info = rebasin.weight_matching(spec, a, b, return_info=True)
    ident = rebasin.weight_matching(spec, a, b, max_iter=1, return_info=True)[1]
    paths, la, _ = _tree.leaves_with_paths(a)
    lb = _tree.leaves_with_paths(b)[1]
    start = sum(
        float(np.vdot(np.asarray(x, np.float64), np.asarray(y, np.float64)))
        for p, x, y in zip(paths, la, lb)
        if p in spec.shapes
    )
    assert info.objective >= ident.objective > start
    assert all(sorted(np.asarray(p).tolist()) == list(range(p.size)) for p in found.values())


def test_a_permuted_mask_keeps_its_per_layer_counts():
    _, _, params, spec = _zoo("lenet5")
    mask = jaxprune.random_mask(jax.random.key(0), params, 0.8)
    permuted = rebasin.permute(spec, _planted(spec), mask)
    count = lambda m: {p: int(np.sum(x)) for p, x in zip(*_tree.leaves_with_paths(m)[:2])}
    assert count(permuted) == count(mask)
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(_tree.leaves_with_paths(mask)[1], _tree.leaves_with_paths(permuted)[1])
    )


def test_weight_matching_of_masked_trees_sees_only_the_kept_weights():
    _, _, params, spec = _zoo("lenet300_100")
    mask = jaxprune.magnitude_mask(params, 0.7)
    perm = _planted(spec)
    pb, pmask = rebasin.permute(spec, perm, params), rebasin.permute(spec, perm, mask)

    # b's pruned entries hold large noise: only the mask hides it.
    def noisy(w, m):
        if _tree.is_stand_in(m):
            return w
        noise = 10 * jax.random.normal(jax.random.key(w.size), w.shape)
        return jnp.where(m, w * m, noise)

    b = jax.tree_util.tree_map(noisy, pb, pmask)
    masked_a = jax.tree_util.tree_map(lambda w, m: w * m, params, mask)
    found = rebasin.weight_matching(spec, masked_a, b, masks=(mask, pmask))
    _assert_same_perm(found, rebasin.invert_permutation(perm))
    blind = rebasin.weight_matching(spec, masked_a, b)
    assert any(not np.array_equal(blind[n], found[n]) for n in found), (
        "the noise should mislead the unmasked matching"
    )


def test_weight_matching_errors_say_what_is_wrong():
    _, state, params, spec = _zoo("lenet300_100")
    with pytest.raises(ValueError, match="no floating leaf of a and b is one the spec moves"):
        rebasin.weight_matching(spec, {"x": jnp.ones(3)}, {"x": jnp.ones(3)})
    with pytest.raises(ValueError, match="a and b differ in structure"):
        rebasin.weight_matching(spec, state, {"hidden": {"0": {"kernel": jnp.ones(3)}}})
    with pytest.raises(ValueError, match="max_iter"):
        rebasin.weight_matching(spec, params, params, max_iter=0)
    bad = jax.tree_util.tree_map(lambda w: jnp.ones((2,)) if w.ndim == 2 else w, params)
    with pytest.raises(ValueError, match="mask_b at 'head/kernel' has shape"):
        rebasin.weight_matching(spec, params, params, masks=(params, bad))


# ------------------------------------------------------------- activation matching


def _mlp(v, x):
    h1 = jax.nn.relu(x @ v["l1"]["w"] + v["l1"]["b"])
    h2 = jax.nn.relu(h1 @ v["l2"]["w"] + v["l2"]["b"])
    return h2 @ v["out"]["w"], {"l1": h1, "l2": h2}


def _mlp_vars(key, sizes=(5, 24, 16, 3)):
    keys = jax.random.split(key, 3)
    names = ("l1", "l2", "out")
    v = {}
    for k, name, (m, n) in zip(keys, names, zip(sizes[:-1], sizes[1:])):
        v[name] = {"w": jax.random.normal(k, (m, n)) / np.sqrt(m)}
        if name != "out":
            v[name]["b"] = 0.1 * jax.random.normal(jax.random.fold_in(k, 1), (n,))
    return v


def _mlp_spec(v):
    return rebasin.permutation_spec(lambda v, x: _mlp(v, x)[0], v, jnp.ones((1, 5)))


@pytest.mark.parametrize("method", ["correlation", "product"])
def test_activation_matching_recovers_a_planted_permutation(method):
    v = _mlp_vars(jax.random.key(0))
    spec = _mlp_spec(v)
    assert spec.names == ["l1", "l2"]
    perm = _planted(spec)
    pv = rebasin.permute(spec, perm, v)
    x = jax.random.normal(jax.random.key(1), (8, 32, 5))  # leading axes are all samples
    found = rebasin.activation_matching(spec, _mlp(v, x)[1], _mlp(pv, x)[1], method=method)
    _assert_same_perm(found, rebasin.invert_permutation(perm))
    _assert_trees_equal(rebasin.permute(spec, found, pv), v)


def test_activation_matching_keeps_the_identity_for_a_missing_group():
    v = _mlp_vars(jax.random.key(0))
    spec = _mlp_spec(v)
    perm = _planted(spec)
    x = jax.random.normal(jax.random.key(1), (64, 5))
    za, zb = _mlp(v, x)[1], _mlp(rebasin.permute(spec, perm, v), x)[1]
    found = rebasin.activation_matching(spec, {"l2": za["l2"]}, {"l2": zb["l2"]})
    np.testing.assert_array_equal(found["l1"], np.arange(24))
    np.testing.assert_array_equal(found["l2"], np.argsort(perm["l2"]))


def test_activation_matching_errors_say_what_is_wrong():
    v = _mlp_vars(jax.random.key(0))
    spec = _mlp_spec(v)
    z = {"l1": jnp.ones((4, 24))}
    with pytest.raises(ValueError, match=r"groups the spec lacks: \['conv9'\]"):
        rebasin.activation_matching(spec, {**z, "conv9": jnp.ones((4, 2))}, z)
    with pytest.raises(ValueError, match=r"only one of"):
        rebasin.activation_matching(spec, z, {})
    with pytest.raises(ValueError, match=r"must be \(\.\.\., 24\), units last"):
        rebasin.activation_matching(spec, z, {"l1": jnp.ones((24, 4))})
    with pytest.raises(ValueError, match="method must be one of"):
        rebasin.activation_matching(spec, z, z, method="cosine")


def test_activation_matching_counts_dead_units_as_uncorrelated():
    v = _mlp_vars(jax.random.key(0))
    spec = _mlp_spec(v)
    za = jax.random.normal(jax.random.key(2), (50, 24))
    zb = za.at[:, 3].set(jnp.nan)  # NaN features: a dead unit, never an error
    found = rebasin.activation_matching(spec, {"l1": za}, {"l1": zb})
    np.testing.assert_array_equal(found["l1"], np.arange(24))


# --------------------------------------------------------------- Sinkhorn matching


def test_sinkhorn_matching_lowers_the_midpoint_loss():
    a = _mlp_vars(jax.random.key(0), sizes=(5, 12, 8, 3))
    spec = rebasin.permutation_spec(lambda v, x: _mlp(v, x)[0], a, jnp.ones((1, 5)))
    b = rebasin.permute(spec, _planted(spec), a)
    x = jax.random.normal(jax.random.key(3), (4, 64, 5))
    batches = [(xi, _mlp(a, xi)[0]) for xi in x]  # a is the teacher: loss(a) = 0

    def loss(v, batch):
        return jnp.mean((_mlp(v, batch[0])[0] - batch[1]) ** 2)

    def midpoint(perm):
        bb = rebasin.permute(spec, perm, b)
        mid = jax.tree_util.tree_map(lambda u, w: 0.5 * (u + w), a, bb)
        return float(np.mean([loss(mid, batch) for batch in batches]))

    found = rebasin.sinkhorn_matching(spec, a, b, loss, batches, key=jax.random.key(4), steps=200)
    for name, p in found.items():
        assert sorted(np.asarray(p).tolist()) == list(range(spec.groups[name].size))
    identity = midpoint(rebasin.identity_permutation(spec))
    assert midpoint(found) < 0.5 * identity, (midpoint(found), identity)


def test_sinkhorn_matching_at_random_points_returns_permutations():
    a = _mlp_vars(jax.random.key(0), sizes=(5, 6, 4, 2))
    spec = rebasin.permutation_spec(lambda v, x: _mlp(v, x)[0], a, jnp.ones((1, 5)))
    b = _mlp_vars(jax.random.key(1), sizes=(5, 6, 4, 2))
    x = jax.random.normal(jax.random.key(3), (16, 5))
    loss = lambda v, x: jnp.mean(_mlp(v, x)[0] ** 2)
    found = rebasin.sinkhorn_matching(
        spec, a, b, loss, iter([x]), key=jax.random.key(0), steps=3, objective="random"
    )
    assert {n: sorted(p.tolist()) for n, p in found.items()} == {
        "l1": list(range(6)),
        "l2": list(range(4)),
    }
    with pytest.raises(ValueError, match="batches is empty"):
        rebasin.sinkhorn_matching(spec, a, b, loss, [], key=jax.random.key(0))
    with pytest.raises(ValueError, match="objective must be one of"):
        rebasin.sinkhorn_matching(spec, a, b, loss, [x], key=jax.random.key(0), objective="end")
    with pytest.raises(ValueError, match="no floating leaf of b is one the spec moves"):
        rebasin.sinkhorn_matching(spec, {"x": x}, {"x": x}, loss, [x], key=jax.random.key(0))


def test_weight_matching_settles_when_one_permutation_moves_two_axes_of_a_leaf():
    """The residual MNIST-1D MLP: its one permutation moves both axes of the second
    hidden kernel (P W P^T). The sweeps stop well before max_iter and return the best
    objective they saw, never worse than one sweep."""
    from flax import nnx

    from jaxprune import models

    g, a = nnx.split(models.create("mnist1d_mlp", rngs=nnx.Rngs(0)))
    _, b = nnx.split(models.create("mnist1d_mlp", rngs=nnx.Rngs(1)))
    spec = rebasin.permutation_spec(lambda v, x: nnx.merge(g, v)(x), a, jnp.zeros((1, 40)))
    assert any(
        len({r.axis for r in grp.axes if r.path == "hidden/1/kernel"}) == 2
        for grp in spec.groups.values()
    )
    _, one = rebasin.weight_matching(spec, a, b, max_iter=1, return_info=True)
    perm, info = rebasin.weight_matching(spec, a, b, return_info=True)
    assert info.sweeps < 100
    assert info.objective >= one.objective
    # the objective reported is the one of the permutation returned
    from jaxprune import _tree

    paths, la, _ = _tree.leaves_with_paths(a)
    _, lb, _ = _tree.leaves_with_paths(rebasin.permute(spec, perm, b))
    total = sum(float(jnp.vdot(x, y)) for p, x, y in zip(paths, la, lb) if p in spec.shapes)
    assert np.isclose(total, info.objective, rtol=1e-5)
