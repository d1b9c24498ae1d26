"""From scores to exact masks: top-k per layer or globally, N:M, random with equal counts.

Exactly ``k`` entries are kept per group (see :mod:`jaxprune.distributions`),
the ``k`` largest scores, ties broken by position (the earlier leaf, then the
earlier flat index wins), NaN scores ranked below everything. Two algorithms
give the identical mask:

- ``"radix"`` (the CPU default): scores are mapped to order-preserving uint32
  keys and the k-th largest key is found by radix select, histogram passes of
  11/11/10 bits (the last one usually skipped): no sort, linear memory
  traffic, fast where sorting is slow.
- ``"sort"`` (the GPU/TPU default): stable sorts of all candidates by key, then
  by group, where accelerators sort fast.

Both run under ``jit`` and ``vmap``, with traced ``k``, and on sharded arrays;
but not under a ``vmap`` whose mapped axis is sharded on an Explicit mesh (an
ensemble with one member per device, ``jax.sharding.AxisType.Explicit``): JAX fails
to batch the radix select's conditional and the sort's gather there. Pass
``method="count"`` (a counting selection, the same mask) to the transforms then;
on an Auto mesh all three work.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxprune import distributions, filters, masks, placement, scores

Groups = Sequence[tuple[tuple[int, ...], Any]]
METHODS = ("auto", "radix", "sort", "count")
RADIX_WIDTH = 11  # at most this many bits per histogram pass
COPIES = 4  # interleaved copies of every histogram bin (a power of 2)
SPARE = 1024  # histogram slots the entries outside the bucket are spread over (a power of 2)
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


def _sum_last(x: jax.Array, exact_f32: bool = False) -> jax.Array:
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
    if jax.default_backend() != "cpu" or placement.explicit_sharding(x) is not None:
        return jnp.sum(x, axis=axes)
    ones = jnp.ones([x.shape[a] for a in axes], x.dtype)
    return lax.dot_general(x, ones, ((axes, tuple(range(len(axes)))), ((), ())))


def _suffix_sum(x: jax.Array, exact_f32: bool) -> jax.Array:
    """Sums of ``x[..., j:]`` along a short last axis of counts. On XLA:CPU a product
    with a triangular matrix, in float32 where the caller knows every sum is below
    2**24 (else int32, much slower there): quick to compile, unlike a scan's slices."""
    if jax.default_backend() != "cpu" or placement.explicit_sharding(x) is not None:
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
    row_total = _sum_last(rows, exact_f32)
    later_rows = _suffix_sum(row_total, exact_f32) - row_total  # entries in rows > r
    suffix = (_suffix_sum(rows, exact_f32) + later_rows[:, :, None]).reshape(g, bins)
    # The suffix sums fall with the bin: the bins reaching need are 0..b.
    reach = suffix >= need[:, None]
    b = _sum_last(reach, exact_f32) - 1
    above = _sum_last(jnp.where(reach, 0, hist), exact_f32)
    in_b = jnp.where(lax.iota(jnp.int32, bins) == b[:, None], hist, 0)
    return b, above, _sum_last(in_b, exact_f32)


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
    exact_f32 = max(sum(keys[i].size for i in idx) for idx, _ in groups) < F32_EXACT
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
    return lax.cond(_sum_last(in_b != need) == 0, bucket_fits, last_pass)


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
    hist = _sum_last(hist[:slots].reshape(n_groups, bins, COPIES), exact_f32)
    if first:  # at most as many as there are candidates
        need = jnp.minimum(need, _sum_last(hist, exact_f32))
    b, above, in_b = _top_bucket(hist, need, exact_f32)
    return (prefix << width) | b.astype(jnp.uint32), need - above, in_b


