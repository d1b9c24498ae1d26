"""Radix select: the k largest keys of each group by histogram passes, no sort."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from jaxprune import _fastpath, placement
from jaxprune.select import _keys
from jaxprune.select._keys import Groups, keep, positions, sum_last

RADIX_WIDTH = 11  # at most this many bits per histogram pass
COPIES = 4  # interleaved copies of every histogram bin (a power of 2)
SPARE = 1024  # histogram slots the entries outside the bucket are spread over (a power of 2)


def _suffix_sum(x: jax.Array, exact_f32: bool) -> jax.Array:
    """Sums of ``x[..., j:]`` along a short last axis of counts. On XLA:CPU a product
    with a triangular matrix, in float32 where the caller knows every sum is below
    2**24 (else int32, much slower there): quick to compile, unlike a scan's slices."""
    if not _fastpath.on_cpu() or placement.explicit_sharding(x) is not None:
        return lax.associative_scan(jnp.add, x, reverse=True, axis=x.ndim - 1)
    n = x.shape[-1]
    dtype = jnp.float32 if exact_f32 else x.dtype
    upper = lax.iota(jnp.int32, n)[:, None] >= lax.iota(jnp.int32, n)[None, :]
    dims = (((x.ndim - 1,), (0,)), ((), ()))
    return lax.dot_general(x.astype(dtype), upper.astype(dtype), dims).astype(x.dtype)


