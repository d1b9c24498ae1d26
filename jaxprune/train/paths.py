"""The loss and error of a model along the linear path between two train states.

A path `theta(a) = (1 - a) theta_0 + a theta_1` evaluated at many points `a` is an
ensemble of models: the interpolated parameters are stacked along a leading alpha
axis and evaluated by the ensemble eval step (`make_eval_step(ensemble=True)`), one
compiled program for every point (Frankle et al. 2020, "Linear mode connectivity and
the lottery ticket hypothesis"). Networks with batch norm get the statistics of every
interpolated point re-estimated on training data, the "reset" of Jordan et al. 2023,
"REPAIR: REnormalizing Permuted Activations for Interpolation Repair".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxprune import _fastpath
from jaxprune._checks import is_integer
from jaxprune._tree import leaves_with_paths, matched_leaves
from jaxprune.analysis import interpolate
from jaxprune.train.state import TrainState, apply_model, ensemble_axes
from jaxprune.train.steps import (
    ensemble_eval_step,
    make_eval_step,
    padded_batches,
    summed_eval,
)

__all__ = ["PathResult", "evaluate_path", "reestimate_batch_stats"]

MEMORY_BUDGET = 1 << 30
"""Bytes that `evaluate_path(chunk=None)` lets one chunk of points hold (1 GiB)."""


class PathResult(NamedTuple):
    """Loss, error and accuracy of the model at each point of a linear path.

    Point `alpha` is `(1 - alpha) * a + alpha * b`; the curves are float64 arrays over
    the points, the error a fraction (`1 - accuracy`), not a percentage.
    """

    alphas: np.ndarray  # the interpolation weights, shape (n,)
    loss: np.ndarray  # mean loss (cross-entropy unless a loss_fn was given)
    error: np.ndarray  # fraction of examples misclassified
    accuracy: np.ndarray  # fraction of examples classified correctly
    bn_reestimated: bool  # whether batch-norm statistics were re-estimated at every point
    count: int  # the number of examples evaluated


def evaluate_path(
    a: TrainState,
    b: TrainState,
    data: Any,
    *,
    alphas: int | Any = 31,
    batch_size: int = 1000,
    chunk: int | None = None,
    bn_data: Any = None,
    bn_batches: int = 10,
    bn_batch_size: int = 500,
    loss_fn: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> PathResult:
    """Loss and error of the model at every point of the linear path from `a` to `b`.

    The points of a chunk are evaluated at once: their parameters are stacked along
    a leading axis and the eval step is `jax.vmap`ped over it, one compiled program
    for the whole path (the last chunk is padded to the chunk's size). Integer
    leaves (counters) are taken from `a`. Where both endpoints hold a pruned weight
    (an exact zero), every point holds an exact zero.

    `chunk=None` takes as many points at once as fit in `MEMORY_BUDGET` bytes, each
    point counted as its own copy of the parameters and model state plus the
    intermediate values of the forward pass (every value of the traced model, an
    upper bound) on `batch_size` examples (and on `bn_batch_size` examples in train
    mode when statistics are re-estimated). On CPU it is 1: XLA:CPU runs the
    batched matrix products of stacked points slower per point than one model's
    plain ones, while a point at `batch_size` 1000 already keeps the cores busy
    (`benchmarks/paths.py` measures it).

    Batch norm: when the model holds batch statistics (`nnx.BatchStat` variables of
    `nnx.BatchNorm` layers), interpolated statistics describe no network, so at every
    point they are reset and re-estimated on `bn_data` (REPAIR's reset): the model
    runs in train mode on the first `bn_batches` batches of `bn_batch_size` examples
    of `bn_data` and each statistic becomes the mean over those batches of its
    per-batch value (PyTorch's cumulative average, `momentum=None`: as if the
    momentum at batch `k` were `(k - 1) / k`). See `reestimate_batch_stats`.

    Args:
      a: the state at `alpha = 0`.
      b: the state at `alpha = 1`, of the same model (graph and parameter shapes).
      data: the evaluation data, anything with numpy `x` and `y` (a `Dataset`).
      alphas: an int `n` for `n` evenly spaced points from 0 to 1 (endpoints
        included), or a 1-d array of interpolation weights.
      batch_size: examples per eval step.
      chunk: points evaluated at once; None picks it from the memory budget.
      bn_data: training data for the batch statistics (required when the model has
        batch norm, ignored otherwise).
      bn_batches: batches of `bn_data` the statistics are averaged over.
      bn_batch_size: examples per batch of `bn_data`.
      loss_fn: `loss_fn(logits, labels) -> per-example losses`; default: softmax
        cross-entropy with integer labels.

    Returns:
      A `PathResult`; barriers are computed from its curves by the caller.

    Example:
      >>> import optax
      >>> from jaxprune.train import create_train_state, testing
      >>> tx = optax.sgd(0.1)
      >>> a, b = (create_train_state(testing.TinyMLP(16, 8, 4, rngs=nnx.Rngs(i)), tx) for i in (0, 1))
      >>> path = evaluate_path(a, b, testing.synthetic_dataset(100), alphas=5)
      >>> path.alphas.tolist(), path.loss.shape, path.bn_reestimated
      ([0.0, 0.25, 0.5, 0.75, 1.0], (5,), False)
    """
    _check_pair(a, b)
    grid = _alpha_grid(alphas)
    _check_positive(batch_size=batch_size, bn_batches=bn_batches, bn_batch_size=bn_batch_size)
    if chunk is not None:
        _check_positive(chunk=chunk)
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(
            f"loss_fn must be a function (logits, labels) -> per-example losses; got "
            f"{loss_fn!r} (evaluate_path). Pass None for the cross-entropy."
        )
    with_bn = _batch_stat_count(a) > 0
    bn_x = None
    if with_bn:
        if bn_data is None:
            raise ValueError(
                "bn_data must be given for a model with batch norm; got None (evaluate_path). "
                "Interpolated batch statistics describe no network: pass training data "
                "(e.g. the training split) to re-estimate them at every point."
            )
        bn_x = _bn_batches(bn_data, bn_batches, bn_batch_size, "evaluate_path")
    if chunk is None:
        chunk = _auto_chunk(a, data, batch_size, bn_batch_size if with_bn else 0, len(grid))
    chunk = min(chunk, len(grid))
    step = ensemble_eval_step if loss_fn is None else _ensemble_eval_step(loss_fn)
    # Placed once for all chunks (the whole split on the device), not once per point.
    x, y = np.asarray(data.x), np.asarray(data.y)
    if len(y) == 0:
        raise ValueError(
            "data must hold at least one example; got an empty dataset (evaluate_path)."
        )
    batches = [jax.tree.map(jnp.asarray, b) for b in padded_batches(x, y, batch_size)]
    losses, accuracies, count = [], [], 0
    for start in range(0, len(grid), chunk):
        part = grid[start : start + chunk]
        padded = np.concatenate([part, np.full(chunk - len(part), part[-1])])
        points = _path_states(a, b, padded)
        if with_bn:
            points = _reestimate(points, bn_x, ensemble=True)
        out = summed_eval(step, points, batches)
        losses.extend(out["loss"][: len(part)])
        accuracies.extend(out["accuracy"][: len(part)])
        count = out["count"]
    accuracy = np.asarray(accuracies, np.float64)
    return PathResult(
        alphas=grid,
        loss=np.asarray(losses, np.float64),
        error=1.0 - accuracy,
        accuracy=accuracy,
        bn_reestimated=with_bn,
        count=count,
    )


def reestimate_batch_stats(
    state: TrainState,
    data: Any,
    *,
    batches: int = 10,
    batch_size: int = 500,
    ensemble: bool = False,
) -> TrainState:
    """The state with its batch-norm statistics reset and re-estimated on `data`.

    The model runs in train mode on the first `batches` batches of `batch_size`
    examples of `data` (fewer when `data` is shorter; a partial batch is dropped),
    with each `nnx.BatchNorm`'s momentum set to 0 so that its running statistics
    become exactly the batch's; every statistic is then the mean over the batches
    (REPAIR's reset: PyTorch's cumulative average). The parameters are not changed.

    Args:
      state: a train state whose model has `nnx.BatchNorm` layers.
      data: training data, anything with a numpy `x` (a `Dataset`).
      batches: the number of batches averaged over.
      batch_size: examples per batch.
      ensemble: `state` is a stack of members (`stack_states`), each re-estimated.

    Returns:
      The state with new `model_state` batch statistics.

    Example:
      >>> import optax
      >>> from jaxprune.train import create_train_state, testing
      >>> state = create_train_state(testing.TinyCNN(1, 4, 3, rngs=nnx.Rngs(0)), optax.sgd(0.1))
      >>> data = testing.synthetic_dataset(64, (16, 1), 3)
      >>> new = reestimate_batch_stats(state, data, batches=2, batch_size=32)
      >>> bool(jnp.all(new.model_state["bn"]["var"] != state.model_state["bn"]["var"]))
      True
    """
    _check_positive(batches=batches, batch_size=batch_size)
    if _batch_stat_count(state) == 0:
        raise ValueError(
            "state must have batch statistics (nnx.BatchNorm layers) to re-estimate; got a "
            "model without any (reestimate_batch_stats). Evaluate it as it is."
        )
    return _reestimate(
        state, _bn_batches(data, batches, batch_size, "reestimate_batch_stats"), ensemble=ensemble
    )


def _reestimate(state: TrainState, xs: jax.Array, *, ensemble: bool) -> TrainState:
    fn = _reset_members if ensemble else _reset_one
    return state.replace(model_state=fn(state.graphdef, state.params, state.model_state, xs))


def _reset_stats(graphdef: nnx.GraphDef, params: Any, model_state: Any, xs: jax.Array) -> Any:
    """The model state with each batch statistic the mean of its value over batches `xs`."""
    model = nnx.merge(graphdef, params, model_state)
    for _, module in nnx.iter_modules(model):
        if isinstance(module, nnx.BatchNorm):
            module.momentum = 0.0  # the running statistic becomes the batch's, exactly
    model.train()
    train_graph, *parts = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
    p, stats, rest = (nnx.as_pure(s) for s in parts)

    def add_batch(total: Any, x: jax.Array) -> tuple[Any, None]:
        module = nnx.merge(train_graph, p, stats, rest)
        module(x)
        batch_stats = nnx.as_pure(nnx.state(module, nnx.BatchStat))
        return jax.tree.map(jnp.add, total, batch_stats), None

    total, _ = jax.lax.scan(add_batch, jax.tree.map(jnp.zeros_like, stats), xs)
    model = nnx.merge(graphdef, params, model_state)
    nnx.update(model, jax.tree.map(lambda t: t / xs.shape[0], total))
    return nnx.as_pure(nnx.split(model, nnx.Param, ...)[2])


_reset_one = jax.jit(_reset_stats, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _reset_members(graphdef: nnx.GraphDef, params: Any, model_state: Any, xs: jax.Array) -> Any:
    """`_reset_stats` of each member of a stack (shared 0-d leaves stay shared)."""

    def one(p: Any, m: Any) -> Any:
        return _reset_stats(graphdef, p, m, xs)

    axes = (ensemble_axes(params), ensemble_axes(model_state))
    return jax.vmap(one, in_axes=axes, out_axes=ensemble_axes(model_state))(params, model_state)


def _batch_stat_count(state: TrainState) -> int:
    """The number of batch statistics of the model; a ValueError if some are not BatchNorm's."""
    model = nnx.merge(state.graphdef, state.params, state.model_state)
    found = len(jax.tree.leaves(nnx.state(model, nnx.BatchStat)))
    norms = sum(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(model))
    if found != 2 * norms:  # a BatchNorm holds a mean and a variance
        raise ValueError(
            f"the model's batch statistics must all belong to nnx.BatchNorm layers; got "
            f"{found} nnx.BatchStat variables for {norms} BatchNorm layers. Re-estimating "
            "other statistics is not supported: use nnx.BatchNorm."
        )
    return found


@functools.cache
def _ensemble_eval_step(loss_fn: Callable) -> Callable:
    return make_eval_step(ensemble=True, loss_fn=loss_fn)


def _path_states(a: TrainState, b: TrainState, alphas: np.ndarray) -> TrainState:
    """The points of the path as one stacked state (no optimizer state: only evaluated)."""
    al = jnp.asarray(alphas, jnp.float32)
    return a.replace(
        params=interpolate(a.params, b.params, al),
        model_state=interpolate(a.model_state, b.model_state, al),
        opt_state=(),
    )


def _check_pair(a: TrainState, b: TrainState) -> None:
    for name, s in (("a", a), ("b", b)):
        if not isinstance(s, TrainState):
            raise TypeError(
                f"{name} must be a TrainState; got {type(s).__name__} (evaluate_path). "
                "Build it with create_train_state or restore it from a checkpoint."
            )
    if a.graphdef != b.graphdef:
        raise ValueError(
            "b must be a state of the same model as a; got another model graph "
            "(evaluate_path). Interpolate two states of one architecture."
        )
    for field in ("params", "model_state"):
        paths, xs, ys = matched_leaves(
            getattr(b, field), getattr(a, field), f"b.{field}", f"a.{field}"
        )
        for path, x, y in zip(paths, xs, ys):
            if jnp.shape(x) != jnp.shape(y) or jnp.result_type(x) != jnp.result_type(y):
                raise ValueError(
                    f"b.{field} must match a.{field} leaf by leaf; got {path!r} of shape "
                    f"{jnp.shape(x)} and dtype {jnp.result_type(x)} in b, "
                    f"{jnp.shape(y)} and {jnp.result_type(y)} in a (evaluate_path). "
                    "Interpolate two states of one architecture."
                )


def _alpha_grid(alphas: Any) -> np.ndarray:
    if is_integer(alphas):
        if alphas < 1:
            raise ValueError(
                f"alphas must be a positive number of points or a 1-d array; got {alphas} "
                "(evaluate_path). Pass e.g. 31."
            )
        return np.linspace(0.0, 1.0, int(alphas))
    try:
        grid = np.asarray(alphas, np.float64)
    except (TypeError, ValueError):
        grid = None
    if grid is None or grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)):
        raise ValueError(
            f"alphas must be a positive number of points or a non-empty 1-d array of "
            f"finite weights; got {alphas!r} (evaluate_path). Pass e.g. 31 or "
            "np.linspace(0, 1, 31)."
        )
    return grid