def _radix(keys: list[jax.Array], groups: Groups) -> list[jax.Array]:
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
    to be predicted where the candidates are mixed with the others (on the AMD
    EPYC VM of 2026-12-04, a pass over 235,200 keys took 0.27 ms with 10% of
    them candidates and 0.86 ms with 50%, against 0.12-0.13 ms in spare slots,
    ``benchmarks/scatter_pass.py``; the Intel Xeon VM of 2026-12-01 measured the
    skipped index a quarter faster over a whole selection). Small histograms
    (2,048 bins) keep that cheap; on a 2-core CPU the three passes are faster than
    two of 16 bits, whose 65,536-bin histograms cost more to clear and search than
    the extra pass.
    """
    kth, fit, n_ties = _kth(keys, groups)

    def earliest_ties():  # the position of the last tie that fits, from 1
        # Keys that fall with the position, from the group's size down to 1: as
        # many bits as the largest group needs (2 passes up to 4M entries a group).
        sizes = [sum(keys[i].size for i in idx) for idx, _ in groups]
        by_position = [
            jnp.where(key == kth[g], jnp.uint32(sizes[g] + 1) - pos, jnp.uint32(0))
            for key, (g, pos) in zip(keys, _positions(keys, groups))
        ]
        ties = [(idx, fit[g]) for g, (idx, _) in enumerate(groups)]
        top, _, _ = _kth(by_position, ties, max(max(sizes).bit_length(), 1))
        return jnp.where(fit > 0, jnp.array(sizes, jnp.uint32) + 1 - top, jnp.uint32(0))

    def all_ties():
        return jnp.full(len(groups), 0xFFFFFFFF, jnp.uint32)

    last = lax.cond(_sum_last(n_ties > fit) == 0, all_ties, earliest_ties)
    return _keep(keys, groups, kth, last)


def _sort(keys: list[jax.Array], groups: Groups) -> list[jax.Array]:
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
    return _keep(keys, groups, kth, (at - start + 1).astype(jnp.uint32))


def _positions(keys: list[jax.Array], groups: Groups) -> list[tuple[int, jax.Array]]:
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


def _keep(
    keys: list[jax.Array], groups: Groups, kth: jax.Array, last: jax.Array
) -> list[jax.Array]:
    """Per group ``g``: the keys above ``kth[g]``, and the keys equal to it up to
    position ``last[g]`` (see :func:`_positions`). ``kth[g]`` all ones keeps
    nothing: no key is all ones."""
    return [
        (key > kth[g]) | ((key == kth[g]) & (pos <= last[g]))
        for key, (g, pos) in zip(keys, _positions(keys, groups))
    ]


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


def _count(keys: list[jax.Array], groups: Groups) -> list[jax.Array]:
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
    return _keep(keys, groups, kth, last)


def check_method(method: str) -> None:
    """Raises a ValueError unless ``method`` names a selection method.

    Example:
      >>> check_method("radix")
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}.")


@functools.partial(jax.jit, static_argnames=("index", "method"))
def _select_jit(scores, within, ks, index, method):
    keys, restore = [], []
    for s, w in zip(scores, within):
        s, back = placement.replicated(s)
        key = order_keys(s)
        if w is not None:
            key = jnp.where(placement.replicated(w)[0], key, jnp.uint32(0))
        keys.append(key)
        restore.append(back)
    groups = [(idx, ks[g]) for g, idx in enumerate(index)]
    kept = {"radix": _radix, "sort": _sort, "count": _count}[method](keys, groups)
    return [back(m) for back, m in zip(restore, kept)]


def select(
    scores: Sequence[jax.Array],
    within: Sequence[jax.Array | None],
    groups: Groups,
    method: str = "auto",
) -> list[jax.Array]:
    """Keeps the top-k scores of each group of leaves (jitted; cached per shapes).

    Args:
      scores: the candidate leaves' scores.
      within: per leaf, a boolean array of the entries that may be kept, or None.
      groups: ``(leaf indices, k)`` pairs; ``k`` may be traced.
      method: ``"auto"``, ``"radix"``, ``"sort"`` or ``"count"``.

    Returns:
      One boolean array per leaf.
    """
    check_method(method)
    if method == "auto":
        method = "radix" if jax.default_backend() == "cpu" else "sort"
    index = tuple(tuple(idx) for idx, _ in groups)
    ks = jnp.stack([jnp.asarray(k, jnp.int32) for _, k in groups])
    return _select_jit(list(scores), list(within), ks, index, method)


