"""Train under a fixed mask with any optax optimizer: ``jaxprune.masked``.

One line in an existing optax chain::

    tx = jaxprune.masked(optax.adamw(1e-3, weight_decay=1e-4), mask)

Gradients are masked before the inner optimizer (so momentum, Adam moments,
factored statistics and gradient clipping only ever see the subnetwork), and the
final update is ``where(mask, u, -params)``: since ``x + (-x)`` is exactly
``+0.0``, pruned weights are exactly zero after every ``optax.apply_updates``,
with no hook to remember, whatever the optimizer does (weight decay included).
The mask lives in the optimizer state, so it is checkpointed and sharded with it.
Every jaxprune transform must be the *last* element of a chain: a transform after it
sees the final update and can move pruned weights off 0 (``optax.add_noise`` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax

from jaxprune import _checks, distributions, scores, select
from jaxprune.transforms import _base as base


class MaskedState(NamedTuple):
    """State of :func:`masked`: the inner optimizer's state and the fixed mask."""

    inner_state: optax.OptState
    jaxprune_mask: Any

    mask = base.MASK_PROPERTY


def masked(
    inner: optax.GradientTransformation, mask: Any | Callable[[Any], Any]
) -> optax.GradientTransformationExtraArgs:
    """Trains under a fixed mask with any optax optimizer; pruned weights stay exactly 0.

    Args:
      inner: any optax optimizer (sgd, adam, adamw, lion, adafactor, a chain, an
        ``inject_hyperparams`` one...).
      mask: a boolean mask shaped like the parameters (see
        :func:`jaxprune.topk_mask`), or a function ``params -> mask`` called at
        ``init``.

    Returns:
      A gradient transformation whose state is :class:`MaskedState`. Pass
      ``params`` to ``update`` so pruned weights are driven to exactly 0 (without
      them, pruned weights only stay where they are). Prune the initial parameters
      with :func:`jaxprune.apply_mask` (or they become 0 after the first step).
      Put it last in an ``optax.chain`` (clipping, weight decay, schedules belong
      in ``inner`` or before it).

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxprune
      >>> params = {"w": jnp.ones((2, 2))}
      >>> mask = {"w": jnp.eye(2, dtype=bool)}
      >>> tx = jaxprune.masked(optax.sgd(0.5, momentum=0.9), mask)
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones((2, 2))}, state, params)
      >>> optax.apply_updates(params, updates)["w"].tolist()
      [[0.5, 0.0], [0.0, 0.5]]
    """
    inner = optax.with_extra_args_support(inner)

    def init_fn(params):
        m = base.resolve_mask(mask, params)
        # Per-parameter state is 0 where pruned (schedule-free's copy of the params too).
        return MaskedState(
            inner_state=base.zero_where(inner.init(params), params, m), jaxprune_mask=m
        )

    def update_fn(updates, state, params=None, **extra_args):
        base.check_update_args(updates, state.mask, params)
        grads = base.where_mask(state.mask, updates)
        updates, inner_state = inner.update(grads, state.inner_state, params, **extra_args)
        return base.masked_update(updates, state.mask, params), MaskedState(inner_state, state.mask)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def static_sparse(
    inner: optax.GradientTransformation,
    sparsity: float,
    *,
    key: jax.Array,
    distribution: distributions.Distribution = "erk",
    **mask_kwargs: Any,
) -> optax.GradientTransformationExtraArgs:
    """Static sparse training: a random mask (ERK by default) drawn at ``init``, then fixed.

    Args:
      inner: any optax optimizer.
      sparsity: fraction of the prunable weights to remove.
      key: the random key of the mask.
      distribution: per-layer sparsity, as in :func:`jaxprune.topk_mask`.
      **mask_kwargs: ``overrides`` or ``prunable`` for :func:`jaxprune.topk_mask`.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxprune
      >>> tx = jaxprune.static_sparse(optax.sgd(0.1), 0.75, key=jax.random.key(0))
      >>> int(jaxprune.mask_of(tx.init({"w": jnp.ones((4, 4))}))["w"].sum())
      4
    """
    _checks.check_key(key)
    base.check_target(sparsity, None, distribution)
    prunable = mask_kwargs.pop("prunable", None)

    def random_mask(params):
        return select.topk_mask(
            scores.random(key, params, prunable=prunable),
            sparsity,
            distribution,
            prunable=prunable,
            **mask_kwargs,
        )

    return masked(inner, random_mask)
