"""What a top-k keeps before it looks at the values: candidate leaves and counts per group."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp

from jaxprune import _counts, filters
from jaxprune._tree import is_stand_in, leaves_with_paths, matched_leaves, require_prunable
from jaxprune.select._keys import Groups, count
from jaxprune.typing import Distribution, Override, Scores


def candidates(scores, within, prunable):
    """Paths, leaves, treedef, and which score leaves are candidates (with within leaves)."""
    paths, leaves, treedef = leaves_with_paths(scores)
    keep = filters.as_filter(prunable)
    flags = [not is_stand_in(s) and bool(keep(p, s)) for p, s in zip(paths, leaves)]
    if within is not None:
        _, w_leaves, _ = matched_leaves(within, scores, "within", "scores")
        for p, s, w in zip(paths, leaves, w_leaves):
            if getattr(w, "dtype", None) != jnp.bool_:
                raise TypeError(f"within must be a boolean mask; leaf {p!r} has dtype {w.dtype}.")
            if w.ndim and tuple(w.shape) != tuple(s.shape):
                raise ValueError(
                    f"within leaf {p!r} has shape {tuple(w.shape)}, but the scores there "
                    f"have shape {tuple(s.shape)}."
                )
        flags = [f and not is_stand_in(w) for f, w in zip(flags, w_leaves)]
    else:
        w_leaves = [None] * len(leaves)
    require_prunable(paths, flags)
    for p, s, f in zip(paths, leaves, flags):
        if f and not (
            jnp.issubdtype(s.dtype, jnp.floating) or jnp.issubdtype(s.dtype, jnp.integer)
        ):
            raise TypeError(f"Scores must be numbers; leaf {p!r} has dtype {s.dtype}.")
    return paths, leaves, treedef, flags, w_leaves


def plan_groups(
    scores: Scores,
    sparsity: Any = None,
    distribution: Distribution = "uniform",
    *,
    within: Any = None,
    overrides: Mapping[str, Override] | None = None,
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
    paths, leaves, _, flags, w_leaves = candidates(scores, within, prunable)
    return plan(paths, leaves, flags, w_leaves, sparsity, distribution, overrides)


def plan(paths, leaves, flags, w_leaves, sparsity, distribution, overrides):
    cand = [i for i, f in enumerate(flags) if f]
    counts = [leaves[i].size if w_leaves[i] is None else count(w_leaves[i]) for i in cand]
    groups = _counts.plan(
        [paths[i] for i in cand],
        [leaves[i].shape for i in cand],
        counts,
        sparsity,
        distribution,
        overrides,
    )
    return cand, groups