def _candidates(scores, within, prunable):
    """Paths, leaves, treedef, and which score leaves are candidates (with within leaves)."""
    paths, leaves, treedef = masks.leaves_with_paths(scores)
    keep = filters.as_filter(prunable)
    flags = [not masks.is_stand_in(s) and bool(keep(p, s)) for p, s in zip(paths, leaves)]
    if within is not None:
        _, w_leaves, _ = masks.matched_leaves(within, scores, "within", "scores")
        for p, s, w in zip(paths, leaves, w_leaves):
            if getattr(w, "dtype", None) != jnp.bool_:
                raise TypeError(f"within must be a boolean mask; leaf {p!r} has dtype {w.dtype}.")
            if w.ndim and tuple(w.shape) != tuple(s.shape):
                raise ValueError(
                    f"within leaf {p!r} has shape {tuple(w.shape)}, but the scores there "
                    f"have shape {tuple(s.shape)}."
                )
        flags = [f and not masks.is_stand_in(w) for f, w in zip(flags, w_leaves)]
    else:
        w_leaves = [None] * len(leaves)
    masks.require_prunable(paths, flags)
    for p, s, f in zip(paths, leaves, flags):
        if f and not (
            jnp.issubdtype(s.dtype, jnp.floating) or jnp.issubdtype(s.dtype, jnp.integer)
        ):
            raise TypeError(f"Scores must be numbers; leaf {p!r} has dtype {s.dtype}.")
    return paths, leaves, treedef, flags, w_leaves


def plan_groups(
    scores: Any,
    sparsity: Any = None,
    distribution: distributions.Distribution = "uniform",
    *,
    within: Any = None,
    overrides: Mapping[str, distributions.Override] | None = None,
    prunable: filters.FilterLike = None,
) -> tuple[list[int], Groups]:
    """What :func:`topk_mask` keeps, before it looks at the values: candidates and counts.

    Args:
      scores, sparsity, distribution, within, overrides, prunable: as in
        :func:`topk_mask`.

    Returns:
      ``(candidates, groups)``: the flat indices of the candidate leaves, and
      ``(indices into candidates, k)`` per group, as :func:`select` takes them.

    Example:
      >>> import jax.numpy as jnp
      >>> s = {"a": jnp.ones((10, 10)), "b": jnp.ones(10), "c": jnp.ones((5, 4))}
      >>> plan_groups(s, 0.9, "global")
      ([0, 2], [((0, 1), 12)])
    """
    paths, leaves, _, flags, w_leaves = _candidates(scores, within, prunable)
    return _plan(paths, leaves, flags, w_leaves, sparsity, distribution, overrides)


def _plan(paths, leaves, flags, w_leaves, sparsity, distribution, overrides):
    cand = [i for i, f in enumerate(flags) if f]
    counts = [leaves[i].size if w_leaves[i] is None else count(w_leaves[i]) for i in cand]
    groups = distributions.plan(
        [paths[i] for i in cand],
        [leaves[i].shape for i in cand],
        counts,
        sparsity,
        distribution,
        overrides,
    )
    return cand, groups


def topk_mask(
    scores: Any,
    sparsity: Any = None,
    distribution: distributions.Distribution = "uniform",
    *,
    within: Any = None,
    overrides: Mapping[str, distributions.Override] | None = None,
    prunable: filters.FilterLike = None,
    method: str = "auto",
) -> Any:
    """Keeps the highest scores: exactly ``round((1 - s) * n)`` per layer or globally.

    Args:
      scores: a pytree shaped like the parameters (e.g. from
        :mod:`jaxprune.scores`); 0-d leaves are not prunable. Ranked as float32:
        float64 scores closer than float32's resolution (or below its range) tie,
        broken by position; scale them first, as ``scores.synflow(float64=True)`` does.
      sparsity: fraction to prune, in [0, 1); may be traced (not for ER/ERK).
      distribution: ``"uniform"`` (every leaf at ``sparsity``), ``"global"`` (one
        ranking over all leaves), ``"er"``, ``"erk"``, or a mapping from path regex
        to sparsity (explicit per-leaf; unmatched leaves take ``sparsity``).
      within: a current mask; only the entries it keeps are candidates and
        ``sparsity`` is the fraction *of those* to prune, so ``within=mask,
        sparsity=0.2`` prunes 20% of what remains. The result is a subset of
        ``within``: a leaf that is no candidate (``prunable`` leaves it out) keeps
        ``within``'s leaf.
      overrides: per-layer rates, path regex -> sparsity or ``f(sparsity)``, e.g.
        ``{"layers/0/": 0.0, "layers/2/": lambda s: s / 2}``.
      prunable: which leaves may be pruned (default: leaves with ndim >= 2).
      method: ``"auto"`` (``"radix"`` on the CPU, else ``"sort"``), ``"radix"`` (a
        radix select by histograms), ``"sort"`` (stable sorts by key, then by group) or
        ``"count"`` (a threshold found by a fixed number of counting passes; for
        accelerators; slower than the sort on an H200). The same result; speed differs.

    Returns:
      A mask with the structure of ``scores``.

    Example:
      >>> import jax, jaxprune
      >>> params = {"w": jax.random.normal(jax.random.key(0), (10, 10)), "b": jax.numpy.zeros(10)}
      >>> mask = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.9)
      >>> int(mask["w"].sum()), mask["b"].shape
      (10, ())
      >>> int(jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.2, within=mask)["w"].sum())
      8
    """
    paths, leaves, treedef, flags, w_leaves = _candidates(scores, within, prunable)
    cand, groups = _plan(paths, leaves, flags, w_leaves, sparsity, distribution, overrides)
    kept = select([leaves[i] for i in cand], [w_leaves[i] for i in cand], groups, method)
    # Distinct buffers (donating a mask works); a leaf that is no candidate keeps what
    # `within` prunes there, so the result is always a subset of `within`.
    out = [masks.stand_in() if w is None or masks.is_stand_in(w) else jnp.copy(w) for w in w_leaves]
    for i, m in zip(cand, kept):
        out[i] = m
    return treedef.unflatten(out)


