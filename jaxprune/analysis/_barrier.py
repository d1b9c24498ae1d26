"""The height of the barrier on a path, from the values measured along it."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune._checks import check_choice

REFERENCES = ("linear", "mean")


def _check_alphas(alphas: Any, n: int) -> None:
    if isinstance(alphas, jax.core.Tracer):
        return
    grid = np.asarray(alphas)
    if grid.shape != (n,):
        raise ValueError(
            f"alphas must be a 1-d array with one entry per value on the path; got shape "
            f"{grid.shape} for {n} values. Pass the alphas the path was evaluated at."
        )
    if not (grid[0] == 0 and grid[-1] == 1 and np.all(np.diff(grid) > 0)):
        raise ValueError(
            f"alphas must increase from 0 to 1 (the endpoints included); got {grid.tolist()}. "
            "Measure the path at both endpoints, in order."
        )


def barrier(values: Any, alphas: Any = None, *, reference: str = "linear") -> jax.Array:
    """The height of a path's barrier from the values (loss, error) measured along it.

    ``values[..., i]`` is measured at ``alphas[i]``; the path is the last axis (the
    endpoints included: ``values[..., 0]`` at alpha 0, ``values[..., -1]`` at 1) and
    any leading axes are a batch. With ``reference="linear"`` (Entezari et al. 2021)
    the barrier is ``max_a [v(a) - ((1 - a) v(0) + a v(1))]``, the largest rise above
    the chord; with ``"mean"`` (Frankle et al. 2020's instability) it is
    ``max_a v(a) - (v(0) + v(1)) / 2``. The maximum runs over the interior points
    (``0 < a < 1``) and the result is signed, never clipped: a path that stays below
    its endpoints has a negative barrier. Frankle et al.'s maximum over ``[0, 1]``
    includes the endpoints; it is ``max(barrier, |v(0) - v(1)| / 2)``.

    Args:
      values: the values along the path, shape ``(..., n)`` with ``n >= 3``.
      alphas: where they were measured: ``n`` increasing numbers from 0 to 1. Default
        ``linspace(0, 1, n)``.
      reference: ``"linear"`` or ``"mean"``.

    Returns:
      The barrier, shape ``values.shape[:-1]``.

    Raises:
      ValueError: an unknown reference, fewer than 3 values, or alphas that do not
        increase from 0 to 1.

    Example:
      >>> float(barrier([0.0, 2.0, 4.0, 1.0], reference="mean"))
      3.5
      >>> round(float(barrier([0.0, 2.0, 4.0, 1.0], reference="linear")), 4)
      3.3333
    """
    check_choice(reference, REFERENCES, "reference")
    values = jnp.asarray(values)
    if values.ndim == 0 or values.shape[-1] < 3:
        raise ValueError(
            f"values must hold at least 3 points along the last axis (both endpoints and an "
            f"interior point); got shape {values.shape}. Evaluate the path at more alphas."
        )
    values = values.astype(jnp.promote_types(values.dtype, jnp.float32))
    n = values.shape[-1]
    if alphas is None:
        alphas = jnp.linspace(0, 1, n, dtype=values.dtype)
    else:
        _check_alphas(alphas, n)
        alphas = jnp.asarray(alphas, values.dtype)
    start, end = values[..., :1], values[..., -1:]
    if reference == "linear":
        base = (1 - alphas) * start + alphas * end
    else:
        base = (start + end) / 2
    return jnp.max((values - base)[..., 1:-1], axis=-1)
