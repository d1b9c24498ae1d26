"""Permutation alignment of train states and the linear path of an aligned pair.

Git Re-Basin (Ainsworth, Hayase & Srinivasa, 2023) permutes the hidden units of one
network to match another's before interpolating; REPAIR (Jordan, Sedghi, Saukh, Entezari
& Neyshabur, 2023) then rescales every interpolated unit to the statistics the endpoints'
units would give it. Here the permutations come from `jaxprune.rebasin`, traced from the
state's model in eval mode, over the parameters and the model state together (batch
statistics move with their units).

:func:`state_spec` traces a state's permutation spec, :func:`align_state` applies a
permutation to a state, and :func:`evaluate_aligned_path` evaluates the path between two
states without or with REPAIR: for models without batch norm, the REPAIR of the
``rebasin`` module at every point; for batch-norm models, the statistics reset of
:func:`jaxprune.train.evaluate_path` (REPAIR's own baseline for them).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxprune import rebasin
from jaxprune.analysis import interpolate
from jaxprune.train.paths import (
    PathResult,
    _alpha_grid,
    _auto_chunk,
    _batch_stat_count,
    _check_pair,
    _path_states,
    evaluate_path,
)
from jaxprune.train.state import TrainState
from jaxprune.train.steps import ensemble_eval_step, padded_batches, summed_eval

__all__ = ["align_state", "evaluate_aligned_path", "state_apply", "state_spec"]


def state_apply(state: TrainState) -> Callable[[Any, jax.Array], jax.Array]:
    """The model of ``state`` in eval mode as ``f((params, model_state), x) -> logits``.

    The function `jaxprune.rebasin` traces: its variables are the state's parameters
    and model state together.

    Example:
      >>> import optax
      >>> from jaxprune.train import create_train_state, testing
      >>> state = create_train_state(testing.TinyMLP(16, 8, 4, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> state_apply(state)((state.params, state.model_state), jnp.ones((2, 16))).shape
      (2, 4)
    """
    return functools.partial(_apply, state.graphdef)


def _apply(graphdef: nnx.GraphDef, variables: Any, x: jax.Array) -> jax.Array:
    model = nnx.merge(graphdef, *variables)
    model.eval()
    return model(x)


def state_spec(state: TrainState, x: Any) -> rebasin.PermutationSpec:
    """The hidden-unit permutation spec of a state's model, traced on example input ``x``.

    Args:
      state: one (unstacked) train state.
      x: an example batch of inputs (its values are not used).

    Returns:
      The spec over ``(params, model_state)`` (leaf paths start with ``0/`` and ``1/``).

    Example:
      >>> import optax
      >>> from jaxprune.train import create_train_state, testing
      >>> state = create_train_state(testing.TinyMLP(16, 8, 4, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> list(state_spec(state, jnp.ones((1, 16))).sizes.values())
      [8]
    """
    return rebasin.permutation_spec(state_apply(state), _variables(state), jnp.asarray(x))


def align_state(spec: rebasin.PermutationSpec, perm: Any, state: TrainState) -> TrainState:
    """``state`` with its hidden units permuted by ``perm`` (from a matching of ``spec``).

    The parameters and the model state move together; the optimizer state is dropped
    (``()``): an aligned state is for evaluation.

    Args:
      spec: from :func:`state_spec`.
      perm: group name -> permutation (`jaxprune.rebasin.weight_matching`, ...).
      state: the state to permute.

    Returns:
      The permuted state; it computes the same function as ``state``.

    Example:
      >>> import optax
      >>> from jaxprune import rebasin
      >>> from jaxprune.train import create_train_state, testing
      >>> state = create_train_state(testing.TinyMLP(16, 8, 4, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> spec = state_spec(state, jnp.ones((1, 16)))
      >>> moved = align_state(spec, rebasin.random_permutation(jax.random.key(1), spec), state)
      >>> f, x = state_apply(state), jnp.ones((3, 16))
      >>> before, after = f((state.params, state.model_state), x), f((moved.params, moved.model_state), x)
      >>> bool(jnp.allclose(before, after, atol=1e-5))
      True
    """
    params, model_state = rebasin.permute(spec, perm, _variables(state))
    return state.replace(params=params, model_state=model_state, opt_state=())


def evaluate_aligned_path(
    a: TrainState,
    b: TrainState,
    data: Any,
    *,
    alphas: int | Any = 25,
    repair: bool = False,
    repair_data: Any = None,
    repair_batches: int = 10,
    repair_batch_size: int = 500,
    batch_size: int = 1000,
    chunk: int | None = None,
) -> PathResult:
    """Loss and error along the linear path from ``a`` to ``b`` (``b`` aligned to ``a``),
    without or with REPAIR.

    Without REPAIR every point is the plain interpolation, batch statistics included
    (for a batch-norm model they are interpolated too, not re-estimated). With REPAIR,
    a model without batch norm gets at every point ``alpha`` the per-unit correction
    `jaxprune.rebasin.repair` computes towards the interpolation of the endpoints'
    statistics (`jaxprune.rebasin.unit_stats` on the same ``repair_data`` batches); a
    batch-norm model gets its statistics reset (re-estimated at every point,
    :func:`jaxprune.train.evaluate_path`), REPAIR's variant for such models. The points
    of a chunk are evaluated at once (vmapped over alpha).

    Args:
      a: the state at ``alpha = 0``.
      b: the state at ``alpha = 1``, of the same model, already aligned to ``a``.
      data: the evaluation data (numpy ``x``, ``y``), or a mapping of split name ->
        data (the REPAIR corrections are then computed once for all of them).
      alphas: an int ``n`` (``n`` evenly spaced points, endpoints included) or weights.
      repair: apply REPAIR (or the batch-norm reset).
      repair_data: training data for the statistics (required with ``repair``).
      repair_batches: batches of ``repair_data`` used.
      repair_batch_size: examples per batch of ``repair_data``.
      batch_size: examples per evaluation step.
      chunk: points evaluated at once; None: as `evaluate_path` picks it.

    Returns:
      A `PathResult` (a dict of them, by split, for a mapping ``data``);
      ``bn_reestimated`` tells whether the batch-norm reset was used.

    Example:
      >>> import optax
      >>> from jaxprune.train import create_train_state, testing
      >>> a, b = (create_train_state(testing.TinyMLP(16, 8, 4, rngs=nnx.Rngs(i)), optax.sgd(0.1))
      ...         for i in (0, 1))
      >>> data = testing.synthetic_dataset(100)
      >>> path = evaluate_aligned_path(a, b, data, alphas=3, repair=True, repair_data=data,
      ...                              repair_batch_size=50)
      >>> path.loss.shape, path.bn_reestimated
      ((3,), False)
    """
    _check_pair(a, b)
    grid = _alpha_grid(alphas)
    with_bn = _batch_stat_count(a) > 0
    if repair and repair_data is None:
        raise ValueError(
            "repair_data must be given with repair=True; got None (evaluate_aligned_path). "
            "Pass training data: REPAIR measures the units' statistics on it."
        )
    splits = dict(data) if isinstance(data, Mapping) else {"": data}
    if with_bn == repair:  # the plain path, or the batch-norm reset: evaluate_path's own
        bn = dict(bn_data=repair_data, bn_batches=repair_batches, bn_batch_size=repair_batch_size)
        out = {
            name: evaluate_path(
                a, b, d, alphas=grid, batch_size=batch_size, chunk=chunk, **(bn if repair else {})
            )
            for name, d in splits.items()
        }
    else:
        fixes = None
        if repair:  # the corrections of every point, shared by the splits
            xs = _repair_batches(repair_data, repair_batches, repair_batch_size)
            fixes = _repairs(a, b, xs, grid)
        out = {
            name: _points_path(a, b, d, grid, fixes, batch_size, chunk)
            for name, d in splits.items()
        }
    return out if isinstance(data, Mapping) else out[""]


def _variables(state: TrainState) -> tuple[Any, Any]:
    return (state.params, state.model_state)


def _repair_batches(data: Any, batches: int, batch_size: int) -> list[jax.Array]:
    x = np.asarray(data.x)
    usable = min(batches, len(x) // batch_size)
    if usable == 0:
        raise ValueError(
            f"repair_data must hold at least one batch of {batch_size} examples; got {len(x)} "
            "(evaluate_aligned_path). Pass more data or a smaller repair_batch_size."
        )
    return [jnp.asarray(x[i * batch_size : (i + 1) * batch_size]) for i in range(usable)]


def _repairs(a: TrainState, b: TrainState, xs: list, grid: np.ndarray) -> rebasin.UnitStats:
    """The REPAIR corrections of the points ``grid`` of the path, stacked over the points."""
    f = state_apply(a)
    va, vb = _variables(a), _variables(b)
    stats_a, stats_b = rebasin.unit_stats(f, va, xs), rebasin.unit_stats(f, vb, xs)
    fixes = [  # repair runs on the host, point by point
        rebasin.repair(
            f, interpolate(va, vb, float(t)), interpolate(stats_a, stats_b, float(t)), xs
        )
        for t in grid
    ]
    return jax.tree.map(lambda *t: jnp.stack(t), *fixes)


def _points_path(a, b, data, grid, fixes, batch_size: int, chunk: int | None) -> PathResult:
    """The path evaluated point by point as the variables say: interpolated batch
    statistics as they are, or the REPAIR ``fixes`` (stacked over ``grid``) applied."""
    if chunk is None:
        chunk = _auto_chunk(a, data, batch_size, 0, len(grid))
    chunk = max(1, min(chunk, len(grid)))
    batches = [jax.tree.map(jnp.asarray, x) for x in padded_batches(data.x, data.y, batch_size)]
    loss, accuracy, count = [], [], 0
    for start in range(0, len(grid), chunk):
        take = np.minimum(np.arange(start, start + chunk), len(grid) - 1)  # the last padded
        points = _path_states(a, b, grid[take])
        if fixes is None:
            out = summed_eval(ensemble_eval_step, points, batches)
        else:
            fix = jax.tree.map(lambda t: t[take], fixes)
            out = summed_eval(_repaired_step(a.graphdef), (_variables(points), fix), batches)
        n = min(chunk, len(grid) - start)
        loss.extend(out["loss"][:n])
        accuracy.extend(out["accuracy"][:n])
        count = out["count"]
    acc = np.asarray(accuracy, np.float64)
    return PathResult(grid, np.asarray(loss, np.float64), 1.0 - acc, acc, False, count)


@functools.cache
def _repaired_step(graphdef: nnx.GraphDef) -> Callable:
    f = functools.partial(_apply, graphdef)

    def one(v: Any, fix: rebasin.UnitStats, batch: dict) -> dict:
        logits = rebasin.apply_repaired(f, v, fix, batch["x"])
        losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"])
        correct = (jnp.argmax(logits, -1) == batch["y"]).astype(jnp.float32)
        w = batch["weight"]
        return {"loss_sum": jnp.sum(losses * w), "correct": jnp.sum(correct * w), "count": w.sum()}

    @jax.jit
    def step(points: tuple, batch: dict) -> dict:
        return jax.vmap(one, in_axes=(0, 0, None))(*points, batch)

    return step
