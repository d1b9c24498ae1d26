"""Which leaves are prunable: the default filter and composable filters."""

import jax
import jax.numpy as jnp
import pytest
from trees import mlp_dict

import jaxprune


def test_custom_prunable_filters():
    params = mlp_dict()
    with_bias = jaxprune.dense_mask(params, prunable=jaxprune.filters.any_of(None, "bias$"))
    assert with_bias["layers_0"]["bias"].shape == (16,)
    no_first = jaxprune.dense_mask(
        params, prunable=jaxprune.filters.all_of(None, jaxprune.filters.not_("layers_0/"))
    )
    assert no_first["layers_0"]["kernel"].shape == ()
    assert no_first["layers_1"]["kernel"].shape == (16, 12)
    only = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.5, prunable=r"layers_1/kernel")
    assert [m.ndim for m in jax.tree.leaves(only)].count(2) == 1
    with pytest.raises(TypeError, match="prunable must be"):
        jaxprune.dense_mask(params, prunable=3)


def test_leaves_named_bias_stay_dense_whatever_their_shape():
    """Equinox's conv biases are (out, 1, 1): a bias all the same."""
    params = {"conv": {"weight": jnp.ones((16, 3, 3, 3)), "bias": jnp.ones((16, 1, 1))}}
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.5)
    assert mask["conv"]["bias"].shape == () and mask["conv"]["weight"].shape == (16, 3, 3, 3)
