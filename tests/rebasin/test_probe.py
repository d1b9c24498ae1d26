"""Hidden-unit features and REPAIR, read from the traced function."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxprune import analysis, models, rebasin


def _zoo(name, seed=0, **overrides):
    model = models.create(name, rngs=nnx.Rngs(seed), **overrides)
    model.eval()
    graphdef, state = nnx.split(model)
    return model, (lambda v, x: nnx.merge(graphdef, v)(x)), state


def test_unit_features_are_the_zoo_features_keyed_by_permutation():
    model, fn, state = _zoo("lenet300_100")
    x = jax.random.normal(jax.random.key(0), (6, 784))
    spec = rebasin.permutation_spec(fn, state, x)
    got = rebasin.unit_features(spec, fn, state, x)
    want = models.features(model, x)
    assert sorted(got) == sorted(want) == ["hidden/0", "hidden/1"]
    for k in got:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6)


def test_a_residual_stream_gets_the_features_of_every_relu_on_it():
    _, fn, state = _zoo("resnet20")
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    spec = rebasin.permutation_spec(fn, state, x)
    feats = rebasin.unit_features(spec, fn, state, x)
    stem = spec.group_of("stem/kernel", 3)
    # the stem's ReLU and the three blocks of stage 1 end on that stream: 4 x (2 x 32 x 32)
    assert feats[stem].shape == (4 * 2 * 32 * 32, 16)
    inner = spec.group_of("blocks/0/conv1/kernel", 3)
    assert feats[inner].shape == (2 * 32 * 32, 16)


def test_features_of_a_permuted_network_are_the_permuted_features():
    _, fn, state = _zoo("lenet5")
    x = jax.random.normal(jax.random.key(0), (3, 28, 28, 1))
    spec = rebasin.permutation_spec(fn, state, x)
    perm = rebasin.random_permutation(jax.random.key(1), spec)
    moved = rebasin.unit_features(spec, fn, rebasin.permute(spec, perm, state), x)
    base = rebasin.unit_features(spec, fn, state, x)
    for g, p in perm.items():
        np.testing.assert_allclose(moved[g], base[g][:, p], rtol=1e-5, atol=1e-6)


def _mlp():
    def f(v, x):
        h = jax.nn.relu(x @ v["w1"] + v["b1"])
        h = jax.nn.relu(h @ v["w2"] + v["b2"])
        return h @ v["w3"]

    def init(key):
        k = jax.random.split(key, 5)
        return {
            "w1": jax.random.normal(k[0], (5, 16)),
            "b1": jax.random.normal(k[1], (16,)),
            "w2": jax.random.normal(k[2], (16, 12)) / 4,
            "b2": jax.random.normal(k[3], (12,)),
            "w3": jax.random.normal(k[4], (12, 3)),
        }

    return f, init(jax.random.key(0)), init(jax.random.key(1))


def test_repair_gives_the_interpolated_network_the_interpolated_statistics():
    f, a, b = _mlp()
    data = jax.random.normal(jax.random.key(2), (256, 5))
    alpha = 0.5
    target = analysis.interpolate(
        rebasin.unit_stats(f, a, [data]), rebasin.unit_stats(f, b, [data]), alpha
    )
    mid = analysis.interpolate(a, b, alpha)
    before = rebasin.unit_stats(f, mid, [data])
    fix = rebasin.repair(f, mid, target, [data])
    after = rebasin.unit_stats(lambda vc, x: rebasin.apply_repaired(f, *vc, x), (mid, fix), [data])
    # the repaired network's site names carry the group names of the (v, fix) tree
    after_mean, after_std = list(after.mean.values()), list(after.std.values())
    for k, name in enumerate(target.mean):
        np.testing.assert_allclose(after_mean[k], target.mean[name], atol=1e-3)
        np.testing.assert_allclose(after_std[k], target.std[name], rtol=1e-3, atol=1e-4)
        # and it was not so before: the midpoint loses variance
        assert not np.allclose(before.std[name], target.std[name], rtol=1e-2)


def test_repair_over_several_batches_is_close_and_identity_correction_is_exact():
    f, a, b = _mlp()
    data = jax.random.normal(jax.random.key(2), (512, 5))
    batches = list(data.reshape(4, 128, 5))
    target = analysis.interpolate(
        rebasin.unit_stats(f, a, batches), rebasin.unit_stats(f, b, batches), 0.3
    )
    mid = analysis.interpolate(a, b, 0.3)
    fix = rebasin.repair(f, mid, target, batches)
    after = rebasin.unit_stats(lambda vc, x: rebasin.apply_repaired(f, *vc, x), (mid, fix), [data])
    for k, name in enumerate(target.std):
        np.testing.assert_allclose(list(after.std.values())[k], target.std[name], rtol=0.1)
    one = rebasin.UnitStats(
        {k: jnp.zeros_like(v) for k, v in fix.mean.items()},
        {k: jnp.ones_like(v) for k, v in fix.std.items()},
    )
    np.testing.assert_allclose(rebasin.apply_repaired(f, mid, one, data), f(mid, data), rtol=1e-6)


def test_apply_repaired_vmaps_over_a_path():
    f, a, b = _mlp()
    data = jax.random.normal(jax.random.key(2), (64, 5))
    alphas = jnp.linspace(0, 1, 3)
    sa, sb = rebasin.unit_stats(f, a, [data]), rebasin.unit_stats(f, b, [data])
    path = analysis.interpolate(a, b, alphas)
    fixes = [
        rebasin.repair(
            f,
            jax.tree.map(lambda p: p[i], path),
            analysis.interpolate(sa, sb, float(al)),
            [data],
        )
        for i, al in enumerate(alphas)
    ]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *fixes)
    out = jax.jit(jax.vmap(lambda v, c: rebasin.apply_repaired(f, v, c, data)))(path, stacked)
    np.testing.assert_allclose(
        out[1],
        rebasin.apply_repaired(f, jax.tree.map(lambda p: p[1], path), fixes[1], data),
        rtol=1e-5,
    )
    # at the endpoints REPAIR changes (almost) nothing
    np.testing.assert_allclose(out[0], f(a, data), rtol=1e-3, atol=1e-3)


def test_probe_errors():
    f, a, _ = _mlp()
    data = jnp.ones((4, 5))
    spec = rebasin.permutation_spec(f, a, data)
    _, g, s = _zoo("mnist1d_mlp")
    with pytest.raises(ValueError, match="does not match the function"):
        rebasin.unit_features(spec, g, s, jnp.ones((2, 40)))
    with pytest.raises(ValueError, match="no statistics for the sites"):
        rebasin.repair(f, a, rebasin.UnitStats({}, {}), [data])
    with pytest.raises(ValueError, match="no batches"):
        rebasin.unit_stats(f, a, [])


def test_unit_stats_count_each_site_at_its_own_positions():
    """Sites at different resolutions (a conv stage, then a pooled dense layer) pool over
    their own number of positions."""
    k = jax.random.split(jax.random.key(0), 3)
    v = {
        "w1": jax.random.normal(k[0], (3, 6)),
        "w2": jax.random.normal(k[1], (6, 5)),
        "w3": jax.random.normal(k[2], (5, 2)),
    }

    def f(v, x):  # x: (batch, positions, 3)
        h = jax.nn.relu(x @ v["w1"]).mean(axis=1)
        return jax.nn.relu(h @ v["w2"]) @ v["w3"]

    x = jax.random.normal(jax.random.key(1), (8, 4, 3))
    stats = rebasin.unit_stats(f, v, [x[:5], x[5:]])
    pre1 = (x @ v["w1"]).reshape(-1, 6)
    pre2 = jax.nn.relu(x @ v["w1"]).mean(axis=1) @ v["w2"]
    np.testing.assert_allclose(stats.mean["0:w1"], pre1.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.std["0:w1"], pre1.std(0), rtol=1e-4)
    np.testing.assert_allclose(stats.mean["1:w2"], pre2.mean(0), rtol=1e-5)
    np.testing.assert_allclose(stats.std["1:w2"], pre2.std(0), rtol=1e-4)
