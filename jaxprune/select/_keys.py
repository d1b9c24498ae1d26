"""Order-preserving uint32 keys, counts, and the final keep step shared by every method."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxprune import _fastpath, placement

Groups = Sequence[tuple[tuple[int, ...], Any]]
F32_EXACT = 1 << 24  # groups smaller than this take their bins' sums in float32 (CPU)


def order_keys(score: jax.Array) -> jax.Array:
    """Maps scores to uint32 keys with the same order; NaN -> 1, and 0 is never used.

    Example:
      >>> import jax.numpy as jnp
      >>> k = order_keys(jnp.array([-1.0, 0.0, -0.0, 2.0, jnp.nan]))
      >>> bool(k[0] < k[1] == k[2] < k[3]), int(k[4])
      (True, 1)
    """
    s = score.astype(jnp.float32)
    s = jnp.where(s == 0, jnp.float32(0), s)  # -0.0 ranks with +0.0
    bits = lax.bitcast_convert_type(s, jnp.uint32)
    key = jnp.where(bits >> 31 == 1, ~bits, bits | jnp.uint32(0x80000000))
    return jnp.where(jnp.isnan(s), jnp.uint32(1), key)


def count(x: jax.Array) -> jax.Array:
    """Number of True entries, int32 (see :func:`_sum`).

    Example:
      >>> import jax.numpy as jnp
      >>> int(count(jnp.array([[True, False], [True, True]])))
      3
    """
    dtype = jnp.float32 if x.size < F32_EXACT else jnp.int32  # float32 while exact
    return _sum(x.astype(dtype), tuple(range(x.ndim))).astype(jnp.int32)


def sum_last(x: jax.Array, exact_f32: bool = False) -> jax.Array:
    """Integer sum over the last axis (see :func:`_sum`), in float32 where the caller
    knows it is exact (XLA:CPU multiplies int32 without vector instructions)."""
    dtype = jnp.float32 if exact_f32 else jnp.int32
    return _sum(x.astype(dtype), (x.ndim - 1,)).astype(jnp.int32)


def _sum(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """Sum of ``x`` over ``axes``; on XLA:CPU a product with ones rather than a reduce.

    There every reduce brings its own reducer computation, whose scalars are
    buffers set up at every run of the enclosing program, even inside a
    ``lax.cond`` branch that does not run (a mask update's worth of reduces cost a
    few percent of every MLP training step). XLA vectorises float products on the
    CPU, so counts go through float32 where that is exact. Other backends, and
    explicitly sharded arrays (a sum reduces over the shards), use ``jnp.sum``.
    """
    if not _fastpath.on_cpu() or placement.explicit_sharding(x) is not None:
        return jnp.sum(x, axis=axes)
    ones = jnp.ones([x.shape[a] for a in axes], x.dtype)
    return lax.dot_general(x, ones, ((axes, tuple(range(len(axes)))), ((), ())))


def positions(keys: list[jax.Array], groups: Groups) -> list[tuple[int, jax.Array]]:
    """Per leaf (every leaf belongs to a group): its group, and its entries' positions
    in the group, uint32 from 1, counted over the group's leaves in order, each raveled."""
    out = [None] * len(keys)
    for g, (idx, _) in enumerate(groups):
        offset = 0
        for i in idx:
            pos = jnp.arange(offset + 1, offset + keys[i].size + 1, dtype=jnp.uint32)
            out[i] = (g, pos.reshape(keys[i].shape))
            offset += keys[i].size
    return out


def keep(keys: list[jax.Array], groups: Groups, kth: jax.Array, last: jax.Array) -> list[jax.Array]:
    """Per group ``g``: the keys above ``kth[g]``, and the keys equal to it up to
    position ``last[g]`` (see :func:`positions`). ``kth[g]`` all ones keeps
    nothing: no key is all ones."""
    return [
        (key > kth[g]) | ((key == kth[g]) & (pos <= last[g]))
        for key, (g, pos) in zip(keys, positions(keys, groups))
    ]