def _top_bucket(
    hist: jax.Array, need: jax.Array, exact_f32: bool
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per group: the highest bin b with at least ``need`` entries in bins >= b.

    Returns ``(b, entries in bins > b, entries in bin b)``. Every bin's suffix sum
    is taken in 2 levels (rows of 64 bins: short products, whatever the number of
    groups), then b is counted, not searched: no gather, few kernels to compile.
    """
    g, bins = hist.shape
    cols = min(bins, 64)
    rows = hist.reshape(g, bins // cols, cols)
    row_total = sum_last(rows, exact_f32)
    later_rows = _suffix_sum(row_total, exact_f32) - row_total  # entries in rows > r
    suffix = (_suffix_sum(rows, exact_f32) + later_rows[:, :, None]).reshape(g, bins)
    # The suffix sums fall with the bin: the bins reaching need are 0..b.
    reach = suffix >= need[:, None]
    b = sum_last(reach, exact_f32) - 1
    above = sum_last(jnp.where(reach, 0, hist), exact_f32)
    in_b = jnp.where(lax.iota(jnp.int32, bins) == b[:, None], hist, 0)
    return b, above, sum_last(in_b, exact_f32)


def _widths(bits: int) -> list[int]:
    """Bits per histogram pass, most significant first: as few passes as
    ``RADIX_WIDTH`` allows, as even as can be (32 bits: 11, 11, 10).

    Example:
      >>> _widths(32), _widths(18), _widths(5)
      ([11, 11, 10], [9, 9], [5])
    """
    n = -(-bits // RADIX_WIDTH)
    return [bits // n + (p < bits % n) for p in range(n)]


def _kth(
    keys: list[jax.Array], groups: Groups, bits: int = 32
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per group: a threshold, how many keys equal to it fit in the k, and how many
    there are: the k largest keys are those above the threshold and the first that
    fit of those equal to it. The threshold is the k-th largest key (keys below
    ``2**bits``; 3 histogram passes for 32 bits), or, where before the last pass
    every group's bucket fits whole into its k, the lowest key of that bucket (the
    last pass is skipped: all its keys fit). See :func:`_radix`."""
    need = jnp.stack([jnp.asarray(k, jnp.int32) for _, k in groups])
    need = jnp.maximum(need, 0)
    exact_f32 = max(sum(keys[i].size for i in idx) for idx, _ in groups) < _keys.F32_EXACT
    prefix = jnp.zeros(len(groups), jnp.uint32)
    *widths, last = _widths(bits)
    shift = bits
    for p, width in enumerate(widths):
        shift -= width
        prefix, need, in_b = _radix_pass(
            keys, groups, prefix, need, shift, width, exact_f32, p == 0
        )
    if not widths:
        return _radix_pass(keys, groups, prefix, need, 0, last, exact_f32, True)

    def bucket_fits():
        return prefix << last, need, in_b

    def last_pass():
        return _radix_pass(keys, groups, prefix, need, 0, last, exact_f32, False)

    # Usually settled after 22 bits: the bucket of the k-th key holds that key alone.
    return lax.cond(sum_last(in_b != need) == 0, bucket_fits, last_pass)


def _radix_pass(
    keys: list[jax.Array],
    groups: Groups,
    prefix: jax.Array,
    need: jax.Array,
    shift: int,
    width: int,
    exact_f32: bool,
    first: bool,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """One histogram pass over bits ``shift + width`` to ``shift`` of the keys whose
    higher bits equal the group's ``prefix`` (all keys on the ``first`` pass): the
    prefix grown by the bucket of the ``need``-th largest key, how many of the
    group's keys are still needed from that bucket, and how many it holds."""
    n_groups = len(groups)
    bins = 1 << width
    slots = n_groups * bins * COPIES
    hist = jnp.zeros(slots + SPARE, jnp.int32)
    for g, (idx, _) in enumerate(groups):
        for i in idx:
            key = keys[i].ravel()
            valid = key != 0
            if not first:
                valid &= (key >> (shift + width)) == prefix[g]
            b = ((key >> shift) & (bins - 1)).astype(jnp.int32) + g * bins
            pos = lax.iota(jnp.int32, key.size)
            spare = slots + (pos & (SPARE - 1))
            at = jnp.where(valid, b * COPIES + (pos & (COPIES - 1)), spare)
            hist = hist.at[at].add(1, mode="promise_in_bounds")
    hist = sum_last(hist[:slots].reshape(n_groups, bins, COPIES), exact_f32)
    if first:  # at most as many as there are candidates
        need = jnp.minimum(need, sum_last(hist, exact_f32))
    b, above, in_b = _top_bucket(hist, need, exact_f32)
    return (prefix << width) | b.astype(jnp.uint32), need - above, in_b


def radix(keys: list[jax.Array], groups: Groups) -> list[jax.Array]:
    """Keeps the top k keys of each group: radix select with 2 or 3 histogram passes.

    Each pass histograms the next bits of the keys inside the bucket found so
    far (one scatter-add over the data) and picks the bucket holding the k-th
    largest key; after 32 bits the k-th key itself is known. After 22 bits the
    bucket of the k-th key usually holds no other key (a 22-bit bucket of
    float32 magnitudes is 2**-13 of a power of 2 wide): where every group's
    bucket fits whole into its k, the last pass is skipped (a branch). No sort,
    no data dependent shapes. Where only some of the keys equal to it fit (ties),
    the earliest positions win: the last one that fits is found by the same passes
    over the ties' positions, as keys that decrease with position (a branch
    taken only then; positions need fewer bits, so 2 passes up to 4M entries).

    A scatter-add is a chain of dependent memory operations wherever consecutive
    entries hit one address, which is the common case for zeros (pruned weights,
    dead units). So the histograms are spread by position: ``COPIES`` interleaved
    copies of every bin, summed after the pass. The entries outside the bucket (or
    not candidates) are counted in ``SPARE`` spare slots, also spread by position:
    an index past the end, which the scatter skips, costs it a branch that fails
    to be predicted where the candidates are mixed with the others, so a pass
    over spare slots is faster on the CPU than one that skips (BENCHMARKS.md has
    the measurements). Small histograms (2,048 bins) keep that cheap; on a CPU of
    few cores three passes are faster than two of 16 bits, whose 65,536-bin
    histograms cost more to clear and search than the extra pass.
    """
    kth, fit, n_ties = _kth(keys, groups)

    def earliest_ties():  # the position of the last tie that fits, from 1
        # Keys that fall with the position, from the group's size down to 1: as
        # many bits as the largest group needs (2 passes up to 4M entries a group).
        sizes = [sum(keys[i].size for i in idx) for idx, _ in groups]
        by_position = [
            jnp.where(key == kth[g], jnp.uint32(sizes[g] + 1) - pos, jnp.uint32(0))
            for key, (g, pos) in zip(keys, positions(keys, groups))
        ]
        ties = [(idx, fit[g]) for g, (idx, _) in enumerate(groups)]
        top, _, _ = _kth(by_position, ties, max(max(sizes).bit_length(), 1))
        return jnp.where(fit > 0, jnp.array(sizes, jnp.uint32) + 1 - top, jnp.uint32(0))

    def all_ties():
        return jnp.full(len(groups), 0xFFFFFFFF, jnp.uint32)

    last = lax.cond(sum_last(n_ties > fit) == 0, all_ties, earliest_ties)
    return keep(keys, groups, kth, last)
