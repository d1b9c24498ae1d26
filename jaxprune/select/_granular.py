"""Coarse top-k: whole output units or r x c blocks of a kernel, ranked by pooled scores.

Each candidate leaf's scores are summed per unit (over every axis but the last) or per
block (over ``r x c`` tiles of the last two axes); the pooled scores go through the same
planning and selection as single entries, and the kept units or blocks are spread back
over the leaf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp

from jaxprune import filters
from jaxprune._tree import is_stand_in, stand_in
from jaxprune.select._engine import select
from jaxprune.select._keys import count
from jaxprune.select._plan import candidates, plan
from jaxprune.typing import Distribution, Mask, Override, Scores

Granularity = str | tuple[int, int]
GRANULARITIES = ("element", "unit")


def check_granularity(granularity: Any) -> None:
    """Raises unless ``granularity`` is ``"element"``, ``"unit"`` or a pair of positive ints.

    Example:
      >>> check_granularity((2, 4))
    """
    if isinstance(granularity, str):
        if granularity not in GRANULARITIES:
            raise ValueError(
                f"granularity must be 'element', 'unit' or a block (r, c) of positive ints; "
                f"got {granularity!r}."
            )
        return
    ok = (
        isinstance(granularity, tuple | list)
        and len(granularity) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in granularity)
    )
    if not ok:
        raise ValueError(
            f"granularity must be 'element', 'unit' or a block (r, c) of positive ints "
            f"(rows over a kernel's second-to-last axis, columns over its last); got "
            f"{granularity!r}."
        )


def _pool(path: str, x: jnp.ndarray, granularity: Granularity, any_: bool) -> jnp.ndarray:
    """Scores summed (or a mask reduced by ``any``) per unit or per block of ``x``."""
    if granularity == "element":
        return x
    reduce = jnp.any if any_ else (lambda v, axis: jnp.sum(v.astype(jnp.float32), axis=axis))
    if granularity == "unit":
        return reduce(x, axis=tuple(range(x.ndim - 1)))
    r, c = granularity
    rows, cols = x.shape[-2:] if x.ndim >= 2 else (None, None)
    if x.ndim < 2 or rows % r or cols % c:
        raise ValueError(
            f"granularity {(r, c)}: the leaf at {path!r} has shape {tuple(x.shape)}, whose "
            f"last two axes do not split into {r} x {c} blocks. Choose a block that divides "
            "them, or leave the leaf out with prunable=."
        )
    y = x.reshape(x.shape[:-2] + (rows // r, r, cols // c, c))
    return reduce(y, axis=(x.ndim - 1, x.ndim + 1))


def _spread(kept: jnp.ndarray, shape: tuple[int, ...], granularity: Granularity) -> jnp.ndarray:
    """A pooled keep mask repeated over the entries of its units or blocks."""
    if granularity == "element":
        return kept
    if granularity == "unit":
        return jnp.broadcast_to(kept, shape)
    r, c = granularity
    return jnp.repeat(jnp.repeat(kept, r, axis=-2), c, axis=-1)


def granular_topk(
    scores: Scores,
    sparsity: Any,
    distribution: Distribution,
    *,
    granularity: Granularity,
    within: Mask | None,
    overrides: Mapping[str, Override] | None,
    prunable: filters.FilterLike,
    method: str,
) -> Mask:
    """`topk_mask` at a coarser granularity: exact counts of units or blocks per group.

    A unit or block is a candidate when ``within`` keeps any of its entries; the
    result keeps whole units or blocks, intersected with ``within``.
    """
    paths, leaves, treedef, flags, w_leaves = candidates(scores, within, prunable)
    cand = [i for i, f in enumerate(flags) if f]
    pooled, pooled_w = list(leaves), [None] * len(leaves)
    for i in cand:
        pooled[i] = _pool(paths[i], leaves[i], granularity, any_=False)
        if w_leaves[i] is not None:
            pooled_w[i] = _pool(paths[i], w_leaves[i], granularity, any_=True)
    cand, groups = plan(paths, pooled, flags, pooled_w, sparsity, distribution, overrides)
    kept = select([pooled[i] for i in cand], [pooled_w[i] for i in cand], groups, method)
    out = [stand_in() if w is None or is_stand_in(w) else jnp.copy(w) for w in w_leaves]
    for i, m in zip(cand, kept):
        m = _spread(m, tuple(leaves[i].shape), granularity)
        out[i] = m if w_leaves[i] is None else m & w_leaves[i]
    return treedef.unflatten(out)


def keep_like(
    paths: Sequence[str],
    scores: Sequence[jnp.ndarray],
    masks: Sequence[jnp.ndarray],
    granularity: Granularity = "element",
    distribution: str = "uniform",
) -> list[jnp.ndarray]:
    """Per leaf (``"uniform"``) or in total (``"global"``), as many of the highest-scoring
    entries, units or blocks as ``masks`` keeps (a unit or block counts when it keeps any
    entry); each result shaped like its mask, keeping whole units or blocks.

    Example:
      >>> import jax.numpy as jnp
      >>> m = keep_like(["w"], [jnp.arange(6.0).reshape(2, 3)], [jnp.eye(2, 3, dtype=bool)], "unit")
      >>> m[0].tolist()
      [[False, True, True], [False, True, True]]
    """
    pooled = [_pool(p, s, granularity, any_=False) for p, s in zip(paths, scores)]
    counts = [count(_pool(p, m, granularity, any_=True)) for p, m in zip(paths, masks)]
    if distribution == "uniform":
        groups = [((j,), c) for j, c in enumerate(counts)]
    else:
        groups = [(tuple(range(len(counts))), sum(counts))]
    kept = select(pooled, [None] * len(pooled), groups)
    return [_spread(k, tuple(m.shape), granularity) for k, m in zip(kept, masks)]
