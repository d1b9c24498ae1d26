"""Sparsity over time: when masks change and by how much (pure, jit-safe).

Example:
  >>> import jaxprune
  >>> s = jaxprune.schedules.polynomial(final=0.9, begin_step=0, end_step=1000)
  >>> [round(float(s(t)), 2) for t in (0, 500, 1000, 2000)]
  [0.0, 0.79, 0.9, 0.9]
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# check_steps stays importable from here for transforms/ until they import jaxprune._checks.
from jaxprune._checks import check_sparsity, check_steps
from jaxprune.typing import Schedule

__all__ = ["cosine_decay", "every", "polynomial"]


def _since(step: Any, begin_step: int) -> jax.Array:
    """``step - begin_step`` in float32, subtracted before the conversion when ``step`` is
    an integer (float32 holds integers exactly only up to 2^24)."""
    t = jnp.asarray(step)
    if jnp.issubdtype(t.dtype, jnp.integer):
        return (t - begin_step).astype(jnp.float32)
    return t.astype(jnp.float32) - begin_step


def polynomial(
    *, final: float, begin_step: int, end_step: int, initial: float = 0.0, power: float = 3.0
) -> Schedule:
    """Gradual pruning (Zhu & Gupta 2017): ``s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3``.

    Constant ``initial`` before ``begin_step`` and ``final`` after ``end_step``.

    Example:
      >>> float(polynomial(final=0.5, begin_step=10, end_step=20)(15))
      0.4375
    """
    check_steps(begin_step=begin_step, end_step=end_step)
    if not begin_step < end_step:
        raise ValueError(f"need begin_step < end_step, got {begin_step} and {end_step}.")
    for name, v in (("initial", initial), ("final", final)):
        check_sparsity(v, name, where="schedules.polynomial")
    real = isinstance(power, (int, float, np.integer, np.floating)) and not isinstance(power, bool)
    if not real or not 0 < power < float("inf"):
        raise ValueError(
            f"power must be a finite number > 0 (3 in Zhu & Gupta 2017), got {power!r}: "
            "otherwise the sparsity never reaches final."
        )

    def schedule(step):
        frac = jnp.clip(_since(step, begin_step) / (end_step - begin_step), 0, 1)
        return final + (initial - final) * (1.0 - frac) ** power

    return schedule


def cosine_decay(*, alpha: float = 0.3, end_step: int) -> Schedule:
    """RigL's drop fraction: ``alpha / 2 * (1 + cos(pi t / end_step))``, 0 from ``end_step`` on.

    Example:
      >>> f = cosine_decay(alpha=0.3, end_step=100)
      >>> [round(float(f(t)), 3) for t in (0, 50, 100)]
      [0.3, 0.15, 0.0]
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (the initial drop fraction) must be in [0, 1], got {alpha}.")
    check_steps(1, end_step=end_step)

    def schedule(step):
        t = jnp.asarray(step, jnp.float32)
        value = alpha / 2 * (1 + jnp.cos(jnp.pi * jnp.minimum(t, end_step) / end_step))
        return jnp.where(t < end_step, value, 0.0)

    return schedule


def every(step: Any, interval: int, *, begin_step: int = 0, end_step: int | None = None) -> Any:
    """Whether ``step`` is an update step: ``begin_step, begin_step + interval, ...`` up to ``end_step``.

    A Python ``bool`` for a Python or NumPy integer step (no device work: a training
    loop can ask it on the host), else a JAX boolean.

    Example:
      >>> [every(t, 100, begin_step=100, end_step=300) for t in (0, 100, 150, 300, 400)]
      [False, True, False, True, False]
    """
    check_steps(1, interval=interval)
    if isinstance(step, (int, np.integer)):
        step = int(step)
        ok = step >= begin_step and (step - begin_step) % interval == 0
        return ok and (end_step is None or step <= end_step)
    step = jnp.asarray(step)
    ok = (step >= begin_step) & ((step - begin_step) % interval == 0)
    if end_step is not None:
        ok &= step <= end_step
    return ok
