"""Dynamic sparse training: RigL (Evci et al. 2020) and SET (Mocanu et al. 2018).

Every ``update_every`` steps until ``end_step``, in every layer: drop the ``k``
active weights of smallest magnitude and grow ``k`` inactive ones, by largest
dense-gradient magnitude (RigL) or at random (SET), with
``k = round(f(t) * active)`` and ``f(t) = alpha / 2 (1 + cos(pi t / end_step))``.
Grown weights start at 0 with fresh optimizer state (zeroed moments; the inner
optimizer's initial values where they are not 0, e.g. rprop's step sizes); a
weight dropped and regrown in the same update keeps its value and state; the
optimizer step is skipped on update steps, its step counts included (as in RigL's
code, where the global step that drives the learning rate advances only with the
optimizer): after ``t`` steps with ``u`` updates, a learning-rate schedule is at
``t - u``; every layer keeps its count.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune import _checks, _fastpath, distributions, filters, schedules, scores, select
from jaxprune._tree import is_stand_in
from jaxprune.select._engine import check_method
from jaxprune.select._engine import select as select_topk
from jaxprune.select._keys import count
from jaxprune.transforms import _base as base
from jaxprune.transforms._gradual import need_params

GROW = ("gradient", "random")


class DSTTransformation(optax.GradientTransformationExtraArgs):
    """The transform :func:`rigl` and :func:`set_training` return: an optax
    ``GradientTransformationExtraArgs`` that also tells the host its schedule.

    ``tx.rewires_at(t)`` is whether the step taken with the state's count ``t``
    (the number of updates before it) rewires the mask: a Python ``bool``. Passed
    back as ``tx.update(..., rewire=tx.rewires_at(t))`` under ``jit`` with ``rewire``
    static, it compiles two programs, one for the ordinary steps, with no trace of
    the rewiring, and one for the update steps, instead of one program that tests
    the step count on the device. :func:`rewire_schedule` reads it from any transform.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxprune
      >>> tx = jaxprune.rigl(optax.sgd(0.1), 0.5, end_step=10, key=jax.random.key(0),
      ...                    update_every=2)
      >>> [tx.rewires_at(t) for t in range(6)]
      [False, False, True, False, True, False]
      >>> params = {"w": jnp.ones((4, 4))}
      >>> u, state = tx.update(params, tx.init(params), params, rewire=tx.rewires_at(0))
      >>> int(state.count)
      1
    """

    def __new__(cls, init: Any, update: Any, schedule: _Schedule) -> DSTTransformation:
        tx = super().__new__(cls, init, update)
        tx.schedule = schedule
        return tx

    def __getnewargs__(self) -> tuple[Any, Any, _Schedule]:
        return (self.init, self.update, self.schedule)

    def rewires_at(self, step: int) -> bool:
        """Whether the step with state count ``step`` rewires the mask (see the class)."""
        if not isinstance(step, (int, np.integer)):
            raise TypeError(
                f"rewires_at takes the step count as an integer on the host, got {step!r}; "
                "inside jit the transform decides by itself (pass no rewire=)."
            )
        return bool(self.schedule(int(step)))


class _Schedule(NamedTuple):
    """The steps that rewire: every ``update_every`` from ``begin_step + update_every``
    until before ``end_step``. Called with a step count, on the host or traced."""

    begin_step: int
    update_every: int
    end_step: int

    def __call__(self, step: Any) -> Any:
        first = self.begin_step + self.update_every
        return schedules.every(
            step, self.update_every, begin_step=first, end_step=self.end_step - 1
        )

    def first(self) -> int:
        """The first step that rewires (none does when it is not below ``end_step``)."""
        return self.begin_step + self.update_every


def rewire_schedule(tx: Any) -> Callable[[int], bool] | None:
    """Which steps of ``tx`` rewire its mask: a host function ``count -> bool``, or None.

    The protocol: a transform whose mask changes on a schedule the host can know
    (:func:`rigl`, :func:`set_training`) has a method ``rewires_at(count) -> bool``,
    for the step taken with the state's update count ``count``, and its ``update``
    takes ``rewire=`` (a static Python bool) to compile the ordinary and the update
    steps as two programs. Any other transform (None here) decides by itself.

    Example:
      >>> import jax, optax, jaxprune
      >>> tx = jaxprune.rigl(optax.sgd(0.1), 0.5, end_step=10, update_every=4,
      ...                    key=jax.random.key(0))
      >>> schedule = rewire_schedule(tx)
      >>> [t for t in range(10) if schedule(t)]
      [4, 8]
      >>> rewire_schedule(optax.sgd(0.1)) is None
      True
    """
    rewires_at = getattr(tx, "rewires_at", None)
    return rewires_at if callable(rewires_at) else None


class DSTState(NamedTuple):
    """State of :func:`rigl` / :func:`set_training`: inner state, mask, steps taken, key."""

    inner_state: optax.OptState
    jaxprune_mask: Any
    count: jax.Array
    key: jax.Array

    mask = base.MASK_PROPERTY


def rewire(
    params: Any,
    grads: Any,
    mask: Any,
    drop_fraction: Any,
    *,
    grow: str = "gradient",
    key: jax.Array | None = None,
    method: str = "auto",
) -> Any:
    """One drop-and-grow update of ``mask``; every layer keeps its kept count.

    Args:
      params: current weights (drop ranks active weights by magnitude).
      grads: dense gradients (RigL grows the inactive entries of largest |g|).
      mask: the current mask.
      drop_fraction: fraction of each layer's active weights to move (may be traced).
      grow: ``"gradient"`` (RigL) or ``"random"`` (SET, needs ``key``).
      key: random key for ``grow="random"``.
      method: selection method, as in :func:`jaxprune.topk_mask`.

    Returns:
      The new mask.

    Example:
      >>> import jax.numpy as jnp
      >>> w = {"w": jnp.array([[3.0, 0.1, 0.0, 0.0]])}
      >>> g = {"w": jnp.array([[0.0, 0.0, 5.0, 1.0]])}
      >>> m = {"w": jnp.array([[True, True, False, False]])}
      >>> rewire(w, g, m, 0.5)["w"].tolist()
      [[True, False, True, False]]
    """
    if grow not in GROW:
        raise ValueError(f"grow must be one of {GROW}, got {grow!r}.")
    p_leaves, m_leaves, treedef = base.mask_leaves_like(params, mask)
    g_leaves = jax.tree_util.tree_leaves(grads)
    idx = [i for i, m in enumerate(m_leaves) if not is_stand_in(m)]
    active = [count(m_leaves[i]) for i in idx]
    keep = [distributions.keep_count(a, drop_fraction) for a in active]
    remained = select_topk(
        [jnp.abs(p_leaves[i]) for i in idx],
        [m_leaves[i] for i in idx],
        [((j,), k) for j, k in enumerate(keep)],
        method,
    )
    if grow == "gradient":
        grow_scores = [jnp.abs(g_leaves[i]) for i in idx]
    else:
        grow_scores = [
            jax.random.uniform(jax.random.fold_in(key, i), p_leaves[i].shape) for i in idx
        ]
    grown = select_topk(
        grow_scores,
        [~r for r in remained],
        [((j,), a - k) for j, (a, k) in enumerate(zip(active, keep))],
        method,
    )
    out = list(m_leaves)
    for j, i in enumerate(idx):
        out[i] = remained[j] | grown[j]
    return treedef.unflatten(out)


def _dst(
    inner,
    sparsity,
    grow,
    *,
    key,
    mask,
    distribution,
    update_every,
    end_step,
    drop_fraction,
    begin_step,
    overrides,
    prunable,
    method,
):
    check_method(method)
    _checks.check_key(key)
    _checks.check_steps(begin_step=begin_step)
    _checks.check_steps(1, update_every=update_every)
    fraction = schedules.cosine_decay(alpha=drop_fraction, end_step=end_step)
    schedule = _Schedule(begin_step, update_every, end_step)
    if schedule.first() >= end_step:
        raise ValueError(
            f"begin_step={begin_step}, update_every={update_every} and end_step={end_step} "
            f"leave no step that rewires the mask (the first would be step "
            f"{schedule.first()}, at or after end_step): raise end_step above "
            "begin_step + update_every, or lower update_every. To train under a fixed mask, "
            "use jaxprune.masked or jaxprune.static_sparse."
        )
    base.check_target(sparsity, mask, distribution)
    inner = optax.with_extra_args_support(inner)
    if mask is None:

        def mask(params):
            return select.topk_mask(
                scores.random(jax.random.fold_in(key, 0), params, prunable=prunable),
                sparsity,
                distribution,
                overrides=overrides,
                prunable=prunable,
            )

    def init_fn(params):
        return DSTState(
            inner.init(params),
            base.resolve_mask(mask, params),
            jnp.zeros((), jnp.int32),
            jax.random.fold_in(key, 1),
        )

    def update_fn(updates, state, params=None, **extra_args):
        need_params(params, "rigl/set_training")
        base.check_update_args(updates, state.mask, params)
        t = state.count
        flag = extra_args.pop("rewire", None)  # the host's say, else the count's
        do = schedule(t) if flag is None else _rewire_flag(flag)

        def rewire_and_zero(carry):
            old, inner_state = carry
            key = jax.random.fold_in(state.key, t)
            new = base.place_mask(
                rewire(params, updates, old, fraction(t), grow=grow, key=key, method=method), params
            )
            # Dropped and grown entries start from fresh optimizer statistics, as the
            # inner optimizer's init makes them: zeroed moments, rprop's initial step
            # size, adagrad's initial accumulator (kept entries, a weight dropped and
            # regrown included, keep theirs).
            kept = jax.tree_util.tree_map(jnp.logical_and, new, old)
            fresh = inner.init(base.where_mask(new, params))
            return new, base.reset_where(inner_state, fresh, params, kept)

        if do is True:  # told by the host: the update step's own program
            mask, inner_state = rewire_and_zero((state.mask, state.inner_state))
            u = jax.tree_util.tree_map(jnp.zeros_like, updates)
        elif do is False:  # and the ordinary step's: a plain masked step
            mask = state.mask
            grads = base.where_mask(mask, updates)
            u, inner_state = inner.update(grads, state.inner_state, params, **extra_args)
        else:
            # In place, so that the steps without a mask change copy nothing.
            mask, inner_state = _fastpath.run_if(
                do, rewire_and_zero, (state.mask, state.inner_state)
            )
            # On update steps the optimizer step is skipped: no update but the zeroing of
            # dropped weights, and the inner state as the rewiring left it.
            grads = base.where_mask(mask, updates)
            u, inner_state = _fastpath.skippable_update(
                inner, do, grads, inner_state, params, **extra_args
            )
            u = jax.tree_util.tree_map(lambda x: jnp.where(do, jnp.zeros_like(x), x), u)
        return base.masked_update(u, mask, params), DSTState(inner_state, mask, t + 1, state.key)

    return DSTTransformation(init_fn, update_fn, schedule)


def _rewire_flag(rewire: Any) -> Any:
    """``rewire=`` as given to ``update``: a Python bool, or a traced scalar boolean."""
    if isinstance(rewire, (bool, np.bool_)):
        return bool(rewire)
    flag = jnp.asarray(rewire)
    if flag.shape != () or flag.dtype != jnp.bool_:
        raise ValueError(
            "rewire= must be a Python bool (e.g. tx.rewires_at(step)) or a scalar boolean "
            f"array; got {jax.typeof(flag)}."
        )
    return flag


def rigl(
    inner: optax.GradientTransformation,
    sparsity: float | None = None,
    *,
    end_step: int,
    key: jax.Array | None = None,
    mask: Any = None,
    update_every: int = 100,
    drop_fraction: float = 0.3,
    begin_step: int = 0,
    distribution: distributions.Distribution = "erk",
    overrides: Mapping[str, distributions.Override] | None = None,
    prunable: filters.FilterLike = None,
    method: str = "auto",
) -> DSTTransformation:
    """RigL: drop by magnitude, grow by dense-gradient magnitude (Evci et al. 2020).

    Mask updates happen at steps ``begin_step + update_every * i`` before
    ``end_step`` (75% of training in the paper). Pass the *dense* gradient to
    ``update`` (the gradient of the loss at the masked weights, as ``jax.grad``
    gives it): it is masked before the inner optimizer.

    By default the step count in the state decides, on the device, whether a step
    rewires; every step then carries the rewiring's code, which slows the ordinary
    steps (BENCHMARKS.md has the numbers). A training loop that
    knows its step on the host can pass ``rewire=tx.rewires_at(t)`` to ``update``
    as a static argument instead: the ordinary steps are then plain masked steps
    (see :class:`DSTTransformation`); a scalar boolean array is taken too.

    Args:
      inner: any optax optimizer.
      sparsity: target sparsity of the random initial mask (with ``key``); not
        together with ``mask`` (a mask sets its own sparsity: both are refused).
      end_step: no mask change from this step on; it must leave room for one
        (``begin_step + update_every < end_step``).
      key: random key of the initial mask (when ``mask`` is not given).
      mask: an initial mask instead (or a function ``params -> mask``).
      update_every: steps between mask updates (dT = 100).
      drop_fraction: the initial drop fraction alpha (0.3).
      begin_step: the first update is at ``begin_step + update_every``.
      distribution: per-layer sparsity of the initial mask (ERK by default).
      overrides, prunable: as in :func:`jaxprune.topk_mask`.
      method: selection method of the drop and the growth, as in
        :func:`jaxprune.topk_mask` (same masks; speed differs).

    Raises:
      ValueError: when built, for a schedule with no step that rewires, a sparsity
        and a mask together (or neither), a sparsity outside [0, 1) or an unknown
        distribution.

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxprune
      >>> tx = jaxprune.rigl(optax.sgd(0.1), 0.9, end_step=1000, key=jax.random.key(0))
      >>> state = tx.init({"w": jnp.ones((20, 10))})
      >>> float(jaxprune.sparsity(state.mask))
      0.8999999761581421
      >>> [t for t in range(400) if tx.rewires_at(t)]
      [100, 200, 300]
    """
    if mask is None and key is None:
        raise ValueError("rigl needs key= for its random initial mask, or an initial mask=.")
    return _dst(
        inner,
        sparsity,
        "gradient",
        key=key if key is not None else jax.random.key(0),
        mask=mask,
        distribution=distribution,
        update_every=update_every,
        end_step=end_step,
        drop_fraction=drop_fraction,
        begin_step=begin_step,
        overrides=overrides,
        prunable=prunable,
        method=method,
    )


def set_training(
    inner: optax.GradientTransformation,
    sparsity: float | None = None,
    *,
    end_step: int,
    key: jax.Array,
    mask: Any = None,
    update_every: int = 100,
    drop_fraction: float = 0.3,
    begin_step: int = 0,
    distribution: distributions.Distribution = "erk",
    overrides: Mapping[str, distributions.Override] | None = None,
    prunable: filters.FilterLike = None,
    method: str = "auto",
) -> DSTTransformation:
    """SET: as :func:`rigl`, but grown connections are chosen at random (Mocanu et al. 2018).

    Example:
      >>> import jax, jax.numpy as jnp, optax, jaxprune
      >>> tx = jaxprune.set_training(optax.sgd(0.1), 0.5, end_step=1000, key=jax.random.key(0))
      >>> int(tx.init({"w": jnp.ones((4, 4))}).mask["w"].sum())
      8
    """
    return _dst(
        inner,
        sparsity,
        "random",
        key=key,
        mask=mask,
        distribution=distribution,
        update_every=update_every,
        end_step=end_step,
        drop_fraction=drop_fraction,
        begin_step=begin_step,
        overrides=overrides,
        prunable=prunable,
        method=method,
    )
