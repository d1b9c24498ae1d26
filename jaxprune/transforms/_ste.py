"""Straight-through magnitude pruning: the forward pass sees the top-k weights,
the dense weights keep learning (as in STE / "sparse-dense" training), optionally
with SR-STE's decay of the pruned dense weights (Zhou et al. 2021)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune import _checks, _fastpath, distributions, filters, scores, select
from jaxprune._tree import is_stand_in
from jaxprune.select._engine import check_method
from jaxprune.transforms import _base as base
from jaxprune.transforms._gradual import need_params


class STEState(NamedTuple):
    """State of :func:`straight_through`: inner state, the dense weights, the current mask.

    ``dense`` has the parameters' structure: the dense weights of the prunable
    parameters, and an empty tuple ``()`` for the others (which are their own dense
    weights): no buffer to hand in and out per bias or normalisation parameter, and
    every leaf of the state an array.
    """

    inner_state: optax.OptState
    dense: Any
    jaxprune_mask: Any

    mask = base.MASK_PROPERTY


def _prunable_only(tree: Any, m_leaves: list[Any], treedef: Any) -> Any:
    """``tree`` with ``()`` in place of the leaves whose mask leaf is a stand-in."""
    leaves = jax.tree_util.tree_leaves(tree)
    return treedef.unflatten([() if is_stand_in(m) else x for x, m in zip(leaves, m_leaves)])


def straight_through(
    inner: optax.GradientTransformation,
    sparsity: Any = None,
    *,
    distribution: distributions.Distribution = "uniform",
    overrides: Mapping[str, distributions.Override] | None = None,
    prunable: filters.FilterLike = None,
    method: str = "auto",
    pruned_decay: float = 0.0,
    n_m: tuple[int, int] | None = None,
    axis: int = -2,
) -> optax.GradientTransformationExtraArgs:
    """Keeps dense weights in the state; the parameters are their top-k (or N:M) every step.

    The gradient (taken at the masked parameters) updates the dense weights as if
    the mask were the identity (straight-through); then the mask is recomputed
    from the dense magnitudes and the parameters become the masked dense weights,
    pruned entries exactly 0. Costs one copy of the parameters and one exact top-k
    (or N:M ranking) per step. ``init`` keeps the parameters it is given as the dense
    weights and their top-k as the mask; the first step's gradient is taken at the
    parameters passed to it, so to start sparse pass
    ``jaxprune.apply_mask(params, jaxprune.mask_of(state))`` (the state keeps the
    dense values).

    With ``pruned_decay`` (SR-STE's lambda_W, Zhou et al. 2021; 2e-4 there, with
    SGD) the gradient the inner optimizer sees is ``g + pruned_decay * (1 - m) * w``:
    the dense weights pruned in this step's forward pass (``m``, the state's mask,
    which the parameters hold) decay towards 0, so fewer of them flip back and
    forth across the threshold. Like L2 regularisation (not decoupled weight
    decay), the term goes through the inner optimizer: Adam rescales it with the
    gradient.

    With ``n_m=(n, m)`` instead of a sparsity, the forward pass keeps the ``n``
    largest of every ``m`` consecutive dense weights along the kernels' input axis
    (:func:`jaxprune.nm_mask`; 2:4 is what sparse tensor cores run), the setting
    SR-STE was made for.

    Args:
      inner: any optax optimizer (it sees the dense weights).
      sparsity: fraction pruned in the forward pass (may be traced); or None with
        ``n_m``.
      distribution, overrides, prunable, method: as in :func:`jaxprune.topk_mask`
        (with ``n_m``: ``prunable`` only).
      pruned_decay: SR-STE's decay of the pruned dense weights (0: plain STE).
      n_m: ``(n, m)`` for N:M sparsity along the input axis instead of ``sparsity``.
      axis: with ``n_m``, the axis of the runs of ``m``: the kernels' input axis,
        ``-2`` in Flax's ``(in, out)`` and ``(kh, kw, in, out)`` (Equinox's ``Linear``
        weight is ``(out, in)``: ``-1``).

    Example:
      >>> import jax.numpy as jnp, optax, jaxprune
      >>> params = {"w": jnp.array([[1.0, 2.0], [3.0, 4.0]])}
      >>> tx = jaxprune.straight_through(optax.sgd(1.0), 0.5)
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.array([[-9.0, 0.0], [0.0, 0.0]])}, state, params)
      >>> optax.apply_updates(params, updates)["w"].tolist()
      [[10.0, 0.0], [0.0, 4.0]]
      >>> tx = jaxprune.straight_through(optax.sgd(1.0), n_m=(1, 2), pruned_decay=2e-4)
      >>> tx.init(params).mask["w"].tolist()  # 1 of every 2 along the input axis
      [[False, False], [True, True]]
    """
    check_method(method)
    pruned_decay = _check_decay(pruned_decay)
    _check_target(sparsity, n_m, distribution, overrides)
    inner = optax.with_extra_args_support(inner)

    def top(dense):
        if n_m is not None:
            return select.nm_mask(
                scores.magnitude(dense, prunable=prunable), *n_m, axis=axis, prunable=prunable
            )
        return select.topk_mask(
            scores.magnitude(dense, prunable=prunable),
            sparsity,
            distribution,
            overrides=overrides,
            prunable=prunable,
            method=method,
        )

    def init_fn(params):
        mask = base.resolve_mask(top, params)
        _, m_leaves, treedef = base.mask_leaves_like(params, mask)
        dense = base.own_copy(_prunable_only(params, m_leaves, treedef))  # not the params'
        return STEState(inner.init(params), dense, mask)

    def update_fn(updates, state, params=None, **extra_args):
        need_params(params, "straight_through")
        base.check_update_args(updates, state.mask, params)
        p_leaves, m_leaves, treedef = base.mask_leaves_like(params, state.mask)
        d_leaves = treedef.flatten_up_to(state.dense)  # () where not prunable
        dense = treedef.unflatten(
            [p if isinstance(d, tuple) else d for p, d in zip(p_leaves, d_leaves)]
        )
        if isinstance(pruned_decay, jax.core.Tracer) or pruned_decay:  # traced: may be > 0
            updates = _decay_pruned(updates, dense, state.mask, pruned_decay)
        u, inner_state = inner.update(updates, state.inner_state, dense, **extra_args)
        dense = optax.apply_updates(dense, u)
        new = jax.tree_util.tree_leaves(base.place_mask(top(dense), params))
        if _fastpath.on_accelerator():
            # The old stand-ins, passed through: XLA:GPU copies new constants into the
            # outputs, one device copy each. On the CPU the
            # pass-through measured slower (a donated input returned unchanged).
            new = [o if is_stand_in(o) else n for n, o in zip(new, m_leaves)]
        mask = treedef.unflatten(new)
        # Parameters that are not pruned take the inner update as it is.
        step = treedef.unflatten(
            [
                x if is_stand_in(m) else d - p
                for x, d, p, m in zip(
                    jax.tree_util.tree_leaves(u),
                    jax.tree_util.tree_leaves(dense),
                    p_leaves,
                    m_leaves,
                )
            ]
        )
        return base.masked_update(step, mask, params), STEState(
            inner_state, _prunable_only(dense, m_leaves, treedef), mask
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def _check_target(sparsity: Any, n_m: Any, distribution: Any, overrides: Any) -> None:
    """Exactly one of ``sparsity`` and ``n_m``; ``n_m`` a pair ``(n, m)`` of integers,
    without a distribution or overrides (N:M has no per-layer counts to set)."""
    if (sparsity is None) == (n_m is None):
        raise ValueError(
            "straight_through needs either a sparsity (top-k per layer) or n_m=(n, m) "
            f"(N:M), not both and not neither; got sparsity={sparsity!r}, n_m={n_m!r}."
        )
    if n_m is None:
        return
    if not isinstance(n_m, (tuple, list)) or len(n_m) != 2:
        raise ValueError(f"n_m must be a pair (n, m), e.g. (2, 4); got {n_m!r}.")
    _checks.check_nm(*n_m)
    if distribution != "uniform" or overrides:
        raise ValueError(
            "With n_m every run of m weights keeps n: there are no per-layer counts, so "
            f"distribution and overrides do not apply (got {distribution!r}, {overrides!r}). "
            "Exclude layers with prunable=... instead."
        )


def _check_decay(pruned_decay: Any) -> Any:
    """``pruned_decay`` as a float; it must be a real number, finite and >= 0. A traced
    one (``optax.inject_hyperparams`` under ``jit``) is returned as it is, unchecked."""
    real = isinstance(pruned_decay, numbers.Real) and not isinstance(pruned_decay, bool)
    if not real and not (hasattr(pruned_decay, "dtype") and np.ndim(pruned_decay) == 0):
        raise TypeError(
            f"pruned_decay must be a number (SR-STE's lambda_W, e.g. 2e-4), got {pruned_decay!r}."
        )
    if isinstance(pruned_decay, jax.core.Tracer):
        return pruned_decay
    value = float(pruned_decay)
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            "pruned_decay must be a finite number >= 0 (0 for plain straight-through), "
            f"got {pruned_decay!r}."
        )
    return value


def _decay_pruned(grads: Any, dense: Any, mask: Any, decay: float) -> Any:
    """``g + decay * where(m, 0, w)``: 0 where kept and on the unprunable leaves."""
    pruned = base.where_mask(mask, jax.tree_util.tree_map(jnp.zeros_like, dense), dense)
    return jax.tree_util.tree_map(lambda g, w: g + jnp.asarray(decay, w.dtype) * w, grads, pruned)
