"""Masks from scores: exactly the top k per layer or globally, and random masks of equal counts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import _checks, filters, placement
from jaxprune._tree import is_stand_in, leaves_with_paths, require_prunable, stand_in
from jaxprune.select._engine import select
from jaxprune.select._granular import Granularity, check_granularity, granular_topk, keep_like
from jaxprune.select._plan import candidates, plan
from jaxprune.typing import Distribution, Mask, Override, PRNGKey, Scores


def topk_mask(
    scores: Scores,
    sparsity: Any = None,
    distribution: Distribution = "uniform",
    *,
    within: Mask | None = None,
    overrides: Mapping[str, Override] | None = None,
    prunable: filters.FilterLike = None,
    method: str = "auto",
    granularity: Granularity = "element",
    spec: Any = None,
) -> Mask:
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
        accelerators; on a GPU usually slower than the sort). The same result; speed differs.
      granularity: what one kept or pruned item is. ``"element"`` (the default): one
        entry. ``"unit"``: one output unit of a leaf (a Dense column, a Conv output
        channel: a slice of the last axis), scored by the sum of its scores over the
        other axes; ``n`` and ``k`` count units (``sparsity`` is the fraction of units
        pruned). ``(r, c)``: an ``r x c`` block of the last two axes (each window
        position of a Conv kernel apart), scored by its sum; every candidate's last
        two axes must divide into blocks. Every distribution, ``within`` and
        ``overrides`` apply to the pooled items (ER/ERK to the shape of the pooled
        leaf); a unit or block is a candidate when ``within`` keeps any of its entries.
        The units of one leaf are pruned alone: the next layer's input rows, biases and
        norms are not touched; for units removed in every layer they touch, see
        :func:`jaxprune.unit_mask`.
      spec: not taken here (``select`` sits below ``rebasin`` in the house): coupled
        unit masks from a permutation spec are :func:`jaxprune.unit_mask`'s; passing
        one raises a ValueError saying so.

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
      >>> units = jaxprune.topk_mask(jaxprune.scores.magnitude(params), 0.7, granularity="unit")
      >>> units["w"].any(axis=0).sum().item(), units["w"].all(axis=0).sum().item()
      (3, 3)
    """
    if spec is not None:
        raise ValueError(
            "topk_mask does not take a permutation spec: units coupled across layers (a "
            "unit pruned in every weight, bias and norm of its group) come from "
            "jaxprune.unit_mask(spec, jaxprune.unit_scores(spec, scores), sparsity, "
            "tree=params). For each layer's output units alone, pass granularity='unit' "
            "without spec."
        )
    check_granularity(granularity)
    if granularity != "element":
        return granular_topk(
            scores,
            sparsity,
            distribution,
            granularity=tuple(granularity) if isinstance(granularity, list) else granularity,
            within=within,
            overrides=overrides,
            prunable=prunable,
            method=method,
        )
    paths, leaves, treedef, flags, w_leaves = candidates(scores, within, prunable)
    cand, groups = plan(paths, leaves, flags, w_leaves, sparsity, distribution, overrides)
    kept = select([leaves[i] for i in cand], [w_leaves[i] for i in cand], groups, method)
    # Distinct buffers (donating a mask works); a leaf that is no candidate keeps what
    # `within` prunes there, so the result is always a subset of `within`.
    out = [stand_in() if w is None or is_stand_in(w) else jnp.copy(w) for w in w_leaves]
    for i, m in zip(cand, kept):
        out[i] = m
    return treedef.unflatten(out)


def random_like(key: PRNGKey, mask: Mask, *, granularity: Granularity = "element") -> Mask:
    """A random mask keeping the same number of entries in every leaf as ``mask``.

    The baseline "random pruning with the same per-layer counts" (the lottery-ticket
    papers' random pruning; ``jaxprune.lottery.random_pruning`` was this function).
    For a random mask at a target sparsity use :func:`jaxprune.random_mask`; for
    random scores, :func:`jaxprune.scores.random`.

    Args:
      key: a JAX random key.
      mask: the mask whose per-leaf counts are kept.
      granularity: ``"element"``; ``"unit"`` or an ``(r, c)`` block (as in
        :func:`topk_mask`): random whole units or blocks, as many per leaf as ``mask``
        keeps any entry of.

    Returns:
      A mask with the structure of ``mask``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> mask = {"w": jnp.eye(4, dtype=bool), "b": jnp.ones((), bool)}
      >>> r = random_like(jax.random.key(0), mask)
      >>> int(r["w"].sum()), r["b"].shape
      (4, ())
    """
    _checks.check_key(key)
    check_granularity(granularity)
    granularity = tuple(granularity) if isinstance(granularity, list) else granularity
    paths, leaves, treedef = leaves_with_paths(mask)
    flags = [not is_stand_in(m) for m in leaves]
    require_prunable(paths, flags)
    cand = [i for i, f in enumerate(flags) if f]
    # Uniform entries summed per unit (or block) are i.i.d. per unit of a leaf: a uniform
    # random order of its units; at "element" these are the draws of earlier releases.
    uniform = [jax.random.uniform(jax.random.fold_in(key, i), leaves[i].shape) for i in cand]
    kept = keep_like([paths[i] for i in cand], uniform, [leaves[i] for i in cand], granularity)
    out = list(leaves)
    for i, m in zip(cand, kept):
        out[i] = placement.match_sharding(m, leaves[i])  # the scores were drawn unsharded
    return treedef.unflatten(out)
