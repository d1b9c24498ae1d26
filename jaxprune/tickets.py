"""Lottery-ticket rounds beyond plain IMP: AP's pruning round and COLT's overlap round.

Both prune exactly the counts :func:`jaxprune.lottery.prune_round` would (per layer, or
in total with ``distribution="global"``), so their tickets sit at the same sparsity as
IMP's, round by round; only *which* weights go differs.

- :func:`ap_prune_round` (Liu, Ghosh, Tan & Motani 2022, "AP: selective activation for
  de-sparsifying pruned neural networks"): a share of the round's budget is taken from
  the kept *negative* weights that moved least over the round, the rest by magnitude.
- :func:`overlap_prune_round` (Hossain et al. 2022, "COLT: Cyclic Overlapping Lottery
  Tickets"): copies trained on different data segments each keep their largest weights;
  the next mask is the overlap of their masks, sized to IMP's count of the round.

The drivers that train the rounds are ``jaxprune.train.run_imp`` (``IMPSettings.ap_share``)
and ``jaxprune.train.run_colt``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import _checks, lottery
from jaxprune._tree import is_stand_in, leaves_with_paths, matched_leaves
from jaxprune.select import select
from jaxprune.select._keys import count
from jaxprune.typing import Mask, Override, Params

__all__ = ["ap_prune_round", "overlap_prune_round"]


def _groups(n: int, distribution: str, where: str) -> list[tuple[int, ...]]:
    """The leaf indices ranked together: each leaf alone, or all of them."""
    _checks.check_choice(distribution, ("uniform", "global"), "distribution", where)
    return [(j,) for j in range(n)] if distribution == "uniform" else [tuple(range(n))]


def _candidates(mask: Mask) -> tuple[list[int], list[Any], Any]:
    """(indices of the pruned leaves, every mask leaf, treedef)."""
    _, leaves, treedef = leaves_with_paths(mask)
    return [i for i, m in enumerate(leaves) if not is_stand_in(m)], leaves, treedef


def _targets(plain: Mask, idx: Sequence[int], groups) -> list[jax.Array]:
    """Kept count of every group in IMP's mask of the round."""
    _, leaves, _ = leaves_with_paths(plain)
    kept = [count(leaves[i]) for i in idx]
    return [sum(kept[j] for j in g) for g in groups]


def ap_prune_round(
    params: Params,
    start: Params,
    mask: Mask,
    rate: float,
    *,
    ap_share: float = 0.1,
    distribution: str = "uniform",
    overrides: Mapping[str, Override] | None = None,
) -> Mask:
    """An IMP round whose budget is partly spent on negative weights that moved least (AP).

    The round prunes exactly as many weights per layer (``"uniform"``) or in total
    (``"global"``) as :func:`jaxprune.lottery.prune_round`. Of that budget ``b``,
    ``round(ap_share * b)`` (half to even, as Python's ``round``) are the kept weights
    with ``params < 0`` and the smallest ``|params - start|``; when fewer negative weights
    are kept, all of them go and magnitude prunes the remainder. The rest of the budget
    is pruned by magnitude among the weights left. Ties go to the earlier position.

    Args:
      params: the trained parameters of this round.
      start: the parameters the round started from (the rewind point of the ticket).
      mask: the current mask.
      rate: fraction of the remaining weights to prune (0.2 in IMP).
      ap_share: the fraction of the budget taken by AP, in ``[0, 1]`` (the paper's
        code: 0.1, i.e. 2 of 20 points); 0 gives ``prune_round``'s mask.
      distribution: ``"uniform"`` (layer-wise) or ``"global"``.
      overrides: per-layer rates, as for ``prune_round``.

    Returns:
      The next mask, a subset of ``mask`` with ``prune_round``'s kept counts.

    Example:
      >>> import jax.numpy as jnp, jaxprune
      >>> start = {"w": jnp.array([[1.0, -1.0, 0.5, -0.2, 2.0]])}
      >>> params = {"w": jnp.array([[1.1, -1.0, 0.4, -0.9, 2.0]])}
      >>> mask = jaxprune.dense_mask(params)
      >>> jaxprune.lottery.prune_round(params, mask, 0.4)["w"].astype(int).tolist()
      [[1, 1, 0, 0, 1]]
      >>> ap_prune_round(params, start, mask, 0.4, ap_share=0.5)["w"].astype(int).tolist()
      [[1, 0, 0, 1, 1]]
    """
    if not 0.0 <= ap_share <= 1.0:
        raise ValueError(
            f"ap_share (the fraction of a round's budget pruned among negative, little-moved "
            f"weights) must be in [0, 1]; got {ap_share} (ap_prune_round). The paper uses 0.1."
        )
    plain = lottery.prune_round(params, mask, rate, distribution=distribution, overrides=overrides)
    idx, m_leaves, treedef = _candidates(mask)
    _, p_leaves, _ = matched_leaves(params, mask, "params", "mask")
    _, s_leaves, _ = matched_leaves(start, mask, "start", "mask")
    groups = _groups(len(idx), distribution, "ap_prune_round")
    masks_ = [m_leaves[i] for i in idx]
    w = [p_leaves[i] for i in idx]
    negative = [m & (x < 0) for m, x in zip(masks_, w)]
    targets = _targets(plain, idx, groups)
    # AP's part: keep all but the n_ap least-moved negatives; these n_ap are pruned.
    ap_groups = []
    for g, target in zip(groups, targets):
        budget = sum(count(masks_[j]) for j in g) - target
        n_neg = sum(count(negative[j]) for j in g)
        n_ap = jnp.minimum(jnp.round(ap_share * budget).astype(jnp.int32), n_neg)
        ap_groups.append((g, n_neg - n_ap))
    moved = [jnp.abs(x - s_leaves[i]) for x, i in zip(w, idx)]
    spared = select(moved, negative, ap_groups)
    left = [m & ~(n & ~s) for m, n, s in zip(masks_, negative, spared)]
    # The rest of the budget by magnitude among what AP left.
    kept = select([jnp.abs(x) for x in w], left, list(zip(groups, targets)))
    return _fill(m_leaves, idx, kept, treedef)


