"""N:M structured sparsity: the n highest scores in every run of m entries."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from jaxprune import _checks, filters, placement
from jaxprune._tree import stand_in
from jaxprune.select._keys import order_keys
from jaxprune.select._plan import candidates
from jaxprune.typing import Mask, Scores


def nm_mask(
    scores: Scores, n: int, m: int, *, axis: int = -2, prunable: filters.FilterLike = None
) -> Mask:
    """N:M structured sparsity: in every run of ``m`` consecutive entries along ``axis``
    keep the ``n`` highest scores (ties: the earlier entry; ranked as float32, as in
    :func:`topk_mask`).

    ``axis=-2`` is the input axis of Flax Dense ``(in, out)`` and Conv
    ``(kh, kw, in, out)`` kernels, the axis 2:4 sparse tensor cores want.

    Example:
      >>> import jax.numpy as jnp
      >>> s = {"w": jnp.arange(8.0).reshape(8, 1)}
      >>> nm_mask(s, 2, 4)["w"].ravel().tolist()
      [False, False, True, True, False, False, True, True]
    """
    n, m = _checks.check_nm(n, m)
    paths, leaves, treedef, flags, _ = candidates(scores, None, prunable)
    out = []
    for path, s, f in zip(paths, leaves, flags):
        if not f:
            out.append(stand_in())
            continue
        if not -s.ndim <= axis < s.ndim or s.shape[axis] % m:
            raise ValueError(
                f"N:M along axis {axis} needs that axis to exist and be a multiple of "
                f"m={m}; leaf {path!r} has shape {tuple(s.shape)}. Exclude it with "
                "prunable=... or choose another axis."
            )
        # Placed like the scores: blocks of m across devices come back replicated.
        out.append(placement.match_sharding(_nm_leaf(s, n, m, axis), s))
    return treedef.unflatten(out)


@functools.partial(jax.jit, static_argnames=("n", "m", "axis"))
def _nm_leaf(s: jax.Array, n: int, m: int, axis: int) -> jax.Array:
    s, back = placement._replicated(s)
    key = jnp.moveaxis(order_keys(s), axis, -1)
    blocks = key.reshape(*key.shape[:-1], key.shape[-1] // m, m)
    a, b = blocks[..., :, None], blocks[..., None, :]
    earlier = jnp.arange(m)[None, :] < jnp.arange(m)[:, None]
    rank = jnp.sum((b > a) | ((b == a) & earlier), axis=-1)  # how many beat each entry
    return back(jnp.moveaxis((rank < n).reshape(key.shape), -1, axis))
