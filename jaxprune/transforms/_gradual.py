"""Gradual pruning on a polynomial schedule (Zhu & Gupta 2017) by any score, as an optax transform."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxprune import _checks, distributions, filters, masks, placement, schedules, scores, select
from jaxprune._scoring import score_tree
from jaxprune._tree import leaves_with_paths
from jaxprune.select._engine import check_method
from jaxprune.select._granular import Granularity, check_granularity
from jaxprune.transforms import _base as base
from jaxprune.typing import Params, PRNGKey, Scores

ScoreFn = Callable[[Params, Any], Scores]
SCORES = ("magnitude", "movement", "saliency", "random")


class GradualState(NamedTuple):
    """State of :func:`gradual_prune` (every score but movement): inner state, mask, steps."""

    inner_state: optax.OptState
    jaxprune_mask: Any
    count: jax.Array

    mask = base.MASK_PROPERTY


class MovementState(NamedTuple):
    """State of :func:`gradual_prune` with ``score="movement"``: also the accumulated
    ``-w * grad`` per parameter (0-d stand-ins on the leaves that are not prunable)."""

    inner_state: optax.OptState
    jaxprune_mask: Any
    count: jax.Array
    movement: Any

    mask = base.MASK_PROPERTY


def need_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(
            f"{name} needs the current parameters: call tx.update(grads, state, params)."
        )


def _check_score(score: Any, key: PRNGKey | None) -> None:
    """The build-time checks of ``score`` and ``key``."""
    if not callable(score):
        _checks.check_choice(
            score, SCORES, "score", "gradual_prune; or a function score(params, grads)"
        )
    if score == "random":
        if key is None:
            raise ValueError(
                "gradual_prune(score='random') needs key=, e.g. key=jax.random.key(0): "
                "every mask update draws fresh scores from it, folded with the step."
            )
        _checks.check_key(key)
    elif key is not None:
        raise ValueError(
            f"key is used by score='random' only; got a key with score={score!r} "
            "(gradual_prune). Leave key out."
        )


def _called(score: ScoreFn, params: Params, grads: Any) -> Scores:
    """``score(params, grads)``, checked: a pytree shaped like the parameters."""
    out = score(params, grads)
    paths, p_leaves, treedef = leaves_with_paths(params)
    s_leaves, s_treedef = jax.tree_util.tree_flatten(out)
    if s_treedef != treedef:
        raise ValueError(
            f"gradual_prune: score(params, grads) must return a pytree with the structure "
            f"of the parameters; got {s_treedef}, expected {treedef}."
        )
    for path, s, p in zip(paths, s_leaves, p_leaves):
        if jnp.ndim(s) and jnp.shape(s) != jnp.shape(p):
            raise ValueError(
                f"gradual_prune: score(params, grads) has shape {jnp.shape(s)} at {path!r}, "
                f"where the parameter has shape {jnp.shape(p)}; return one score per "
                "weight (or a 0-d stand-in on a leaf that is not pruned)."
            )
    return out


def _below_pruned(scores_: Scores, mask: Any) -> Scores:
    """Scores with the pruned entries at -inf, so that a pruned weight never comes back
    (magnitude and saliency score them 0 anyway; movement and random scores need not)."""
    return jax.tree.map(
        lambda s, m: jnp.where(m, s, -jnp.inf) if jnp.ndim(m) and jnp.ndim(s) else s,
        scores_,
        mask,
    )


def gradual_prune(
    inner: optax.GradientTransformation,
    sparsity: float,
    *,
    score: str | ScoreFn = "magnitude",
    granularity: Granularity = "element",
    key: PRNGKey | None = None,
    begin_step: int,
    end_step: int,
    update_every: int = 100,
    initial_sparsity: float = 0.0,
    power: float = 3.0,
    distribution: distributions.Distribution = "uniform",
    overrides: Mapping[str, distributions.Override] | None = None,
    prunable: filters.FilterLike = None,
    method: str = "auto",
) -> optax.GradientTransformationExtraArgs:
    """Prunes by a score every ``update_every`` steps along the polynomial schedule.

    At steps ``begin_step, begin_step + update_every, ... <= end_step`` and at
    ``end_step`` itself, the mask is recomputed from the scores at sparsity
    ``s(t) = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^power`` (Zhu & Gupta 2017);
    between them the step is a plain masked step. The mask update runs inside
    ``lax.cond``, so the other steps pay nothing for it. A pruned weight stays pruned
    while the sparsity grows (for every score but magnitude its score is set below all
    others; its magnitude is 0 already).

    Args:
      inner: any optax optimizer.
      sparsity: the final sparsity ``s_f``.
      score: what is kept, highest first. ``"magnitude"``: ``|w|``.
        ``"movement"``: ``S = -sum_t w_t * g_t``, accumulated over every step from the
        first (movement pruning, Sanh et al. 2020; kept in the state).
        ``"saliency"``: ``|w * g|`` of the update step's gradient (SNIP's criterion,
        Lee et al. 2019). ``"random"``: uniform scores, drawn afresh at every update
        from ``key`` folded with the step. Or a function ``score(params, grads)``
        returning a pytree of scores shaped like the parameters. ``g`` is the gradient
        passed to ``update`` (pass this transform the raw gradients).
      granularity: ``"element"``, ``"unit"`` (whole output units: slices of a kernel's
        last axis) or an ``(r, c)`` block, as in :func:`jaxprune.topk_mask`; the
        sparsity then counts units or blocks.
      key: the random key of ``score="random"`` (and of it only).
      begin_step, end_step: the pruning window ``t0``, ``t1``.
      update_every: steps between mask updates.
      initial_sparsity: ``s_i``.
      power: the exponent (3 in the paper).
      distribution: ``"uniform"`` or ``"global"`` (or an explicit mapping).
      overrides, prunable, method: as in :func:`jaxprune.topk_mask`. A number, in
        ``overrides`` or in a mapping ``distribution``, holds its leaf at that sparsity
        from the first update on (as jaxpruner's custom sparsity map); a function of
        the sparsity follows the schedule, e.g. ``{"head/": lambda s: s / 2}``.

    Returns:
      The transform; its state is a :class:`GradualState` (a :class:`MovementState`
      for ``score="movement"``).

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxprune
      >>> params = {"w": jnp.arange(1.0, 17.0).reshape(4, 4)}
      >>> tx = jaxprune.gradual_prune(optax.sgd(0.0), 0.5, score="random",
      ...                             key=jax.random.key(0), granularity="unit",
      ...                             begin_step=0, end_step=2, update_every=1)
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...   updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> (params["w"] != 0).all(axis=0).sum().item(), (params["w"] != 0).sum().item()
      (2, 8)
    """
    schedule = schedules.polynomial(
        final=sparsity,
        begin_step=begin_step,
        end_step=end_step,
        initial=initial_sparsity,
        power=power,
    )
    check_method(method)
    _checks.check_steps(1, update_every=update_every)
    _check_score(score, key)
    check_granularity(granularity)
    granularity = tuple(granularity) if isinstance(granularity, list) else granularity
    if distribution in ("er", "erk"):
        raise ValueError(
            f"gradual pruning takes distribution 'uniform' or 'global' (or a mapping of "
            f"per-leaf sparsities), got {distribution!r}: ER/ERK solve their per-layer counts "
            "on the host from a fixed sparsity, and the schedule's sparsity changes inside "
            "the jitted step. For an ERK mask, prune once with jaxprune.topk_mask(..., 'erk') "
            "and train with jaxprune.masked, or use jaxprune.rigl / static_sparse."
        )
    inner = optax.with_extra_args_support(inner)
    movement = score == "movement"

    def scores_of(params, grads, acc, t):
        if callable(score):
            return _called(score, params, grads)
        if score == "magnitude":
            return scores.magnitude(params, prunable=prunable)
        if score == "saliency":
            return score_tree(lambda w, g: jnp.abs(w * g), params, grads, prunable=prunable)
        if score == "random":
            return scores.random(jax.random.fold_in(key, t), params, prunable=prunable)
        return acc

    def topk(s, sparsity_):
        return select.topk_mask(
            s,
            sparsity_,
            distribution,
            overrides=overrides,
            prunable=prunable,
            method=method,
            granularity=granularity,
        )

    def init_fn(params):
        mask = base.place_mask(masks.dense_mask(params, prunable), params)
        if granularity not in ("element", "unit"):  # every kernel must split into blocks
            jax.eval_shape(topk, scores.magnitude(params, prunable=prunable), sparsity)
        count = jnp.zeros((), jnp.int32)
        if not movement:
            return GradualState(inner.init(params), mask, count)
        acc = score_tree(jnp.zeros_like, params, prunable=prunable)
        acc = jax.tree.map(
            lambda s, p: placement.match_sharding(s, p) if jnp.ndim(s) else s, acc, params
        )
        return MovementState(inner.init(params), mask, count, acc)

    def update_fn(updates, state, params=None, **extra_args):
        need_params(params, "gradual_prune (gradual_magnitude)")
        base.check_update_args(updates, state.mask, params)
        t = state.count
        acc = None
        if movement:
            acc = score_tree(
                lambda w, g, s: s - w * g, params, updates, state.movement, prunable=prunable
            )

        def prune(operands):
            p, g, a = operands
            s = scores_of(p, g, a, t)
            if score != "magnitude":  # magnitude's as before: pruned weights score 0
                s = _below_pruned(s, state.mask)
            return base.place_mask(topk(s, schedule(t)), p)

        # The end step is always an update, so the final sparsity is reached even when the
        # window is not a multiple of update_every.
        do = schedules.every(t, update_every, begin_step=begin_step, end_step=end_step)
        do = do | (t == end_step)
        mask = jax.lax.cond(do, prune, lambda _: state.mask, (params, updates, acc))
        grads = base.where_mask(mask, updates)
        # Per-parameter state 0 where pruned, as the weights (schedule-free keeps a copy
        # of the params in its state): one select more in the optimizer's fused loop.
        inner_state = base.zero_where(state.inner_state, params, mask)
        updates, inner_state = inner.update(grads, inner_state, params, **extra_args)
        if movement:
            new_state = MovementState(inner_state, mask, t + 1, acc)
        else:
            new_state = GradualState(inner_state, mask, t + 1)
        return base.masked_update(updates, mask, params), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def gradual_magnitude(
    inner: optax.GradientTransformation,
    sparsity: float,
    *,
    begin_step: int,
    end_step: int,
    update_every: int = 100,
    initial_sparsity: float = 0.0,
    power: float = 3.0,
    distribution: distributions.Distribution = "uniform",
    overrides: Mapping[str, distributions.Override] | None = None,
    prunable: filters.FilterLike = None,
    method: str = "auto",
    granularity: Granularity = "element",
) -> optax.GradientTransformationExtraArgs:
    """Prunes by magnitude every ``update_every`` steps along the polynomial schedule.

    :func:`gradual_prune` with ``score="magnitude"`` (Zhu & Gupta 2017): the mask is
    recomputed from the current weight magnitudes at the schedule's sparsity at steps
    ``begin_step, begin_step + update_every, ... <= end_step`` and at ``end_step``.

    Args:
      inner, sparsity: as in :func:`gradual_prune`, and so are the keyword arguments
        (every one of :func:`gradual_prune`'s but ``score`` and ``key``).

    Returns:
      The transform; its state is a :class:`GradualState`.

    Example:
      >>> import jax.numpy as jnp, optax, jaxprune
      >>> params = {"w": jnp.arange(1.0, 17.0).reshape(4, 4)}
      >>> tx = jaxprune.gradual_magnitude(optax.sgd(0.0), 0.75, begin_step=0, end_step=2,
      ...                                 update_every=1)
      >>> state = tx.init(params)
      >>> for _ in range(3):
      ...   updates, state = tx.update(jax.tree.map(jnp.zeros_like, params), state, params)
      ...   params = optax.apply_updates(params, updates)
      >>> int((params["w"] != 0).sum())
      4
    """
    return gradual_prune(
        inner,
        sparsity,
        score="magnitude",
        granularity=granularity,
        begin_step=begin_step,
        end_step=end_step,
        update_every=update_every,
        initial_sparsity=initial_sparsity,
        power=power,
        distribution=distribution,
        overrides=overrides,
        prunable=prunable,
        method=method,
    )
