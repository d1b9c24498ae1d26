"""MACs and bytes of the dense, masked and slimmed model (`export.cost_report`), by hand."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import ZOO_INPUTS

import jaxprune
from jaxprune import export, models, rebasin
from jaxprune._tree import leaves_with_paths

DN = ("NHWC", "HWIO", "NHWC")


def _unit_costs(apply, params, x, sparsity):
    spec = rebasin.permutation_spec(apply, params, x)
    mask = jaxprune.unit_mask(spec, jaxprune.unit_scores(spec, params), sparsity, tree=params)
    small = jaxprune.slim(spec, params, mask)
    report = export.cost_report(apply, params, mask, x, slimmed=small)
    return {l.path: l for l in report.leaves}, report, small


def _normal(shapes, seed=0):
    rng = np.random.default_rng(seed)
    return {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}


def test_a_784_300_10_mlp_dense_masked_and_slimmed_by_hand():
    params = _normal({"w1": (784, 300), "b1": (300,), "w2": (300, 10), "b2": (10,)})
    apply = lambda p, x: jax.nn.relu(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]  # noqa: E731
    rows, report, _ = _unit_costs(apply, params, jnp.ones((1, 784)), 0.5)  # 150 of 300 kept
    assert set(rows) == {"w1", "b1", "w2"}  # b2 moves with no unit group: a stand-in
    w1, b1, w2 = rows["w1"], rows["b1"], rows["w2"]
    assert (w1.macs, w1.kept_macs, w1.slimmed_macs) == (784 * 300, 784 * 150, 784 * 150)
    assert (w2.macs, w2.kept_macs, w2.slimmed_macs) == (300 * 10, 150 * 10, 150 * 10)
    assert (b1.macs, b1.kept_macs, b1.slimmed_macs) == (0, 0, 0)
    assert (w1.nbytes, w1.kept_nbytes, w1.slimmed_nbytes) == (4 * 235_200, 4 * 117_600, 470_400)
    assert (w2.nbytes, w2.slimmed_nbytes, b1.slimmed_nbytes) == (12_000, 6_000, 600)
    assert (report.macs, report.kept_macs, report.slimmed_macs) == (238_200, 119_100, 119_100)
    assert report.slimmed_nbytes == 4 * (117_600 + 150 + 1_500)
    # A batch of 8 counts 8 examples.
    batch = export.cost_report(apply, params, jaxprune.dense_mask(params), jnp.ones((8, 784)))
    assert batch.macs == 8 * 238_200


def _conv(x, w, stride=1, groups=1):
    return jax.lax.conv_general_dilated(
        x, w, (stride, stride), "SAME", dimension_numbers=DN, feature_group_count=groups
    )


def _conv_net(p, x):
    """3x3 SAME conv 3->8, depthwise 3x3 (8 groups), 3x3 stride-2 conv 8->16, dense 256->5."""
    h = jax.nn.relu(_conv(x, p["conv1"]))
    h = jax.nn.relu(_conv(h, p["depthwise"], groups=h.shape[-1]))
    h = jax.nn.relu(_conv(h, p["conv2"], stride=2))
    return h.reshape(x.shape[0], -1) @ p["head"]


def test_a_conv_net_with_a_depthwise_conv_dense_masked_and_slimmed_by_hand():
    params = _normal(
        {"conv1": (3, 3, 3, 8), "depthwise": (3, 3, 1, 8), "conv2": (3, 3, 8, 16), "head": (256, 5)}
    )
    rows, report, small = _unit_costs(_conv_net, params, jnp.ones((1, 8, 8, 3)), 0.5)
    # Output elements x input features per group x kernel window, on an 8x8 image.
    dense = {
        "conv1": 8 * 8 * 8 * (3 * 3 * 3),
        "depthwise": 8 * 8 * 8 * (3 * 3 * 1),  # each channel sees itself only
        "conv2": 4 * 4 * 16 * (3 * 3 * 8),  # stride 2: a 4x4 output
        "head": 4 * 4 * 16 * 5,
    }
    # Half the units: 4 channels after conv1 and the depthwise conv, 8 after conv2.
    slimmed = {
        "conv1": 8 * 8 * 4 * 27,
        "depthwise": 8 * 8 * 4 * 9,
        "conv2": 4 * 4 * 8 * (9 * 4),
        "head": 4 * 4 * 8 * 5,
    }
    assert (
        {k: r.macs for k, r in rows.items()}
        == dense
        == {
            "conv1": 13_824,
            "depthwise": 4_608,
            "conv2": 18_432,
            "head": 1_280,
        }
    )
    assert {k: r.slimmed_macs for k, r in rows.items()} == slimmed
    # Whole units: the masked count (MACs x kept fraction) is the slimmed one here.
    assert {k: r.kept_macs for k, r in rows.items()} == slimmed
    assert small["depthwise"].shape == (3, 3, 1, 4)
    assert {k: r.slimmed_nbytes for k, r in rows.items()} == {
        k: 4 * v.size for k, v in small.items()
    }
    assert report.slimmed_macs == sum(slimmed.values()) < report.macs == sum(dense.values())


def test_the_report_renders_the_slimmed_columns_only_when_filled():
    params = _normal({"w1": (6, 4), "w2": (4, 2)})
    apply = lambda p, x: jax.nn.relu(x @ p["w1"]) @ p["w2"]  # noqa: E731
    rows, report, _ = _unit_costs(apply, params, jnp.ones((1, 6)), 0.5)
    text, md = str(report), report.to_markdown()
    for heading in ("kept MACs", "slimmed MACs", "slimmed bytes"):
        assert heading in text and f"| {heading} |" in md
    assert "| **total** |  | 32 | 16 | 50.00% | 32 | 16 | 16 | 128 | 64 | 64 |" in md
    d = report.to_dict()
    assert d["slimmed_macs"] == 16 and d["leaves"][0]["slimmed_nbytes"] == 48
    plain = export.cost_report(apply, params, jaxprune.dense_mask(params), jnp.ones((1, 6)))
    assert "slimmed" not in str(plain) and "slimmed" not in plain.to_markdown()
    assert "slimmed_macs" not in plain.to_dict() and "kept MACs" in plain.to_markdown()
    assert "MACs" not in jaxprune.sparsity_report(params).to_markdown()


def test_slimmed_variables_of_another_structure_are_refused_by_path():
    params = _normal({"w1": (6, 4), "w2": (4, 2)})
    apply = lambda p, x: x @ p["w1"] @ p["w2"]  # noqa: E731
    with pytest.raises(ValueError, match="slimmed variables have no leaf 'w2'"):
        export.cost_report(
            apply,
            params,
            jaxprune.dense_mask(params),
            jnp.ones((1, 6)),
            slimmed={"w1": jnp.ones((6, 2))},
        )


def _zoo(name, **overrides):
    model = models.create(name, rngs=nnx.Rngs(0), **overrides)
    model.eval()
    graphdef, state = nnx.split(model)
    return (lambda v, x: nnx.merge(graphdef, v)(x)), state  # noqa: E731


def _direct_macs(variables, side):
    """Sum over kernels of (output pixels) x (kernel size): ``side(path)`` is the output side."""
    total = 0
    for path, leaf in zip(*leaves_with_paths(variables)[:2]):
        if path.endswith("kernel"):
            total += side(path) ** 2 * int(np.prod(leaf.shape))  # a Dense kernel: side 1
    return total


def _resnet20_side(path):
    """Output side of a ResNet-20 kernel on a 32x32 image: 32, then 16, 8 per stage."""
    if "blocks" not in path:
        return 32 if path.startswith("stem") else 1
    block = int(path.split("/")[1])
    return 32 >> (block // 3)


def _lenet5_side(path):
    return {"conv1/kernel": 28, "conv2/kernel": 10}.get(path, 1)


def test_resnet20_dense_macs_by_the_hand_formula():
    # Stem 32*32*27*16; stage 1: six 3x3 16->16 convs on 32x32; stages 2 and 3: a
    # stride-2 conv, then five 3x3 convs on 16x16 (32 ch) and 8x8 (64 ch); the head 64*10.
    hand = (
        32 * 32 * 27 * 16
        + 6 * 32 * 32 * 144 * 16
        + 16 * 16 * 144 * 32
        + 5 * 16 * 16 * 288 * 32
        + 8 * 8 * 288 * 64
        + 5 * 8 * 8 * 576 * 64
        + 64 * 10
    )
    assert hand == 40_551_040  # He et al.'s ResNet-20 (option A shortcuts): ~40.55M
    x = jnp.ones((1, *ZOO_INPUTS["resnet20"]))
    apply, state = _zoo("resnet20", shortcut="pad")
    assert export.cost_report(apply, state, jaxprune.dense_mask(state), x).macs == hand
    # The zoo's default projection shortcuts add two 1x1 stride-2 convs: 16*16*16*32, 8*8*32*64.
    apply, state = _zoo("resnet20")
    report = export.cost_report(apply, state, jaxprune.dense_mask(state), x)
    assert report.macs == hand + 131_072 + 131_072 == _direct_macs(state, _resnet20_side)


@pytest.mark.parametrize(
    "name, side",
    [("lenet5", _lenet5_side), ("resnet20", _resnet20_side)],
    ids=["lenet5", "resnet20"],
)
def test_zoo_slimmed_macs_equal_a_direct_count_of_the_slimmed_model(name, side):
    apply, state = _zoo(name)
    x = jnp.ones((1, *ZOO_INPUTS[name]))
    rows, report, small = _unit_costs(apply, state, x, 0.5)
    assert report.macs == _direct_macs(state, side)
    assert report.slimmed_macs == _direct_macs(small, side) < report.macs / 3
    # Every kernel has a row (a unit mask moves them all), its slimmed bytes its own.
    for path, v in zip(*leaves_with_paths(small)[:2]):
        if path.endswith("kernel"):
            assert rows[path].slimmed_nbytes == v.size * v.dtype.itemsize
