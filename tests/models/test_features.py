"""models.features: every hidden ReLU of every zoo family, the model left as it was."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxprune import analysis, models

# name, overrides, input shape, the expected feature shapes (batch 2).
CASES = {
    "mlp": ("lenet300_100", {}, (28, 28, 1), {"hidden/0": (300,), "hidden/1": (100,)}),
    "mnist1d_mlp": ("mnist1d_mlp", {}, (40,), {"hidden/0": (100,), "hidden/1": (100,)}),
    "lenet5": (
        "lenet5",
        {},
        (28, 28, 1),
        {"conv1": (28, 28, 6), "conv2": (10, 10, 16), "hidden/0": (120,), "hidden/1": (84,)},
    ),
    "cnn1d": (
        "cnn1d",
        {},
        (40,),
        {f"convs/{i}": s for i, s in enumerate([(19, 25), (10, 25), (5, 25)])},
    ),
    "conv2": (
        "conv2",
        {"image_size": 8},
        (8, 8, 3),
        {"convs/0": (8, 8, 64), "convs/1": (8, 8, 64), "hidden/0": (256,), "hidden/1": (256,)},
    ),
    "vgg11": (
        "vgg11",
        {"width": 0.125},
        (32, 32, 3),
        {
            f"convs/{i}": (size, size, c)
            for i, (size, c) in enumerate(
                [(32, 8), (16, 16), (8, 32), (8, 32), (4, 64), (4, 64), (2, 64), (2, 64)]
            )
        },
    ),
}


def _resnet20_shapes():
    shapes = {"stem": (8, 8, 16)}
    for i in range(9):
        size, c = [(8, 16), (4, 32), (2, 64)][i // 3]
        shapes[f"blocks/{i}/conv1"] = shapes[f"blocks/{i}"] = (size, size, c)
    return shapes


def _wrn22_1_shapes():
    # Pre-activation blocks: a ReLU on each block's input (norm1) and one inside (conv1).
    shapes, size_in, c_in = {}, 8, 16
    for i in range(9):
        size, c = [(8, 16), (4, 32), (2, 64)][i // 3]
        shapes[f"blocks/{i}/norm1"] = (size_in, size_in, c_in)
        shapes[f"blocks/{i}/conv1"] = (size, size, c)
        size_in, c_in = size, c
    shapes["final_norm"] = (2, 2, 64)
    return shapes


CASES["resnet20"] = ("resnet20", {}, (8, 8, 3), _resnet20_shapes())
CASES["wrn22_1"] = ("wrn22", {"width": 1}, (8, 8, 3), _wrn22_1_shapes())


@pytest.mark.parametrize("case", sorted(CASES))
def test_features_reads_every_hidden_activation(case):
    name, overrides, in_shape, shapes = CASES[case]
    model = models.create(name, rngs=nnx.Rngs(0), **overrides)
    model.eval()
    x = jax.random.normal(jax.random.key(1), (2, *in_shape))
    before = jax.tree.map(np.asarray, nnx.state(model))
    want = model(x)
    feats = models.features(model, x)
    assert {k: v.shape[1:] for k, v in feats.items()} == shapes
    assert all(v.shape[0] == 2 and float(v.min()) >= 0.0 for v in feats.values())
    # The parameters (and batch statistics) are bit for bit what they were, the model has
    # gained no variables, and its output is that of a normal call.
    after = nnx.state(model)
    assert jax.tree.structure(after) == jax.tree.structure(before)
    for p, q in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
        np.testing.assert_array_equal(p, q)
    out, _ = nnx.capture(model, nnx.Intermediate)(x)
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(model(x), want)


def test_features_are_the_activations_of_the_forward_pass():
    model = models.create("mlp", rngs=nnx.Rngs(0), in_features=5, hidden=(4, 3))
    x = jax.random.normal(jax.random.key(0), (6, 5))
    feats = models.features(model, x)
    h0 = jax.nn.relu(x @ model.hidden[0].kernel[...] + model.hidden[0].bias[...])
    h1 = jax.nn.relu(h0 @ model.hidden[1].kernel[...] + model.hidden[1].bias[...])
    np.testing.assert_allclose(feats["hidden/0"], h0, rtol=1e-6)
    np.testing.assert_allclose(feats["hidden/1"], h1, rtol=1e-6)


def test_features_under_jit_and_vmap_over_stacked_parameters():
    graphdef, state = nnx.split(models.create("mnist1d_mlp", rngs=nnx.Rngs(0)))
    _, other = nnx.split(models.create("mnist1d_mlp", rngs=nnx.Rngs(1)))
    x = jax.random.normal(jax.random.key(2), (8, 40))
    alphas = jnp.linspace(0, 1, 3)

    @jax.jit
    def along(path):
        return jax.vmap(lambda s: models.features(nnx.merge(graphdef, s), x))(path)

    feats = along(analysis.interpolate(state, other, alphas))
    assert feats["hidden/0"].shape == (3, 8, 100)
    for i, s in ((0, state), (2, other)):  # the endpoints of the path: the two networks
        one = models.features(nnx.merge(graphdef, s), x)
        np.testing.assert_allclose(feats["hidden/1"][i], one["hidden/1"], rtol=1e-5, atol=1e-6)


def test_dead_unit_rate_of_a_fresh_mlp():
    model = models.create("lenet300_100", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (64, 784))
    rates = analysis.dead_unit_rate(models.features(model, x))
    assert set(rates.per_layer) == {"hidden/0", "hidden/1"}
    for r in (rates.static, rates.dynamic, *[l.dynamic for l in rates.per_layer.values()]):
        assert 0.0 <= float(r) <= 1.0
    # A fresh ReLU layer on centred input: about half its units off on each example.
    assert 0.3 < float(rates.dynamic) < 0.7


def test_a_failed_call_leaves_no_capture_buffers():
    model = models.create("lenet300_100", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="784 input features"):
        models.features(model, jnp.zeros((2, 10)))
    before = jax.tree.structure(nnx.state(model))
    model(jnp.zeros((2, 784)))  # no sow outside capture: would warn (an error here)
    assert jax.tree.structure(nnx.state(model)) == before
