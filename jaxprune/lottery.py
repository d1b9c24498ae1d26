"""Iterative magnitude pruning (lottery tickets) as pure functions on pytrees.

One IMP round (Frankle & Carbin 2019): train, then prune a fraction of the
*remaining* weights by magnitude, then rewind the survivors to their values at
step k (k = 0: the original ticket; k > 0: weight rewinding) and train again.
The driver that trains the rounds lives in :mod:`jaxprune.train.lottery`; here
is only the logic, usable in any training code::

    mask = jaxprune.dense_mask(params0)
    for r in range(rounds):
      trained = train(jaxprune.lottery.rewind(params_k, mask), mask)
      mask = jaxprune.lottery.prune_round(trained, mask, 0.2,
                                          overrides={"layers/2/": jaxprune.lottery.half_rate})

Baselines on the same masks: :func:`random_reinit` (same mask, fresh weights),
:func:`jaxprune.random_like` (same per-layer counts, random positions),
:func:`one_shot` (prune to the final sparsity at once).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import _checks, _deprecation, filters, masks, scores
from jaxprune._tree import is_stand_in, leaves_with_paths, matched_leaves, require_prunable
from jaxprune.select import random_like, topk_mask
from jaxprune.select._granular import Granularity, check_granularity, keep_like
from jaxprune.typing import Distribution, Mask, Override, Params

__all__ = [
    "distillation_loss",
    "half_rate",
    "kept_counts",
    "one_shot",
    "one_shot_like",
    "prune_round",
    "random_reinit",
    "remaining",
    "rewind",
    "rounds_to_reach",
]


def half_rate(sparsity: Any) -> Any:
    """Per-layer override: prune this layer at half the base rate (the output layer in IMP).

    Example:
      >>> half_rate(0.2)
      0.1
    """
    return sparsity / 2


def prune_round(
    params: Params,
    mask: Mask,
    rate: float,
    *,
    distribution: Distribution = "uniform",
    overrides: Mapping[str, Override] | None = None,
    granularity: Granularity = "element",
) -> Mask:
    """Prunes ``rate`` of the weights ``mask`` still keeps, by magnitude of ``params``.

    Args:
      params: the trained parameters of this round.
      mask: the current mask (``jaxprune.dense_mask(params)`` before round 1).
      rate: fraction of the remaining weights to prune (0.2 in the paper).
      distribution: ``"uniform"`` (layer-wise, the paper) or ``"global"``.
      overrides: per-layer rates, e.g. ``{"layers/2/": half_rate}``.
      granularity: ``"element"``; ``"unit"`` (whole output units, a kernel's last axis)
        or an ``(r, c)`` block, as in :func:`jaxprune.topk_mask`: ``rate`` of the
        remaining units (or blocks: those ``mask`` keeps any entry of) are pruned,
        ranked by the sum of their magnitudes; a pruned unit stays pruned.

    Returns:
      The next mask, a subset of ``mask`` keeping ``round((1 - rate) * kept)``
      entries (or units, or blocks) per layer (or in total for global ranking).

    Example:
      >>> import jax.numpy as jnp, jaxprune
      >>> params = {"w": jnp.arange(1.0, 11.0).reshape(2, 5)}
      >>> mask = prune_round(params, jaxprune.dense_mask(params), 0.2)
      >>> int(mask["w"].sum()), int(prune_round(params, mask, 0.5)["w"].sum())
      (8, 4)
      >>> prune_round(params, jaxprune.dense_mask(params), 0.4, granularity="unit")["w"].tolist()
      [[False, False, True, True, True], [False, False, True, True, True]]
    """
    paths, leaves, _ = leaves_with_paths(mask)
    pruned = {p for p, m in zip(paths, leaves) if not is_stand_in(m)}

    def in_mask(path: str, _: Any) -> bool:  # every leaf the mask prunes, 1-d ones too
        return path in pruned

    return topk_mask(
        scores.magnitude(params, prunable=in_mask),
        rate,
        distribution,
        within=mask,
        overrides=overrides,
        prunable=in_mask,
        granularity=granularity,
    )


def remaining(rate: float, rounds: int) -> float:
    """Fraction of weights remaining after ``rounds`` rounds at ``rate``: ``(1 - rate) ** rounds``.

    Example:
      >>> round(100 * remaining(0.2, 7), 1), round(100 * remaining(0.2, 15), 1)
      (21.0, 3.5)
    """
    return (1.0 - rate) ** rounds


def rounds_to_reach(target: float, rate: float) -> int:
    """Fewest rounds at ``rate`` that leave at most ``target`` of the weights.

    Example:
      >>> rounds_to_reach(0.036, 0.2)
      15
    """
    if not (0 < target <= 1 and 0 < rate < 1):
        raise ValueError(f"need 0 < target <= 1 and 0 < rate < 1, got {target}, {rate}.")
    return max(0, math.ceil(math.log(target) / math.log(1.0 - rate) - 1e-9))


def kept_counts(mask: Mask) -> dict[str, int]:
    """Kept entries per prunable leaf, by path (on the host).

    Example:
      >>> import jax.numpy as jnp
      >>> kept_counts({"w": jnp.eye(3, dtype=bool), "b": jnp.ones((), bool)})
      {'w': 3}
    """
    return {l.path: l.kept for l in masks.sparsity_report(mask).leaves}


def rewind(saved: Params, mask: Mask) -> Params:
    """The ticket: the saved parameters (init or step k) with the pruned weights zeroed.

    Example:
      >>> import jax.numpy as jnp
      >>> rewind({"w": jnp.ones((2, 2))}, {"w": jnp.eye(2, dtype=bool)})["w"].tolist()
      [[1.0, 0.0], [0.0, 1.0]]
    """
    return masks.apply_mask(saved, mask)


def random_reinit(fresh: Params, mask: Mask) -> Params:
    """Baseline: the same mask on freshly initialised weights (``fresh`` from a new seed).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> fresh = {"w": jax.random.normal(jax.random.key(7), (2, 2))}
      >>> bool((random_reinit(fresh, {"w": jnp.eye(2, dtype=bool)})["w"][0, 1] == 0))
      True
    """
    return masks.apply_mask(fresh, mask)


def one_shot(
    params: Params,
    sparsity: float,
    *,
    distribution: Distribution = "uniform",
    overrides: Mapping[str, Override] | None = None,
    prunable: filters.FilterLike = None,
    granularity: Granularity = "element",
) -> Mask:
    """Baseline: magnitude-prune the trained dense network to ``sparsity`` at once.

    ``granularity`` (``"element"``, ``"unit"`` or an ``(r, c)`` block, as in
    :func:`jaxprune.topk_mask`) prunes whole units or blocks; ``sparsity`` counts them.

    Example:
      >>> import jax.numpy as jnp
      >>> int(one_shot({"w": jnp.arange(10.0).reshape(2, 5)}, 0.7)["w"].sum())
      3
    """
    return topk_mask(
        scores.magnitude(params, prunable=prunable),
        sparsity,
        distribution,
        overrides=overrides,
        prunable=prunable,
        granularity=granularity,
    )


def one_shot_like(
    params: Params,
    mask: Mask,
    *,
    distribution: str = "uniform",
    granularity: Granularity = "element",
) -> Mask:
    """Baseline: magnitude-prune ``params`` at once to exactly the kept counts of ``mask``.

    Per layer (``"uniform"``) or in total (``"global"``), so a one-shot mask from the
    trained dense network matches an IMP round's sparsity exactly. With
    ``granularity="unit"`` (or an ``(r, c)`` block) whole units (blocks) are kept, as
    many as ``mask`` keeps any entry of, ranked by the sum of their magnitudes.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"w": jnp.arange(8.0).reshape(2, 4)}
      >>> one_shot_like(params, {"w": jnp.eye(2, 4, dtype=bool)})["w"].tolist()
      [[False, False, False, False], [False, False, True, True]]
    """
    _checks.check_choice(distribution, ("uniform", "global"), "distribution", "one_shot_like")
    check_granularity(granularity)
    granularity = tuple(granularity) if isinstance(granularity, list) else granularity
    paths, m_leaves, treedef = leaves_with_paths(mask)
    _, p_leaves, _ = matched_leaves(params, mask, "params", "mask")
    idx = [i for i, m in enumerate(m_leaves) if not is_stand_in(m)]
    require_prunable(paths, [i in idx for i in range(len(paths))])
    kept = keep_like(
        [paths[i] for i in idx],
        [jnp.abs(p_leaves[i]) for i in idx],
        [m_leaves[i] for i in idx],
        granularity,
        distribution,
    )
    out = list(m_leaves)
    for i, m in zip(idx, kept):
        out[i] = m
    return treedef.unflatten(out)


def distillation_loss(
    logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    *,
    temperature: float = 4.0,
    alpha: float = 0.9,
) -> jax.Array:
    """Knowledge-distillation loss for KD tickets (Ma et al. 2021; Hinton et al. 2015).

    ``alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels)``,
    averaged over the batch. ``alpha = 1`` trains on soft labels only.

    Example:
      >>> import jax.numpy as jnp
      >>> t = jnp.array([[2.0, 0.0]])
      >>> float(distillation_loss(t, t, jnp.array([0]), alpha=1.0))
      0.0
    """
    t = temperature
    log_p_student = jax.nn.log_softmax(logits / t)
    log_p_teacher = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_logits) / t)
    kl = jnp.sum(jnp.exp(log_p_teacher) * (log_p_teacher - log_p_student), axis=-1)
    ce = -jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], axis=-1)[..., 0]
    return jnp.mean(alpha * t * t * kl + (1 - alpha) * ce)


__getattr__ = _deprecation.module_getattr(
    __name__,
    {"random_pruning": ("use jaxprune.random_like (the same function)", lambda: random_like)},
)
