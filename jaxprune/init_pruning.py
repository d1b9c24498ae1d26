"""Pruning at initialisation: masks from SNIP, GraSP, SynFlow, magnitude and random scores.

Each function scores the (initial) parameters and keeps exactly
``round((1 - sparsity) * n)`` entries, globally by default as the papers do
(``distribution="global"``; :func:`random_mask`: ``"uniform"``; any distribution
of :func:`jaxprune.topk_mask` works: ``"uniform"``, ``"er"``, ``"erk"`` or a
per-layer mapping). Only the
prunable leaves are pruned (default: Dense and Conv kernels, so biases and
normalisation parameters stay dense). Train the result with
:func:`jaxprune.masked`, from the same initial weights (the SNIP paper) or from
a fresh initialisation (what SNIP's public code does).

Example:
  >>> import jax, jax.numpy as jnp, jaxprune
  >>> params = {"w": jax.random.normal(jax.random.key(0), (20, 10)), "b": jnp.zeros(10)}
  >>> loss = lambda p, x, temperature=1.0: jnp.mean((x @ p["w"] + p["b"]) ** 2) / temperature
  >>> mask = jaxprune.snip_mask(loss, params, jnp.ones((4, 20)), 0.9)
  >>> int(mask["w"].sum()), mask["b"].shape
  (20, ())
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import numpy as np

from jaxprune import _checks, _deprecation, _scoring, filters, scores
from jaxprune._tree import prunable_flags, stand_in
from jaxprune.masks import dense_mask
from jaxprune.select import select, topk_mask
from jaxprune.select._plan import plan_groups
from jaxprune.typing import Distribution, Mask, Override, Params, PRNGKey, Scores

__all__ = ["grasp_mask", "magnitude_mask", "random_mask", "snip_mask", "synflow_mask"]

SCHEDULES = ("exponential", "linear")


def _scored(path: str, leaf: Any) -> bool:
    """Every leaf a score function scored: ``prunable`` was applied there, and its 0-d
    stand-ins mark the rest (topk_mask's own default would drop 1-D leaves again)."""
    del path, leaf
    return True


def _topk(s: Scores, sparsity: float, distribution, overrides) -> Mask:
    return topk_mask(s, sparsity, distribution, overrides=overrides, prunable=_scored)


def snip_mask(
    loss_fn: Callable[..., Any],
    params: Params,
    batch: Any,
    sparsity: float,
    *,
    distribution: Distribution = "global",
    overrides: Mapping[str, Override] | None = None,
    prunable: filters.FilterLike = None,
    has_aux: bool = False,
) -> Mask:
    """SNIP (Lee et al. 2019): keep the largest connection sensitivities ``|g * w|``.

    Args:
      loss_fn: ``loss_fn(params, batch) -> loss`` (or ``(loss, aux)``).
      params: the initial parameters (a variance-scaling initialisation).
      batch: one minibatch (100 examples on MNIST, 128 on CIFAR in the paper).
      sparsity: fraction of the prunable weights to remove, in [0, 1).
      distribution: ``"global"`` (the paper) or any of :func:`jaxprune.topk_mask`.
      overrides: per-layer sparsities, as in :func:`jaxprune.topk_mask`.
      prunable: which leaves may be pruned (default: Dense/Conv kernels).
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.

    Returns:
      A mask with the structure of ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"w": jnp.array([[1.0, -2.0], [0.5, 4.0]])}
      >>> loss = lambda p, x: jnp.sum(x @ p["w"])
      >>> # |g * w| with g[i, j] = x[i]: [[5, 10], [0.5, 4]]; magnitude would keep 4 and -2.
      >>> snip_mask(loss, params, jnp.array([[5.0, 1.0]]), 0.5)["w"].tolist()
      [[True, True], [False, False]]
    """
    s = scores.snip(loss_fn, params, batch, prunable=prunable, has_aux=has_aux)
    return _topk(s, sparsity, distribution, overrides)


def grasp_mask(
    loss_fn: Callable[..., Any],
    params: Params,
    batch: Any,
    sparsity: float,
    *,
    distribution: Distribution = "global",
    overrides: Mapping[str, Override] | None = None,
    prunable: filters.FilterLike = None,
    temperature: float | None = 200.0,
    has_aux: bool = False,
) -> Mask:
    """GraSP (Wang et al. 2020): keep the largest ``w * (H g)``, i.e. remove the largest
    ``-w * (H g)``, the weights whose removal reduces the gradient flow least.

    Args:
      loss_fn: ``loss_fn(params, batch, temperature=T) -> loss``, dividing its
        logits by ``T`` (see :func:`jaxprune.scores.grasp`).
      params: the initial parameters.
      batch: one minibatch (GraSP's code samples a few examples of every class).
      sparsity: fraction of the prunable weights to remove, in [0, 1).
      distribution: ``"global"`` (the paper) or any of :func:`jaxprune.topk_mask`.
      overrides: per-layer sparsities, as in :func:`jaxprune.topk_mask`.
      prunable: which leaves may be pruned (default: Dense/Conv kernels).
      temperature: the softmax temperature (200), or None to call ``loss_fn``
        without one.
      has_aux: whether ``loss_fn`` returns ``(loss, aux)``.

    Returns:
      A mask with the structure of ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"w": jnp.array([[2.0, -1.0, 0.5, 3.0]])}
      >>> loss = lambda p, x, temperature=1.0: jnp.sum((x @ p["w"]) ** 3) / 6
      >>> grasp_mask(loss, params, jnp.ones((1, 1)), 0.5)["w"].tolist()  # keeps w^4 / 2
      [[True, False, False, True]]
    """
    s = scores.grasp(
        loss_fn, params, batch, prunable=prunable, temperature=temperature, has_aux=has_aux
    )
    return _topk(s, sparsity, distribution, overrides)


def magnitude_mask(
    params: Params,
    sparsity: float,
    *,
    distribution: Distribution = "global",
    overrides: Mapping[str, Override] | None = None,
    prunable: filters.FilterLike = None,
) -> Mask:
    """Magnitude pruning at initialisation: keep the largest ``|w|`` of the initial weights.

    Example:
      >>> import jax.numpy as jnp
      >>> magnitude_mask({"w": jnp.array([[1.0, -3.0, 0.5, 2.0]])}, 0.5)["w"].tolist()
      [[False, True, False, True]]
    """
    s = scores.magnitude(params, prunable=prunable)
    return _topk(s, sparsity, distribution, overrides)


def random_mask(
    key: PRNGKey,
    params: Params,
    sparsity: float,
    *,
    distribution: Distribution = "uniform",
    overrides: Mapping[str, Override] | None = None,
    prunable: filters.FilterLike = None,
) -> Mask:
    """Random pruning at a target sparsity: every layer keeps a uniformly random subset.

    The one way to draw a random mask at a sparsity. ``distribution="uniform"`` (the
    default) gives every layer the same sparsity, which is what random global ranking
    gives in expectation; use :func:`jaxprune.random_like` for the same per-layer
    counts as another mask, and :func:`jaxprune.scores.random` for random scores.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> m = random_mask(jax.random.key(0), {"w": jnp.ones((10, 10)), "b": jnp.ones(10)}, 0.75)
      >>> int(m["w"].sum()), m["b"].shape
      (25, ())
    """
    s = scores.random(key, params, prunable=prunable)
    return _topk(s, sparsity, distribution, overrides)


def _kept_schedule(n: int, k: int, rounds: int, schedule: str = "exponential") -> list[int]:
    """How many of ``n`` entries iterative pruning keeps after each of ``rounds`` rounds.

    ``"exponential"`` keeps ``n * (k / n)^(r / rounds)`` after round ``r`` (SynFlow),
    ``"linear"`` removes the same number every round; rounded to integers, never
    increasing, and exactly ``k`` after the last round.

    Example:
      >>> _kept_schedule(1000, 10, 2), _kept_schedule(1000, 10, 2, "linear")
      ([100, 10], [505, 10])
    """
    _checks.check_choice(schedule, SCHEDULES, "schedule", where="synflow_mask")
    if not (_checks.is_integer(rounds) and rounds >= 1):
        raise ValueError(f"rounds must be a positive integer (100 in the paper); got {rounds!r}.")
    out, last = [], n
    for r in range(1, rounds + 1):
        if r == rounds:
            kept = k
        elif schedule == "exponential":
            kept = n * (k / n) ** (r / rounds) if k else 0.0
        else:
            kept = n - (n - k) * r / rounds
        last = min(last, max(k, int(np.rint(kept))))
        out.append(last)
    return out


def synflow_mask(
    apply_fn: Callable[[Params, jax.Array], Any],
    params: Params,
    input_shape: Sequence[int],
    sparsity: float,
    *,
    rounds: int = 100,
    schedule: str = "exponential",
    distribution: Distribution = "global",
    overrides: Mapping[str, Override] | None = None,
    prunable: filters.FilterLike = None,
    float64: bool = False,
) -> Mask:
    """Iterative SynFlow (Tanaka et al. 2020): data-free, ``rounds`` score-and-prune rounds.

    Every round scores the *masked* network with :func:`jaxprune.scores.synflow`
    and keeps the top scores among the surviving weights, the kept fraction
    following ``schedule``: exponential (the paper), ``(1 - s)^(r / rounds)``
    after round ``r``. Counts are exact in every round (per group of the
    distribution: one group for ``"global"``, one per layer otherwise), never
    increase, and reach ``round((1 - sparsity) * n)`` after the last round.

    Args:
      apply_fn: ``apply_fn(params, x) -> outputs``, jittable (eval mode for
        batch norm).
      params: the initial parameters.
      input_shape: shape of the all-ones input, batch first, e.g. ``(1, 28, 28, 1)``.
      sparsity: final fraction of the prunable weights to remove, in [0, 1).
      rounds: number of pruning rounds (100 in the paper).
      schedule: ``"exponential"`` (the paper) or ``"linear"``.
      distribution: ``"global"`` (the paper) or any of :func:`jaxprune.topk_mask`
        (its per-group counts are the final targets).
      overrides: per-layer sparsities, as in :func:`jaxprune.topk_mask`.
      prunable: which leaves may be pruned (default: Dense/Conv kernels).
      float64: score in double precision (see :func:`jaxprune.scores.synflow`).

    Returns:
      A mask with the structure of ``params``.

    Raises:
      FloatingPointError: the flow overflowed in some round (use ``float64=True``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> p = {"w1": jax.random.normal(jax.random.key(0), (8, 16)),
      ...      "w2": jax.random.normal(jax.random.key(1), (16, 4))}
      >>> f = lambda p, x: jax.nn.relu(x @ p["w1"]) @ p["w2"]
      >>> m = synflow_mask(f, p, (1, 8), 0.9, rounds=10)
      >>> int(m["w1"].sum() + m["w2"].sum())
      19
    """
    shape = _scoring.check_input_shape(input_shape)
    flags = prunable_flags(params, prunable)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    like = _scoring.score_tree(lambda w: w, params, prunable=prunable)  # stand-ins as in scores
    cand, groups = plan_groups(like, sparsity, distribution, overrides=overrides, prunable=_scored)
    sizes = [leaves[i].size for i in cand]
    plans = [
        _kept_schedule(sum(sizes[j] for j in idx), int(k), rounds, schedule) for idx, k in groups
    ]
    dtype = "float64" if float64 else None

    @jax.jit
    def round_scores(mask_leaves):
        masked = treedef.unflatten([x if m is None else x * m for x, m in zip(leaves, mask_leaves)])
        raw = _scoring.synflow_raw(apply_fn, masked, shape, flags, dtype)
        if float64:
            return _scoring.scale_to_float32(raw)
        return [None if s is None else s.astype("float32") for s in raw]

    dense = jax.tree_util.tree_leaves(dense_mask(params, prunable))
    mask_leaves = [m if f else None for m, f in zip(dense, flags)]
    for r in range(rounds):
        if float64:
            with jax.enable_x64(True):
                s = round_scores(mask_leaves)
        else:
            s = round_scores(mask_leaves)
        _scoring.check_finite(s, f"synflow_mask (round {r + 1} of {rounds})", float64)
        new = select(
            [s[i] for i in cand],
            [mask_leaves[i] for i in cand],
            [(idx, plan[r]) for (idx, _), plan in zip(groups, plans)],
        )
        for i, m in zip(cand, new):
            mask_leaves[i] = m
    return treedef.unflatten([stand_in() if m is None else m for m in mask_leaves])


__getattr__ = _deprecation.module_getattr(
    __name__, {"kept_schedule": ("it is internal", lambda: _kept_schedule)}
)