def _check_positive(**values: Any) -> None:
    for name, value in values.items():
        if not is_integer(value):
            raise TypeError(f"{name} must be an integer; got {value!r}.")
        if value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value}.")


def _bn_batches(data: Any, batches: int, batch_size: int, where: str) -> jax.Array:
    """The first `batches` full batches of `data.x`, stacked: `(batches, batch_size, ...)`."""
    x = np.asarray(data.x)
    usable = min(batches, len(x) // batch_size)
    if usable == 0:
        raise ValueError(
            f"the batch-norm data must hold at least one batch of {batch_size} examples; got "
            f"{len(x)} ({where}). Pass more training data or a smaller batch size."
        )
    return jnp.asarray(x[: usable * batch_size].reshape(usable, batch_size, *x.shape[1:]))


def _auto_chunk(state: TrainState, data: Any, batch_size: int, bn_batch_size: int, n: int) -> int:
    """The points evaluated at once: 1 on CPU, else as many as fit `MEMORY_BUDGET`."""
    if _fastpath.on_cpu():  # stacked points are slower per point on XLA:CPU
        return 1
    _, leaves, _ = leaves_with_paths((state.params, state.model_state))
    weights = sum(np.dtype(jnp.result_type(x)).itemsize * math.prod(jnp.shape(x)) for x in leaves)
    example = jax.ShapeDtypeStruct((1, *np.shape(data.x)[1:]), np.asarray(data.x).dtype)
    act = batch_size * _activation_bytes(state, example, train=False)
    if bn_batch_size:
        act = max(act, bn_batch_size * _activation_bytes(state, example, train=True))
    return int(max(1, min(n, MEMORY_BUDGET // max(1, weights + act))))


def _activation_bytes(state: TrainState, example: jax.ShapeDtypeStruct, *, train: bool) -> int:
    """Bytes of every intermediate value of the forward pass on one example."""
    jaxpr = jax.make_jaxpr(lambda x: apply_model(state, x, train=train))(example)
    total = 0
    for eqn in jaxpr.jaxpr.eqns:
        for v in eqn.outvars:
            aval = v.aval
            total += math.prod(getattr(aval, "shape", ())) * np.dtype(aval.dtype).itemsize
    return total
