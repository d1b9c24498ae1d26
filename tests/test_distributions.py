"""Per-layer sparsity: ERK/ER against hand computations, exact totals, keep_count."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference import keep_count_reference

import jaxprune
from jaxprune import _counts, distributions


def conv_net_params():
    return {
        "conv1": {"kernel": jnp.zeros((3, 3, 3, 16)), "bias": jnp.zeros(16)},
        "conv2": {"kernel": jnp.zeros((3, 3, 16, 32)), "bias": jnp.zeros(32)},
        "fc": {"kernel": jnp.zeros((512, 10)), "bias": jnp.zeros(10)},
    }


def test_erk_matches_hand_computation():
    # Sizes 432, 4608, 5120 (N = 10160); raw ERK densities sum(shape)/prod(shape):
    raw = {"conv1": 25 / 432, "conv2": 54 / 4608, "fc": 522 / 5120}
    sizes = {"conv1": 432, "conv2": 4608, "fc": 5120}
    s = 0.9
    budget = keep_count_reference(10160, s)  # 1016
    eps = budget / sum(raw[k] * sizes[k] for k in raw)  # 1016 / 601
    assert eps * raw["conv1"] < 1  # nothing becomes dense at 90%
    got = jaxprune.layer_sparsities(conv_net_params(), s, "erk")
    for k in raw:
        assert got[f"{k}/kernel"] == pytest.approx(1 - eps * raw[k], abs=1 / sizes[k])
    mask = jaxprune.topk_mask(jaxprune.scores.magnitude(conv_net_params()), s, "erk")
    assert sum(int(mask[k]["kernel"].sum()) for k in raw) == budget


def test_erk_makes_layers_dense_and_solves_again():
    s = 0.3
    budget = keep_count_reference(10160, s)  # 7112
    raw = {"conv1": 25 / 432, "conv2": 54 / 4608, "fc": 522 / 5120}
    assert budget / 601 * raw["fc"] > 1  # fc (largest raw density) becomes dense first,
    assert (budget - 5120) / (25 + 54) * raw["conv1"] > 1  # then conv1,
    conv2_kept = budget - 5120 - 432  # and conv2 keeps the rest: 1560 of 4608.
    got = jaxprune.layer_sparsities(conv_net_params(), s, "erk")
    assert got == pytest.approx(
        {"conv1/kernel": 0.0, "conv2/kernel": 1 - conv2_kept / 4608, "fc/kernel": 0.0}
    )


def test_erk_dense_layer_case():
    params = {"a": {"kernel": jnp.zeros((100, 10))}, "b": {"kernel": jnp.zeros((10, 10))}}
    # raw a = 110/1000, b = 20/100; budget at s=0.3 is 770; eps = 770/130 > 1/0.2,
    # so b is dense (100) and a keeps the other 670.
    got = jaxprune.layer_sparsities(params, 0.3, "erk")
    assert got == pytest.approx({"a/kernel": 1 - 670 / 1000, "b/kernel": 0.0})


def test_er_uses_only_the_last_two_dimensions():
    got = jaxprune.layer_sparsities(conv_net_params(), 0.9, "er")
    raw = {"conv1": 19 / 48, "conv2": 48 / 512, "fc": 522 / 5120}
    eps = 1016 / (raw["conv1"] * 432 + raw["conv2"] * 4608 + raw["fc"] * 5120)
    for k, sz in [("conv1", 432), ("conv2", 4608), ("fc", 5120)]:
        assert got[f"{k}/kernel"] == pytest.approx(1 - eps * raw[k], abs=1 / sz)


@given(
    st.lists(
        st.tuples(st.sampled_from([1, 3, 5]), st.integers(1, 64), st.integers(1, 64)),
        min_size=1,
        max_size=5,
    ),
    st.floats(0.0, 0.999),
    st.sampled_from(["er", "erk"]),
)
def test_er_erk_totals_are_exact(shapes, s, kind):
    shapes = [(k, k, a, b) if k > 1 else (a, b) for k, a, b in shapes]
    n = sum(math.prod(sh) for sh in shapes)
    budget = keep_count_reference(n, s)
    counts = _counts.erk_counts(shapes, budget, kind)
    assert sum(counts) == budget
    assert all(0 <= c <= math.prod(sh) for c, sh in zip(counts, shapes))


@given(
    st.lists(st.tuples(st.integers(1, 40), st.integers(1, 40), st.floats(0.0, 1.0)), max_size=4),
    st.floats(0.0, 0.999),
    st.sampled_from(["er", "erk"]),
)
def test_er_erk_with_caps_meet_the_total_and_the_caps(layers, s, kind):
    """Caps (a current mask's counts): the total is exact, no leaf goes over its cap,
    and uncapped leaves keep ERK's proportions (to within rounding)."""
    shapes = [(a, b) for a, b, _ in layers] + [(30, 20)]
    caps = [round(f * a * b) for a, b, f in layers] + [600]
    budget = keep_count_reference(sum(caps), s)
    counts = _counts.erk_counts(shapes, budget, kind, caps)
    assert sum(counts) == budget
    assert all(0 <= c <= cap for c, cap in zip(counts, caps))
    raw = [(a + b) / (a * b) for a, b in shapes]
    free = [i for i, (c, cap) in enumerate(zip(counts, caps)) if c < cap]
    for i in free:  # the same eps for every uncapped leaf (counts are rounded)
        for j in free:
            assert (
                counts[i]
                <= (counts[j] + 1) * raw[i] * math.prod(shapes[i]) / (raw[j] * math.prod(shapes[j]))
                + 1
            )


def test_erk_within_a_mask_keeps_the_exact_total_and_a_subset():
    params = {"a": jnp.ones((100, 100)), "b": jnp.ones((10, 10))}
    within = {"a": jnp.ones((100, 100), bool), "b": jnp.arange(100).reshape(10, 10) < 5}
    scores = jaxprune.scores.random(jax.random.key(0), params)
    for kind in ("er", "erk"):
        mask = jaxprune.topk_mask(scores, 0.5, kind, within=within)
        assert int(mask["a"].sum()) + int(mask["b"].sum()) == keep_count_reference(10_005, 0.5)
        assert int(mask["b"].sum()) == 5  # its ERK share is over 5: all it has left
        assert not np.any(np.asarray(mask["b"]) & ~np.asarray(within["b"]))


def test_keep_count_is_the_same_eagerly_and_under_jit():
    rng = np.random.default_rng(0)
    n = rng.integers(1, 3_000_000, 2000)
    s = np.concatenate([rng.random(1000), rng.integers(0, 100, 1000) / 100]).astype(np.float32)
    eager = [distributions.keep_count(int(a), float(b)) for a, b in zip(n, s)]
    traced = jax.jit(jax.vmap(distributions.keep_count))(jnp.asarray(n), jnp.asarray(s))
    assert eager == np.asarray(traced).tolist()
    assert eager == [keep_count_reference(a, b) for a, b in zip(n, s)]


def test_uniform_and_override_layer_sparsities():
    got = jaxprune.layer_sparsities(
        conv_net_params(), 0.8, overrides={"conv1": 0.0, "fc": lambda s: s / 2}
    )
    assert got == pytest.approx(
        {"conv1/kernel": 0.0, "conv2/kernel": 1 - 922 / 4608, "fc/kernel": 1 - 3072 / 5120}
    )
    with pytest.raises(ValueError, match="per-leaf"):
        jaxprune.layer_sparsities(conv_net_params(), 0.8, "global")
