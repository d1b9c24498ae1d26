"""Counting select: the k largest keys of each group by counting passes, for accelerators."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxprune.select._keys import Groups, keep


def _search(rows: jax.Array, need: jax.Array, bits: int) -> jax.Array:
    """Per row of ``rows`` (uint32 below ``2**bits``): the largest ``t`` with at least
    ``need`` entries ``>= t``, so the ``need``-th largest entry (all ones when ``need``
    is 0). Four bits per pass, highest first; each pass counts the entries at or
    above the 15 candidates of the next digit: one reduction, no scatter, no loop."""
    prefix = jnp.zeros(rows.shape[0], jnp.uint32)
    digits = jnp.arange(1, 16, dtype=jnp.uint32)
    for shift in range(4 * ((bits - 1) // 4), -1, -4):
        t = prefix[:, None] | (digits[None, :] << shift)
        at_least = jnp.sum(rows[:, None, :] >= t[:, :, None], axis=2, dtype=jnp.int32)
        digit = jnp.sum(at_least >= need[:, None], axis=1, dtype=jnp.int32)
        prefix = prefix | (digit.astype(jnp.uint32) << shift)
    return prefix


def counting(keys: list[jax.Array], groups: Groups) -> list[jax.Array]:
    """Keeps the top k keys of each group, found by counting: no sort, scatter or loop.

    The groups' keys are laid out as the rows of one zero-padded matrix; the k-th
    largest key of each row is found digit by digit (8 passes of 4 bits, each one
    reduction over the matrix), then the position of the last tie that fits (up to
    5 more passes). A fixed sequence of a few dozen kernels: meant for accelerators,
    where a sort is many kernels and a loop or branch waits on the host.
    """
    members = [[keys[i].ravel() for i in idx] for idx, _ in groups]
    sizes = [sum(m.size for m in ms) for ms in members]
    width = max(max(sizes), 1)
    rows = jnp.stack(
        [jnp.pad(jnp.concatenate(ms), (0, width - n)) for ms, n in zip(members, sizes)]
    )
    need = jnp.stack([jnp.asarray(k, jnp.int32) for _, k in groups])
    need = jnp.clip(need, 0, jnp.sum(rows != 0, axis=1, dtype=jnp.int32))
    kth = _search(rows, need, 32)
    above = jnp.sum(rows > kth[:, None], axis=1, dtype=jnp.int32)
    ties = rows == kth[:, None]
    n_ties = jnp.sum(ties, axis=1, dtype=jnp.int32)
    # The ties that fit are the first need - above of them: the last one is the
    # (n_ties - fit + 1)-th largest position among the ties (positions count from 1).
    fit = need - above
    col = lax.broadcasted_iota(jnp.uint32, rows.shape, 1) + 1
    last = _search(jnp.where(ties, col, 0), n_ties - fit + 1, max(width.bit_length(), 1))
    last = jnp.where(fit > 0, last, 0)
    return keep(keys, groups, kth, last)
