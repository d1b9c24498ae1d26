"""Every zoo model: output shapes, kernel layout, jit, train/eval behaviour and initialisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import ZOO_INPUTS

from jaxprune import models


def abstract(name, **overrides):
    return nnx.eval_shape(lambda: models.create(name, rngs=nnx.Rngs(0), **overrides))


def test_every_registered_name_has_an_input_here():
    assert sorted(ZOO_INPUTS) == models.names()


@pytest.mark.parametrize("name", sorted(ZOO_INPUTS))
def test_output_shape_on_natural_input(name):
    graphdef, state = nnx.split(abstract(name, num_classes=7))
    x = jax.ShapeDtypeStruct((3, *ZOO_INPUTS[name]), jnp.float32)
    out = jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x)
    assert out.shape == (3, 7)
    assert out.dtype == jnp.float32


@pytest.mark.parametrize("name", sorted(ZOO_INPUTS))
def test_only_dense_and_conv_kernels_have_ndim_2_or_more(name):
    model = abstract(name)
    for path, leaf in nnx.to_flat_state(nnx.state(model)):
        assert (leaf.ndim >= 2) == (path[-1] == "kernel"), (name, path, leaf.shape)
    kernel_modules = [m for _, m in nnx.iter_graph(model) if isinstance(m, (nnx.Linear, nnx.Conv))]
    assert kernel_modules
    for m in kernel_modules:
        if isinstance(m, nnx.Linear):
            assert m.kernel.shape == (m.in_features, m.out_features)
        else:
            assert m.kernel.shape == (*m.kernel_size, m.in_features, m.out_features)


# Small real instances run under nnx.jit.
SMALL = [
    ("lenet300_100", {}),
    ("lenet5", {}),
    ("conv2", {}),
    ("resnet20", {}),
    ("wrn22", {"width": 1}),
    ("vgg11", {"width": 0.125}),
    ("cnn1d", {}),
    ("mnist1d_mlp", {}),
]
forward = nnx.jit(lambda model, x: model(x))


@pytest.mark.parametrize("name, overrides", SMALL)
def test_forward_under_jit(name, overrides):
    model = models.create(name, rngs=nnx.Rngs(1), **overrides)
    model.eval()
    x = jax.random.normal(jax.random.key(0), (4, *ZOO_INPUTS[name]))
    out = forward(model, x)
    assert out.shape == (4, 10)
    assert bool(jnp.all(jnp.isfinite(out)))
    assert float(jnp.std(out)) > 0


@pytest.mark.parametrize("name", ["lenet300_100", "cnn1d"])
def test_jit_matches_eager(name):
    model = models.create(name, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (4, *ZOO_INPUTS[name]))
    np.testing.assert_allclose(forward(model, x), model(x), rtol=1e-4, atol=1e-5)


def test_batch_norm_follows_train_and_eval():
    model = models.CifarResNet(8, rngs=nnx.Rngs(0))  # ResNet-8: same blocks, fewer
    x = jax.random.normal(jax.random.key(0), (8, 16, 16, 3)) * 2.0 + 1.0
    other = x.at[2:].set(
        jax.random.normal(jax.random.key(1), (6, 16, 16, 3))
    )  # same first 2 examples
    stats = lambda: nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))  # a snapshot
    before = stats()
    model.train()
    train_out = forward(model, x)
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), before, stats())
    assert all(jax.tree.leaves(moved)), "training mode must update every running statistic"
    # in training mode an example's logits depend on the rest of the batch
    assert not np.allclose(forward(model, other)[:2], train_out[:2], atol=1e-4)

    model.eval()
    after_train = stats()
    eval_out = forward(model, x)
    jax.tree.map(np.testing.assert_array_equal, after_train, stats())
    np.testing.assert_allclose(forward(model, other)[:2], eval_out[:2], rtol=1e-5, atol=1e-5)


def test_layer_norm_variant_has_no_batch_statistics():
    assert not jax.tree.leaves(nnx.state(abstract("resnet20", norm="layer"), nnx.BatchStat))
    assert models.count_params(abstract("resnet20", norm="layer")) == models.count_params(
        abstract("resnet20")
    )
    model = models.CifarResNet(8, norm="layer", rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (4, 16, 16, 3))
    other = x.at[1:].set(0.0)
    model.train()
    np.testing.assert_allclose(
        forward(model, other)[:1], forward(model, x)[:1], rtol=1e-5, atol=1e-5
    )


def _largest_kernel(model, kind):
    kernels = [m.kernel.get_value() for _, m in nnx.iter_graph(model) if isinstance(m, kind)]
    return max(kernels, key=lambda k: k.size)


def test_lenet_uses_gaussian_glorot_and_zero_biases():
    model = models.create("lenet300_100", rngs=nnx.Rngs(0))
    k = model.hidden[0].kernel.get_value()  # 784 x 300
    assert float(jnp.std(k)) == pytest.approx(np.sqrt(2.0 / (784 + 300)), rel=0.03)
    assert (
        float(jnp.max(jnp.abs(k))) <= 2.0 * np.sqrt(2.0 / (784 + 300)) / 0.8796 + 1e-6
    )  # truncated at 2 sd
    assert not bool(jnp.any(model.hidden[0].bias.get_value()))


def test_resnet_uses_he_normal_fan_in():
    model = models.CifarResNet(8, rngs=nnx.Rngs(0))
    k = _largest_kernel(model, nnx.Conv)  # a 3x3x64x64 kernel
    fan_in = k.shape[0] * k.shape[1] * k.shape[2]
    assert float(jnp.std(k)) == pytest.approx(np.sqrt(2.0 / fan_in), rel=0.03)


def test_mnist1d_models_use_pytorch_default_init():
    model = models.create("mnist1d_mlp", rngs=nnx.Rngs(0))
    bound = 1.0 / np.sqrt(100)
    for p in (model.hidden[1].kernel.get_value(), model.hidden[1].bias.get_value()):
        assert float(jnp.max(jnp.abs(p))) <= bound
        assert float(jnp.max(jnp.abs(p))) > 0.8 * bound
    assert float(jnp.std(model.hidden[1].kernel.get_value())) == pytest.approx(
        bound / np.sqrt(3), rel=0.05
    )


def test_mnist1d_mlp_is_residual_in_its_second_layer():
    model = models.create("mnist1d_mlp", rngs=nnx.Rngs(0))
    plain = models.create("mnist1d_mlp", rngs=nnx.Rngs(0), residual=False)
    x = jax.random.normal(jax.random.key(0), (4, 40))
    h1 = jax.nn.relu(model.hidden[0](x))
    expected = model.head(h1 + jax.nn.relu(model.hidden[1](h1)))
    np.testing.assert_allclose(model(x), expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(plain(x), model(x))


def test_pad_shortcut_zero_pads_channels():
    block = models.BasicBlock(
        2, 4, 2, norm="batch", shortcut="pad", init="he_normal", rngs=nnx.Rngs(0)
    )
    x = jax.random.normal(jax.random.key(0), (1, 4, 4, 2))
    sc = block._shortcut(x)
    assert sc.shape == (1, 2, 2, 4)
    np.testing.assert_array_equal(sc[..., 1:3], x[:, ::2, ::2, :])
    assert not bool(jnp.any(sc[..., 0])) and not bool(jnp.any(sc[..., 3]))


def test_models_reject_inputs_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"3 channels, got shape \(2, 28, 28, 1\)"):
        models.create("conv2", rngs=nnx.Rngs(0))(jnp.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match="784 input features"):
        models.create("lenet300_100", rngs=nnx.Rngs(0))(jnp.zeros((2, 40)))
    with pytest.raises(ValueError, match=r"\(batch, 40\)"):
        models.create("cnn1d", rngs=nnx.Rngs(0))(jnp.zeros((2, 41)))


def test_same_seed_same_weights():
    a = nnx.state(models.create("conv2", rngs=nnx.Rngs(3), in_channels=1, image_size=8))
    b = nnx.state(models.create("conv2", rngs=nnx.Rngs(3), in_channels=1, image_size=8))
    c = nnx.state(models.create("conv2", rngs=nnx.Rngs(4), in_channels=1, image_size=8))
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(
        a["convs"][0]["kernel"].get_value(), c["convs"][0]["kernel"].get_value()
    )
