"""Gradual magnitude pruning (Zhu & Gupta 2017) as an optax transform."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jaxprune import _checks, distributions, filters, masks, schedules, scores, select
from jaxprune.select._engine import check_method
from jaxprune.transforms import _base as base


class GradualState(NamedTuple):
    """State of :func:`gradual_magnitude`: inner state, current mask, steps taken."""

    inner_state: optax.OptState
    jaxprune_mask: Any
    count: jax.Array

    mask = base.MASK_PROPERTY


def need_params(params: Any, name: str) -> None:
    if params is None:
        raise ValueError(
            f"{name} needs the current parameters: call tx.update(grads, state, params)."
        )


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
) -> optax.GradientTransformationExtraArgs:
    """Prunes by magnitude every ``update_every`` steps along the polynomial schedule.

    At steps ``begin_step, begin_step + update_every, ... <= end_step`` and at
    ``end_step`` itself, the mask is recomputed from the current weight magnitudes at
    sparsity ``s(t) = s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^power``; between
    them the step is a plain masked step. The mask update runs inside ``lax.cond``, so the
    other steps pay nothing for it.

    Args:
      inner: any optax optimizer.
      sparsity: the final sparsity ``s_f``.
      begin_step, end_step: the pruning window ``t0``, ``t1``.
      update_every: steps between mask updates.
      initial_sparsity: ``s_i``.
      power: the exponent (3 in the paper).
      distribution: ``"uniform"`` or ``"global"`` (or an explicit mapping).
      overrides, prunable, method: as in :func:`jaxprune.topk_mask`. A number, in
        ``overrides`` or in a mapping ``distribution``, holds its leaf at that sparsity
        from the first update on (as jaxpruner's custom sparsity map); a function of
        the sparsity follows the schedule, e.g. ``{"head/": lambda s: s / 2}``.

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
    schedule = schedules.polynomial(
        final=sparsity,
        begin_step=begin_step,
        end_step=end_step,
        initial=initial_sparsity,
        power=power,
    )
    check_method(method)
    _checks.check_steps(1, update_every=update_every)
    if distribution in ("er", "erk"):
        raise ValueError(
            f"gradual_magnitude takes distribution 'uniform' or 'global' (or a mapping of "
            f"per-leaf sparsities), got {distribution!r}: ER/ERK solve their per-layer counts "
            "on the host from a fixed sparsity, and the schedule's sparsity changes inside "
            "the jitted step. For an ERK mask, prune once with jaxprune.topk_mask(..., 'erk') "
            "and train with jaxprune.masked, or use jaxprune.rigl / static_sparse."
        )
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        mask = base.place_mask(masks.dense_mask(params, prunable), params)
        return GradualState(inner.init(params), mask, jnp.zeros((), jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        need_params(params, "gradual_magnitude")
        base.check_update_args(updates, state.mask, params)
        t = state.count

        def prune(p):
            new = select.topk_mask(
                scores.magnitude(p, prunable=prunable),
                schedule(t),
                distribution,
                overrides=overrides,
                prunable=prunable,
                method=method,
            )
            return base.place_mask(new, p)

        # The end step is always an update, so the final sparsity is reached even when the
        # window is not a multiple of update_every.
        do = schedules.every(t, update_every, begin_step=begin_step, end_step=end_step)
        do = do | (t == end_step)
        mask = jax.lax.cond(do, prune, lambda p: state.mask, params)
        grads = base.where_mask(mask, updates)
        # Per-parameter state 0 where pruned, as the weights (schedule-free keeps a copy
        # of the params in its state): one select more in the optimizer's fused loop.
        inner_state = base.zero_where(state.inner_state, params, mask)
        updates, inner_state = inner.update(grads, inner_state, params, **extra_args)
        return (base.masked_update(updates, mask, params), GradualState(inner_state, mask, t + 1))

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
