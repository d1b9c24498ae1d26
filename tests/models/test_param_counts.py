"""Parameter counts against the papers' tables, counted on abstract models (nothing materialised)."""

import pytest
from flax import nnx

from jaxprune import models


def n_params(name: str, **overrides) -> int:
    return models.count_params(
        nnx.eval_shape(lambda: models.create(name, rngs=nnx.Rngs(0), **overrides))
    )


def n_kernel_params(name: str, kind: type) -> int:
    """Weights (no biases) of all layers of one type, as in Frankle & Carbin's 'Conv' column."""
    model = nnx.eval_shape(lambda: models.create(name, rngs=nnx.Rngs(0)))
    return sum(m.kernel.size for _, m in nnx.iter_graph(model) if isinstance(m, kind))


def test_lenet300_100_has_the_lottery_ticket_count():
    assert n_params("lenet300_100") == 266_610


def test_lenet5_counts():
    # classic 6-16-120-84: conv 5x5x1x6 + 5x5x6x16, dense 400-120-84-10, all with biases.
    classic = (
        (25 * 6 + 6) + (25 * 6 * 16 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    )
    assert n_params("lenet5") == classic
    # SNIP's LeNet-5-Caffe: 431K.
    assert round(n_params("lenet5_caffe") / 1e3) == 431


@pytest.mark.parametrize(
    "name, total_m, conv_k",
    [("conv2", 4.3, 38), ("conv4", 2.4, 260)],
)
def test_conv_nets_match_frankle_carbin_table(name, total_m, conv_k):
    assert round(n_params(name) / 1e6, 1) == total_m
    # the table rounds loosely (38,592 is '38K'): within 2%.
    assert n_kernel_params(name, nnx.Conv) == pytest.approx(conv_k * 1e3, rel=0.02)


def test_conv6_conv_layers_match_the_paper():
    # The paper's table gives Conv-6 1.7M in all and 1.1M in its convs. The described
    # architecture (4x4x256 features into dense 256, 256, 10) has 1.1M conv weights but
    # 2.26M in all; we follow the architecture, not the total (see ConvNet's docstring).
    assert round(n_kernel_params("conv6", nnx.Conv) / 1e6, 1) == 1.1
    assert n_params("conv6") == 2_262_602


def test_resnet20_projection_and_pad_shortcuts():
    assert n_params("resnet20") == 272_474
    # option A adds no parameters: the two 1x1 projections and their norms go.
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert n_params("resnet20", shortcut="pad") == 272_474 - projections


@pytest.mark.parametrize(
    "name, millions", [("resnet20", 0.27), ("resnet32", 0.46), ("resnet56", 0.85)]
)
def test_cifar_resnets_match_he_et_al(name, millions):
    assert round(n_params(name, shortcut="pad") / 1e6, 2) == millions


def test_width_multiplies_resnet_channels():
    model = nnx.eval_shape(lambda: models.create("resnet20", rngs=nnx.Rngs(0), width=4))
    assert model.head.kernel.shape == (256, 10)
    assert n_params("resnet20", width=4) > 15 * n_params("resnet20")


@pytest.mark.parametrize("depth, width, millions", [(16, 8, 11.0), (28, 10, 36.5), (40, 4, 8.9)])
def test_wide_resnets_match_zagoruyko_komodakis(depth, width, millions):
    model = nnx.eval_shape(lambda: models.WideResNet(depth, width, rngs=nnx.Rngs(0)))
    assert round(models.count_params(model) / 1e6, 1) == millions


def test_wrn22_2_and_wrn22_with_width():
    assert n_params("wrn22_2") == n_params("wrn22") == n_params("wrn22", width=2) == 1_079_642
    assert n_params("wrn22", width=4) > 3 * n_params("wrn22_2")


def test_vgg19_is_20m_and_vgg_depths_grow():
    assert round(n_params("vgg19") / 1e6, 1) == 20.0
    assert n_params("vgg11") < n_params("vgg16") < n_params("vgg19")


def test_mnist1d_models_match_the_paper_code():
    # ConvBase: Conv1d(1, 25, 5) + 2 x Conv1d(25, 25, 3), Linear(125, 10).
    assert n_params("cnn1d") == (5 * 25 + 25) + 2 * (3 * 25 * 25 + 25) + (125 * 10 + 10)
    # MLPBase: 40-100-100-10.
    assert n_params("mnist1d_mlp") == (40 * 100 + 100) + (100 * 100 + 100) + (100 * 10 + 10)
