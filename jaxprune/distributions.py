"""Per-layer sparsity: uniform, Erdos-Renyi (ER), ER-Kernel (ERK), global, explicit.

These functions turn "prune 90% of this network" into how many entries each
prunable leaf keeps. Counts are exact: a leaf of ``n`` candidates at sparsity
``s`` keeps ``k = round((1 - s) * n)`` entries, evaluated in float32 (round half
to even) so that the count is the same eagerly, under ``jit`` and on every
backend (:func:`keep_count`).

Per-layer overrides map a path regex to a fixed sparsity or to a function of the
base sparsity, e.g. first layer dense and output layer at half rate::

    overrides = {"layers/0/": 0.0, "layers/2/": lambda s: s / 2}

With ``"uniform"`` each leaf simply takes its override. With ``"global"``,
``"er"`` and ``"erk"`` the overridden leaves keep their fixed counts and the
others share what is left of the overall budget ``round((1 - s) * N)``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from jaxprune import _checks, _counts, _deprecation, filters
from jaxprune._counts import keep_count
from jaxprune._tree import leaves_with_paths, prunable_flags
from jaxprune.typing import Distribution, Override, Params

__all__ = ["keep_count", "layer_sparsities"]


def layer_sparsities(
    params: Params,
    sparsity: float | None,
    distribution: Distribution = "uniform",
    *,
    overrides: Mapping[str, Override] | None = None,
    prunable: filters.FilterLike = None,
) -> dict[str, float]:
    """The sparsity each prunable leaf gets (uniform, ER, ERK or explicit).

    ``"global"`` depends on the scores, so it has no per-leaf answer here.

    Example:
      >>> import numpy as np
      >>> params = {"a": np.ones((100, 10), np.float32), "b": np.ones((10, 10), np.float32)}
      >>> {k: round(v, 4) for k, v in layer_sparsities(params, 0.3, "erk").items()}
      {'a': 0.33, 'b': 0.0}
    """
    if distribution == "global":
        raise ValueError("Global ranking has no per-leaf sparsity before it sees the scores.")
    flags = prunable_flags(params, prunable)
    paths, leaves, _ = leaves_with_paths(params)
    cand = [(p, tuple(l.shape)) for p, l, f in zip(paths, leaves, flags) if f]
    sizes = [math.prod(s) for _, s in cand]
    groups = _counts.plan(
        [p for p, _ in cand], [s for _, s in cand], sizes, sparsity, distribution, overrides
    )
    return {cand[g[0]][0]: 1.0 - int(k) / sizes[g[0]] for g, k in groups}


__getattr__ = _deprecation.module_getattr(
    __name__,
    _deprecation.internal(_checks, "check_sparsity", "concrete")
    | _deprecation.internal(_counts, "plan")
    | {
        "KINDS": ("the names are listed in the docs of topk_mask", lambda: _checks.DISTRIBUTIONS),
        "erk_counts": ("use layer_sparsities(params, s, 'erk')", lambda: _counts.erk_counts),
    },
)
