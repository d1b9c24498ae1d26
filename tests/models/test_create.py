"""models.create: names, overrides and its error messages."""

import pytest
from flax import nnx

from jaxprune import models


def test_names_lists_the_zoo():
    expected = {
        "mlp", "lenet300_100", "lenet5", "conv2", "conv4", "conv6", "resnet20", "resnet32",
        "resnet56", "wrn22", "wrn22_2", "vgg11", "vgg16", "vgg19", "cnn1d", "mnist1d_mlp",
    }  # fmt: skip
    assert expected <= set(models.names())
    assert models.names() == sorted(models.names())


def test_overrides_reach_the_constructor():
    model = nnx.eval_shape(
        lambda: models.create(
            "mlp", rngs=nnx.Rngs(0), in_features=40, hidden=(32, 16, 8), num_classes=3
        )
    )
    assert [layer.kernel.shape for layer in model.hidden] == [(40, 32), (32, 16), (16, 8)]
    assert model.head.kernel.shape == (8, 3)
    model = nnx.eval_shape(
        lambda: models.create("lenet5", rngs=nnx.Rngs(0), in_channels=3, image_size=32)
    )
    assert model.conv1.kernel.shape == (5, 5, 3, 6)


def test_unknown_name_suggests_the_closest_and_lists_all():
    with pytest.raises(ValueError, match="Unknown model 'lenet300'") as err:
        models.create("lenet300", rngs=nnx.Rngs(0))
    assert "Did you mean 'lenet300_100'" in str(err.value)
    for name in models.names():
        assert name in str(err.value)


def test_unknown_override_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown override.*hiden") as err:
        models.create("mlp", rngs=nnx.Rngs(0), hiden=(10,))
    assert "hidden" in str(err.value) and "num_classes" in str(err.value)


def test_overrides_fixed_by_the_name_are_refused():
    with pytest.raises(ValueError, match="depth fixed by the name 'resnet20'"):
        models.create("resnet20", rngs=nnx.Rngs(0), depth=56)
    with pytest.raises(ValueError, match="width fixed by the name 'wrn22_2'"):
        models.create("wrn22_2", rngs=nnx.Rngs(0), width=4)


def test_bad_choices_are_named():
    with pytest.raises(ValueError, match="norm='group'.*'batch', 'layer'"):
        models.create("resnet20", rngs=nnx.Rngs(0), norm="group")
    with pytest.raises(ValueError, match="shortcut='B'"):
        models.create("resnet20", rngs=nnx.Rngs(0), shortcut="B")
    with pytest.raises(ValueError, match="init='xavier'"):
        models.create("mlp", rngs=nnx.Rngs(0), init="xavier")


@pytest.mark.parametrize(
    "name, override, match",
    [
        ("vgg19", {"width": 0.0}, "width must be a positive number, got 0.0"),
        ("resnet20", {"width": 1.5}, "width must be a positive integer, got 1.5"),
        ("resnet20", {"num_classes": 0}, "num_classes must be a positive integer"),
        ("conv2", {"in_channels": 0}, "in_channels must be a positive integer"),
        ("mlp", {"num_classes": True}, "num_classes must be a positive integer"),
    ],
)
def test_sizes_must_be_positive(name, override, match):
    with pytest.raises(ValueError, match=match):
        models.create(name, rngs=nnx.Rngs(0), **override)


def test_conv_nets_check_the_image_size_they_were_built_for():
    import jax.numpy as jnp

    for name, built, given in (("lenet5", 28, 32), ("conv2", 32, 28)):
        model = models.create(name, rngs=nnx.Rngs(0), in_channels=1)
        with pytest.raises(ValueError, match=f"built for {built}x{built}.*image_size={given}"):
            model(jnp.zeros((2, given, given, 1)))
    with pytest.raises(ValueError, match=r"at least 16x16 pixels \(pad_first=False\)"):
        models.create("lenet5", rngs=nnx.Rngs(0), image_size=12, pad_first=False)
