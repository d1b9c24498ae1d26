"""Linear interpolation between two pytrees of the same structure."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune._tree import leaves_with_paths, matched_leaves
from jaxprune.typing import PyTree


def _check_alpha(alpha: Any) -> jax.Array:
    number = isinstance(alpha, (int, float, list, tuple)) and not isinstance(alpha, bool)
    if not number and getattr(alpha, "dtype", None) is None:
        raise TypeError(
            "alpha must be a number or a 1-d array of numbers (0 gives a, 1 gives b); got "
            f"{alpha!r}. Pass e.g. 0.5 or jnp.linspace(0, 1, 31)."
        )
    alpha = jnp.asarray(alpha)
    if not (jnp.issubdtype(alpha.dtype, jnp.floating) or jnp.issubdtype(alpha.dtype, jnp.integer)):
        raise TypeError(
            f"alpha must hold real numbers; got dtype {alpha.dtype}. Pass e.g. 0.5 or "
            "jnp.linspace(0, 1, 31)."
        )
    if alpha.ndim > 1:
        raise ValueError(
            f"alpha must be a scalar or a 1-d array (one point of the path per entry); got "
            f"shape {alpha.shape}. Flatten it, or vmap interpolate over the extra axes."
        )
    return alpha


def _check_leaves(path: str, x: Any, y: Any) -> None:
    sx, sy = np.shape(x), np.shape(y)
    dx, dy = jnp.result_type(x), jnp.result_type(y)
    if sx != sy or dx != dy:
        raise ValueError(
            f"a and b differ at {path!r}: a has shape {sx} and dtype {dx}, b has shape {sy} "
            f"and dtype {dy}. Interpolate between two states of the same model."
        )


def _mix(x: Any, y: Any, alpha: jax.Array) -> jax.Array:
    x, y = jnp.asarray(x), jnp.asarray(y)
    if alpha.ndim:
        alpha = alpha.reshape(alpha.shape + (1,) * x.ndim)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        # Step counters, masks and keys are not interpolated: a's, along every alpha.
        return jnp.broadcast_to(x, alpha.shape[:1] + x.shape) if alpha.ndim else x
    # Mixed in at least float32 (bfloat16 leaves), rounded once to the leaf's dtype.
    wide = jnp.promote_types(x.dtype, jnp.float32)
    a = alpha.astype(jnp.promote_types(alpha.dtype, wide))
    mixed = ((1 - a) * x.astype(wide) + a * y.astype(wide)).astype(x.dtype)
    # The endpoints bit for bit (0 * inf, -0.0 + 0.0 and rounding would not be), and
    # where they agree the whole path (0.7 x + 0.3 x need not round to x).
    return jnp.where(a == 0, x, jnp.where(a == 1, y, jnp.where(x == y, x, mixed)))


def interpolate(a: PyTree, b: PyTree, alpha: Any) -> PyTree:
    """The point ``(1 - alpha) * a + alpha * b`` on the straight line between two pytrees.

    Works leaf by leaf on any pytree (Flax Linen dicts, NNX ``State``, wrapped or
    pure, NamedTuples, dicts) and under ``jit``/``vmap``. Floating-point leaves are
    mixed in at least float32 and rounded to their dtype; ``alpha`` 0 and 1 give ``a``
    and ``b`` exactly, bit for bit, and entries where ``a`` and ``b`` are equal (pruned
    zeros, frozen layers) keep that value along the whole path. Integer, boolean and
    key leaves (step counters, masks, random keys) are not interpolated: they are
    taken from ``a``. ``alpha`` outside [0, 1] extrapolates.

    Args:
      a: the start of the path (``alpha = 0``).
      b: the end of the path (``alpha = 1``), with the same structure, shapes and dtypes.
      alpha: a scalar, or a 1-d array of ``n`` points: then every leaf gets a leading
        axis of ``n`` (integer leaves of ``a`` repeated along it), a whole path to
        ``jax.vmap`` over.

    Returns:
      A pytree with the structure of ``a``.

    Raises:
      ValueError: the trees differ (the first differing path is named) or a leaf's
        shape or dtype differs (both are named); ``alpha`` has more than one axis.
      TypeError: ``alpha`` is not a number or an array of numbers.

    Example:
      >>> import jax.numpy as jnp
      >>> a = {"w": jnp.zeros(2), "step": jnp.array(3, jnp.int32)}
      >>> b = {"w": jnp.ones(2), "step": jnp.array(7, jnp.int32)}
      >>> interpolate(a, b, 0.25)["w"]
      Array([0.25, 0.25], dtype=float32)
      >>> path = interpolate(a, b, jnp.linspace(0, 1, 3))
      >>> path["w"].shape, path["step"]
      ((3, 2), Array([3, 3, 3], dtype=int32))
    """
    alpha = _check_alpha(alpha)
    paths, b_leaves, a_leaves = matched_leaves(b, a, "b", "a")
    for path, x, y in zip(paths, a_leaves, b_leaves):
        _check_leaves(path, x, y)
    _, _, treedef = leaves_with_paths(a)
    return jax.tree_util.tree_unflatten(
        treedef, [_mix(x, y, alpha) for x, y in zip(a_leaves, b_leaves)]
    )