def random_like(key: jax.Array, mask: Any) -> Any:
    """A random mask keeping the same number of entries in every leaf as ``mask``.

    The baseline "random pruning with the same per-layer counts".

    Example:
      >>> import jax, jax.numpy as jnp
      >>> mask = {"w": jnp.eye(4, dtype=bool), "b": jnp.ones((), bool)}
      >>> r = random_like(jax.random.key(0), mask)
      >>> int(r["w"].sum()), r["b"].shape
      (4, ())
    """
    scores.check_key(key)
    paths, leaves, treedef = masks.leaves_with_paths(mask)
    flags = [not masks.is_stand_in(m) for m in leaves]
    masks.require_prunable(paths, flags)
    cand = [i for i, f in enumerate(flags) if f]
    uniform = [jax.random.uniform(jax.random.fold_in(key, i), leaves[i].shape) for i in cand]
    groups = [((j,), count(leaves[i])) for j, i in enumerate(cand)]
    out = list(leaves)
    for i, m in zip(cand, select(uniform, [None] * len(cand), groups)):
        out[i] = placement.match_sharding(m, leaves[i])  # the scores were drawn unsharded
    return treedef.unflatten(out)


def nm_mask(
    scores: Any, n: int, m: int, *, axis: int = -2, prunable: filters.FilterLike = None
) -> Any:
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
    n, m = check_nm(n, m)
    paths, leaves, treedef, flags, _ = _candidates(scores, None, prunable)
    out = []
    for path, s, f in zip(paths, leaves, flags):
        if not f:
            out.append(masks.stand_in())
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


def check_nm(n: Any, m: Any) -> tuple[int, int]:
    """``(n, m)`` as Python ints; a ValueError unless both are integers (Python or NumPy,
    not bools) with ``0 <= n <= m``, ``m >= 1``.

    Example:
      >>> import numpy as np
      >>> check_nm(np.int64(2), 4)
      (2, 4)
    """

    def integer(x: Any) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not (integer(n) and integer(m) and 0 <= n <= m and m >= 1):
        raise ValueError(f"N:M needs integers 0 <= n <= m, m >= 1; got n={n!r}, m={m!r}.")
    return int(n), int(m)


@functools.partial(jax.jit, static_argnames=("n", "m", "axis"))
def _nm_leaf(s: jax.Array, n: int, m: int, axis: int) -> jax.Array:
    s, back = placement.replicated(s)
    key = jnp.moveaxis(order_keys(s), axis, -1)
    blocks = key.reshape(*key.shape[:-1], key.shape[-1] // m, m)
    a, b = blocks[..., :, None], blocks[..., None, :]
    earlier = jnp.arange(m)[None, :] < jnp.arange(m)[:, None]
    rank = jnp.sum((b > a) | ((b == a) & earlier), axis=-1)  # how many beat each entry
    return back(jnp.moveaxis((rank < n).reshape(key.shape), -1, axis))
