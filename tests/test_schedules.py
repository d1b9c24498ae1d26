"""Sparsity schedules over time."""

import jax.numpy as jnp
import pytest

from jaxprune import schedules


def test_polynomial_is_exact_at_steps_past_float32s_integers():
    """Steps beyond 2^24 round in float32; the schedule subtracts in integers first."""
    t0 = 20_000_000
    s = schedules.polynomial(final=0.8, begin_step=t0, end_step=t0 + 10)
    for d in range(11):
        want = 0.8 - 0.8 * (1 - d / 10) ** 3
        assert float(s(jnp.int32(t0 + d))) == pytest.approx(want, abs=1e-6), d
        assert float(s(t0 + d)) == pytest.approx(want, abs=1e-6), d
