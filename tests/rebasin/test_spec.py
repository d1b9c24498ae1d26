"""permutation_spec: traced from the function, the function unchanged under every permutation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen, nnx
from helpers import ZOO_INPUTS

import jaxprune
from jaxprune import models, rebasin

# What each architecture implies: the sizes of its hidden-unit permutations, in order.
RESNET20 = [16] * 4 + [32] * 4 + [64] * 4  # per stage: the stream, then 3 blocks' inner widths
EXPECTED = {
    "mlp": [300, 100],
    "lenet300_100": [300, 100],
    "lenet5": [6, 16, 120, 84],
    "lenet5_caffe": [20, 50, 500],
    "conv2": [64, 64, 256, 256],
    "conv4": [64, 64, 128, 128, 256, 256],
    "conv6": [64, 64, 128, 128, 256, 256, 256, 256],
    "resnet20": RESNET20,
    "resnet32": [16] * 6 + [32] * 6 + [64] * 6,
    "resnet56": [16] * 10 + [32] * 10 + [64] * 10,
    # pre-activation WRN-22-2: the stem's 16, then per stage a stream and 3 inner widths
    "wrn22": [16] + [32] * 4 + [64] * 4 + [128] * 4,
    "wrn22_2": [16] + [32] * 4 + [64] * 4 + [128] * 4,
    "vgg11": [64, 128, 256, 256, 512, 512, 512, 512],
    "vgg16": [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512],
    "vgg19": [64, 64, 128, 128] + [256] * 4 + [512] * 8,
    "cnn1d": [25, 25, 25],
    "mnist1d_mlp": [100],  # residual: both hidden layers add into one stream
}


def _nnx(name, **overrides):
    model = models.create(name, rngs=nnx.Rngs(0), **overrides)
    model.eval()
    graphdef, state = nnx.split(model)
    return (lambda v, x: nnx.merge(graphdef, v)(x)), state


def _check_invariant(fn, variables, x, spec, seed=1, rtol=1e-4):
    perm = rebasin.random_permutation(jax.random.key(seed), spec)
    moved = rebasin.permute(spec, perm, variables)
    want, got = fn(variables, x), fn(moved, x)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * float(jnp.abs(want).max()))
    # and the permutation really moved something
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), variables, moved)
    assert any(jax.tree.leaves(changed))


def _batch_stats_random(state):
    """Batch statistics away from their init (0 and 1), so moving them matters."""
    key = jax.random.key(7)

    def noisy(path, x):
        name = jax.tree_util.keystr(path)
        if "mean" in name or "var" in name:
            return x + jnp.abs(
                jax.random.normal(jax.random.fold_in(key, hash(name) % 1000), x.shape)
            )
        return x

    return jax.tree_util.tree_map_with_path(noisy, state)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_zoo_model_is_unchanged_by_its_permutations(name):
    fn, state = _nnx(name)
    state = _batch_stats_random(state)
    x = jax.random.normal(jax.random.key(0), (2, *ZOO_INPUTS[name]))
    spec = rebasin.permutation_spec(fn, state, x)
    assert list(spec.sizes.values()) == EXPECTED[name]
    assert spec.left_out == () or all("reshape" in note for note in spec.left_out)
    _check_invariant(fn, state, x, spec)


def test_layer_norm_resnet_and_every_norm_statistic_moves():
    fn, state = _nnx("resnet20", norm="layer", width=2)
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    spec = rebasin.permutation_spec(fn, state, x)
    assert list(spec.sizes.values()) == [2 * s for s in RESNET20]
    _check_invariant(fn, state, x, spec)
    bn_fn, bn_state = _nnx("resnet20")
    bn_spec = rebasin.permutation_spec(bn_fn, bn_state, x)
    stats = {r.path for g in bn_spec.groups.values() for r in g.axes}
    assert "stem_norm/mean" in stats and "stem_norm/var" in stats
    # a residual stream moves its shortcut's projection and norm too
    stream = bn_spec.groups[bn_spec.group_of("blocks/6/conv2/kernel", 3)]  # the last stage
    moved = {r.path for r in stream.axes}
    assert {"blocks/6/project/kernel", "blocks/6/project_norm/scale", "head/kernel"} <= moved


def test_a_flatten_gives_the_next_kernel_a_strided_slot():
    fn, state = _nnx("lenet5")
    spec = rebasin.permutation_spec(fn, state, jnp.zeros((1, 28, 28, 1)))
    (ref,) = [r for r in spec.groups["conv2"].axes if r.path == "hidden/0/kernel"]
    assert (ref.axis, ref.outer, ref.inner) == (0, 25, 1)  # (5, 5, 16) flattened, channels last


def test_pad_shortcut_leaves_the_padded_streams_out_and_stays_exact():
    fn, state = _nnx("resnet20", shortcut="pad")
    x = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
    spec = rebasin.permutation_spec(fn, state, x)
    # the three streams meet a channel pad (or feed one): only the 9 inner widths remain
    assert list(spec.sizes.values()) == [16] * 3 + [32] * 3 + [64] * 3
    assert any("pad along axis 3" in note for note in spec.left_out)
    _check_invariant(fn, state, x, spec)


def test_plain_jax_function_with_untieable_axes():
    """A concatenation and a constant array: those units are left out, the rest permuted."""
    k = jax.random.split(jax.random.key(0), 6)
    v = {
        "a": jax.random.normal(k[0], (5, 8)),
        "b": jax.random.normal(k[1], (5, 6)),
        "c": jax.random.normal(k[2], (14, 7)),
        "d": jax.random.normal(k[3], (7, 3)),
        "e": jax.random.normal(k[4], (3, 4)),
    }
    const = jax.random.normal(k[5], (3,))

    def f(v, x):
        h = jnp.concatenate([jax.nn.relu(x @ v["a"]), jnp.tanh(x @ v["b"])], axis=-1)
        g = jax.nn.relu(h @ v["c"])  # 7 units: permutable
        return (jax.nn.relu(g @ v["d"]) * const) @ v["e"]  # 3 units meet a constant

    x = jax.random.normal(jax.random.key(1), (4, 5))
    spec = rebasin.permutation_spec(f, v, x)
    assert spec.sizes == {"c": 7}
    notes = "\n".join(spec.left_out)
    assert "concatenate" in notes and "constant" in notes
    _check_invariant(f, v, x, spec)


def test_linen_model():
    class Net(linen.Module):
        @linen.compact
        def __call__(self, x):
            x = linen.relu(linen.BatchNorm(use_running_average=True)(linen.Dense(16)(x)))
            return linen.Dense(3)(linen.relu(linen.Dense(8)(x)))

    net = Net()
    x = jax.random.normal(jax.random.key(0), (4, 5))
    variables = _batch_stats_random(net.init(jax.random.key(1), x))
    spec = rebasin.permutation_spec(net.apply, variables, x)
    # Dense(3) is built before Dense(8) in that expression: Dense_1 is the head
    assert spec.sizes == {"params/Dense_0": 16, "params/Dense_2": 8}
    assert {r.path for r in spec.groups["params/Dense_0"].axes} >= {
        "batch_stats/BatchNorm_0/mean",
        "params/BatchNorm_0/scale",
    }
    _check_invariant(net.apply, variables, x, spec)


def test_permute_moves_masks_with_their_counts_and_adam_moments_with_weights():
    fn, state = _nnx("lenet5")
    spec = rebasin.permutation_spec(fn, state, jnp.zeros((1, 28, 28, 1)))
    params = nnx.state(nnx.merge(*nnx.split(models.create("lenet5", rngs=nnx.Rngs(0)))), nnx.Param)
    mask = jaxprune.magnitude_mask(params, 0.8)
    perm = rebasin.random_permutation(jax.random.key(3), spec)
    moved = rebasin.permute(spec, perm, mask)
    counts = lambda m: [int(jnp.sum(x)) for x in jax.tree.leaves(m)]
    assert counts(moved) == counts(mask)
    assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), mask, moved)))
    # the masked weights stay masked after both move
    pruned = jaxprune.apply_mask(params, mask)
    both = jaxprune.apply_mask(rebasin.permute(spec, perm, pruned), moved)
    same = jax.tree.map(jnp.array_equal, both, rebasin.permute(spec, perm, pruned))
    assert all(bool(s) for s in jax.tree.leaves(same))
    # Adam's moments (paths "1/0/mu/...") move exactly as their weights
    opt = optax.adam(1e-3)
    grads = jax.tree.map(lambda p: jnp.arange(p.size, dtype=p.dtype).reshape(p.shape), params)
    _, opt_state = opt.update(grads, opt.init(params), params)
    mu = opt_state[0].mu
    mu_moved = rebasin.permute(spec, perm, opt_state)[0].mu
    for a, b in zip(jax.tree.leaves(mu_moved), jax.tree.leaves(rebasin.permute(spec, perm, mu))):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(mu_moved["hidden"][0]["kernel"], mu["hidden"][0]["kernel"])


def test_inverse_undoes_a_permutation():
    fn, state = _nnx("lenet300_100")
    spec = rebasin.permutation_spec(fn, state, jnp.zeros((1, 28, 28, 1)))
    perm = rebasin.random_permutation(jax.random.key(0), spec)
    back = rebasin.permute(
        spec, rebasin.invert_permutation(perm), rebasin.permute(spec, perm, state)
    )
    assert all(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), back, state)))


def test_errors_say_what_and_where():
    fn, state = _nnx("lenet300_100")
    spec = rebasin.permutation_spec(fn, state, jnp.zeros((1, 28, 28, 1)))
    perm = rebasin.identity_permutation(spec)
    with pytest.raises(ValueError, match="missing \\['hidden/1'\\]"):
        rebasin.permute(spec, {"hidden/0": perm["hidden/0"]}, state)
    with pytest.raises(ValueError, match="'hidden/0' has shape \\(3,\\); expected \\(300,\\)"):
        rebasin.permute(spec, {**perm, "hidden/0": jnp.arange(3)}, state)
    with pytest.raises(ValueError, match="no leaf of the tree"):
        rebasin.permute(spec, perm, {"other": jnp.ones(3)})
    with pytest.raises(TypeError, match="callable"):
        rebasin.permutation_spec(state, fn, jnp.zeros(3))
    with pytest.raises(ValueError, match="example input"):
        rebasin.permutation_spec(fn, state)


def test_spec_prints_every_permutation_and_its_axes():
    fn, state = _nnx("lenet300_100")
    text = str(rebasin.permutation_spec(fn, state, jnp.zeros((1, 28, 28, 1))))
    assert text.splitlines()[0] == "PermutationSpec: 2 permutations"
    assert "hidden/0: size 300, moves 3 axes" in text and "hidden/1/kernel[0]" in text
