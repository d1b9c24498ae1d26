"""Sort select: the k largest keys of each group by two stable sorts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxprune.select._keys import Groups, keep


def sort(keys: list[jax.Array], groups: Groups) -> list[jax.Array]:
    """Keeps the top k keys of each group: two stable sorts of (key, iota) pairs.

    All candidates are sorted by key, descending (equal keys by position), then
    that order is sorted by group: together a sort by (group, key, position), least
    significant first. Each sort is of one unsigned key with an iota, the kind
    XLA:GPU hands to CUB's radix sort (a few kernels; the group key is 8 bits wide
    up to 256 groups); one sort by two keys would be XLA's own sorting network,
    dozens of kernels over all the operands.
    """
    order = [i for idx, _ in groups for i in idx]
    sizes = [sum(keys[i].size for i in idx) for idx, _ in groups]
    inv = jnp.concatenate([~keys[i].ravel() for i in order])  # ascending: descending keys
    iota = lax.iota(jnp.int32, inv.size)
    _, by_key = lax.sort((inv, iota), num_keys=1, is_stable=True)
    n = len(groups)
    g_type = jnp.uint8 if n <= 1 << 8 else jnp.uint16 if n <= 1 << 16 else jnp.uint32
    gid = jnp.concatenate([jnp.full(size, g, g_type) for g, size in enumerate(sizes)])
    _, by_group = lax.sort((gid[by_key], iota), num_keys=1, is_stable=True)
    k = jnp.stack([jnp.asarray(k, jnp.int32) for _, k in groups])
    start = jnp.array([sum(sizes[:g]) for g in range(n)], jnp.int32)
    # Each group's k-th key and its position, counted from the group's start.
    at = by_key[by_group[start + jnp.maximum(k, 1) - 1]]
    kth = jnp.where(k > 0, ~inv[at], jnp.uint32(0xFFFFFFFF))
    return keep(keys, groups, kth, (at - start + 1).astype(jnp.uint32))