def overlap_prune_round(
    segment_params: Sequence[Params],
    mask: Mask,
    rate: float,
    *,
    distribution: str = "uniform",
    overrides: Mapping[str, Override] | None = None,
) -> tuple[Mask, list[Mask]]:
    """COLT's round: the overlap of the magnitude masks of copies trained on data segments.

    Segment ``j`` of ``K`` keeps its ``k_j`` largest-magnitude weights among those ``mask``
    keeps (per layer, or in total with ``"global"``; ties to the earlier position). The
    ``k_j`` are the smallest counts whose overlap (the weights every segment keeps) holds
    exactly :func:`jaxprune.lottery.prune_round`'s kept count of the round; they differ
    by at most one between segments (the earlier segments keep one more). So the overlap
    has IMP's sparsity of the round, and each segment's own mask is denser.

    Args:
      segment_params: the trained parameters of each segment's copy (``K >= 1``).
      mask: the current mask (every copy trained under it).
      rate: fraction of the remaining weights the overlap prunes.
      distribution: ``"uniform"`` (layer-wise) or ``"global"``.
      overrides: per-layer rates, as for ``prune_round``.

    Returns:
      ``(overlap, segment_masks)``: the next mask, equal to the intersection of the
      ``segment_masks`` (one per segment).

    Example:
      >>> import jax.numpy as jnp, jaxprune
      >>> a = {"w": jnp.array([[4.0, 3.0, 2.0, 1.0]])}
      >>> b = {"w": jnp.array([[1.0, 3.0, 4.0, 2.0]])}
      >>> overlap, (ma, mb) = overlap_prune_round([a, b], jaxprune.dense_mask(a), 0.75)
      >>> overlap["w"].astype(int).tolist(), ma["w"].astype(int).tolist()
      ([[0, 1, 0, 0]], [[1, 1, 0, 0]])
    """
    if not segment_params:
        raise ValueError("overlap_prune_round needs the parameters of at least one segment.")
    plain = lottery.prune_round(
        segment_params[0], mask, rate, distribution=distribution, overrides=overrides
    )
    idx, m_leaves, treedef = _candidates(mask)
    groups = _groups(len(idx), distribution, "overlap_prune_round")
    targets = _targets(plain, idx, groups)
    weights = [
        [leaves[i] for i in idx]
        for leaves in (matched_leaves(p, mask, "segment_params", "mask")[1] for p in segment_params)
    ]
    n_seg = len(segment_params)
    overlap = [None] * len(idx)
    segments = [[None] * len(idx) for _ in range(n_seg)]
    for g, target in zip(groups, targets):
        within = jnp.concatenate([m_leaves[idx[j]].ravel() for j in g])
        # ranks[s]: each weight's place (0 = largest) in segment s; "worst" folds the
        # segment into the rank so that it is unique: overlap = the smallest `target`.
        ranks = [_ranks(jnp.concatenate([w[j].ravel() for j in g]), within) for w in weights]
        worst = jnp.max(jnp.stack([r * n_seg + s for s, r in enumerate(ranks)]), axis=0)
        cut = jnp.where(target > 0, jnp.sort(worst)[jnp.maximum(target - 1, 0)] + 1, 0)
        keep = [within & (worst < cut)] + [
            within & (r * n_seg + s < cut) for s, r in enumerate(ranks)
        ]
        for which, flat in enumerate(keep):
            parts = _split(flat, [m_leaves[idx[j]] for j in g])
            for j, part in zip(g, parts):
                (overlap if which == 0 else segments[which - 1])[j] = part
    return _fill(m_leaves, idx, overlap, treedef), [
        _fill(m_leaves, idx, s, treedef) for s in segments
    ]


def _ranks(w: jax.Array, within: jax.Array) -> jax.Array:
    """Each entry's place by magnitude among the candidates (0 = largest; ties to the
    earlier position); entries outside ``within`` come after every candidate."""
    score = jnp.where(within, jnp.abs(w).astype(jnp.float32), -jnp.inf)
    order = jnp.argsort(-score, stable=True)
    return jnp.zeros(w.shape, jnp.int32).at[order].set(jnp.arange(w.size, dtype=jnp.int32))


def _split(flat: jax.Array, like: Sequence[jax.Array]) -> list[jax.Array]:
    """``flat`` cut back into arrays shaped like ``like``."""
    out, at = [], 0
    for x in like:
        out.append(flat[at : at + x.size].reshape(x.shape))
        at += x.size
    return out


def _fill(leaves: Sequence[Any], idx: Sequence[int], new: Sequence[Any], treedef: Any) -> Mask:
    out = list(leaves)
    for i, x in zip(idx, new):
        out[i] = x
    return treedef.unflatten(out)
