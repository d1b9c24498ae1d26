"""`sinkhorn_matching`: permutations learned through a soft (Sinkhorn) relaxation."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.optimize import linear_sum_assignment

from jaxprune import _tree, analysis
from jaxprune.rebasin._spec import AxisRef, PermutationSpec, spec_leaf
from jaxprune.typing import PyTree

__all__ = ["sinkhorn_matching"]

_OBJECTIVES = ("midpoint", "random")


def sinkhorn_matching(
    spec: PermutationSpec,
    a: PyTree,
    b: PyTree,
    loss_fn: Callable[[PyTree, Any], jax.Array],
    batches: Iterable[Any],
    *,
    key: jax.Array,
    steps: int = 500,
    lr: float = 0.1,
    objective: Literal["midpoint", "random"] = "midpoint",
    temperature: float = 1.0,
    iterations: int = 20,
) -> dict[str, jax.Array]:
    """The permutation of ``b``'s units learned to lower the loss between ``a`` and ``b``.

    Pena et al. (2023), "Re-basin via implicit Sinkhorn differentiation": each
    permutation is a real matrix ``P`` (starting at ``I + 0.1 N(0, 1)``) made a doubly
    stochastic matrix by log-space Sinkhorn (``iterations`` row and column
    normalisations of ``P / temperature``), which reorders ``b``'s units softly (a
    hard permutation matrix ``S[i, perm[i]] = 1`` gives exactly `permute`). The
    matrices are trained with AdamW on ``loss_fn`` at the midpoint
    ``0.5 a + 0.5 soft(b)`` (``objective="midpoint"``) or at a uniformly random point
    of the line each step (``"random"``), then hardened by a linear assignment on each
    learned matrix. The gradient goes through the unrolled Sinkhorn iterations (plain
    backpropagation, not implicit differentiation). Groups that move no floating leaf
    of ``b`` keep the identity.

    Args:
      spec: from `permutation_spec`.
      a: the reference variables (the tree the spec was traced from, or some of its
        leaves: whatever ``loss_fn`` takes).
      b: the variables to align, with the same structure as ``a``.
      loss_fn: ``loss_fn(variables, batch) -> scalar``, differentiable in the floating
        leaves of ``variables``.
      batches: an iterable of batches, cycled as needed for ``steps`` (the batches of
        a one-shot iterator are kept to be cycled).
      key: draws the initial matrices (and the points of ``"random"``).
      steps: the optimisation steps.
      lr: AdamW's learning rate.
      objective: ``"midpoint"`` or ``"random"``.
      temperature: divides the matrices before Sinkhorn.
      iterations: Sinkhorn iterations (each a row and a column normalisation).

    Returns:
      Group name -> int32 permutation: ``permute(spec, perm, b)`` is ``b`` aligned to
      ``a``.

    Raises:
      ValueError: an unknown objective, ``steps``/``iterations`` below 1, a
        temperature that is not positive, ``a`` and ``b`` differing in structure, no
        leaf the spec moves, or no batch.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> apply = lambda v, x: jnp.maximum(x @ v["w1"], 0) @ v["w2"]
      >>> v = {"w1": jax.random.normal(jax.random.key(0), (3, 4)), "w2": jnp.ones((4, 1))}
      >>> spec = rebasin.permutation_spec(apply, v, jnp.ones((1, 3)))
      >>> x = jax.random.normal(jax.random.key(1), (16, 3))
      >>> loss = lambda v, x: jnp.mean(apply(v, x) ** 2)
      >>> p = rebasin.sinkhorn_matching(spec, v, v, loss, [x], key=jax.random.key(2), steps=5)
      >>> sorted(p["w1"].tolist())
      [0, 1, 2, 3]
    """
    if objective not in _OBJECTIVES:
        raise ValueError(
            f"sinkhorn_matching: objective must be one of {_OBJECTIVES}; got {objective!r}."
        )
    for what, value in (("steps", steps), ("iterations", iterations)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"sinkhorn_matching: {what} must be an int >= 1; got {value!r}.")
    if not temperature > 0:
        raise ValueError(f"sinkhorn_matching: temperature must be > 0; got {temperature!r}.")
    if not callable(loss_fn):
        raise TypeError("sinkhorn_matching: loss_fn must be callable as loss_fn(variables, batch).")
    moves = _moves(spec, a, b)
    learned = sorted({name for refs in moves.values() for name, _ in refs})
    init = {
        name: jnp.eye(spec.groups[name].size)
        + 0.1 * jax.random.normal(jax.random.fold_in(key, k), (spec.groups[name].size,) * 2)
        for k, name in enumerate(spec.groups)
        if name in learned
    }
    tx = optax.adamw(lr)

    def loss(params, a, b, batch, alpha):
        soft = {n: _sinkhorn(p / temperature, iterations) for n, p in params.items()}
        return loss_fn(analysis.interpolate(a, _soft_permute(b, moves, soft), alpha), batch)

    # a and b are arguments, not constants folded into the compiled program.
    @jax.jit
    def step(params, opt_state, a, b, batch, step_key):
        if objective == "midpoint":
            alpha = 0.5
        else:
            alpha = jax.random.uniform(step_key)
        value, grads = jax.value_and_grad(loss)(params, a, b, batch, alpha)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    params, opt_state = init, tx.init(init)
    alpha_key = jax.random.fold_in(key, len(spec.groups))
    done = 0
    for done, batch in zip(range(1, steps + 1), itertools.cycle(batches)):
        step_key = jax.random.fold_in(alpha_key, done)
        params, opt_state, _ = step(params, opt_state, a, b, batch, step_key)
    if not done:
        raise ValueError("sinkhorn_matching: batches is empty; pass at least one batch.")
    perm = {name: jnp.arange(g.size, dtype=jnp.int32) for name, g in spec.groups.items()}
    for name, p in params.items():
        _, cols = linear_sum_assignment(np.asarray(p, np.float64), maximize=True)
        perm[name] = jnp.asarray(cols, jnp.int32)
    return perm


def _sinkhorn(logits: jax.Array, iterations: int) -> jax.Array:
    """A doubly stochastic matrix from ``logits`` by alternate log-space normalisation."""

    def normalise(_: int, z: jax.Array) -> jax.Array:
        z = z - jax.nn.logsumexp(z, axis=1, keepdims=True)
        return z - jax.nn.logsumexp(z, axis=0, keepdims=True)

    # a loop, not unrolled: the compiled program stays small whatever `iterations` is
    return jnp.exp(jax.lax.fori_loop(0, iterations, normalise, logits))


def _moves(spec: PermutationSpec, a: PyTree, b: PyTree) -> dict[int, list[tuple[str, AxisRef]]]:
    """Leaf index of ``b`` -> the (group, axis) pairs that move it."""
    paths_a, _, treedef_a = _tree.leaves_with_paths(a)
    paths_b, leaves_b, treedef_b = _tree.leaves_with_paths(b)
    if paths_a != paths_b or treedef_a != treedef_b:
        diff = sorted(set(paths_a) ^ set(paths_b))
        raise ValueError(
            f"sinkhorn_matching: a and b differ in structure (e.g. {diff[:3] or paths_a[:3]}); "
            f"pass two trees of the same model."
        )
    moves: dict[int, list[tuple[str, AxisRef]]] = {}
    for k, (path, leaf) in enumerate(zip(paths_b, leaves_b)):
        if not jnp.issubdtype(getattr(leaf, "dtype", np.int32), jnp.floating):
            continue
        found = spec_leaf(path, leaf, spec)
        if found is not None:
            moves[k] = spec.moves(found)
    if not moves:
        raise ValueError(
            f"sinkhorn_matching: no floating leaf of b is one the spec moves (spec leaves "
            f"such as {sorted(spec.shapes)[:3]}; tree leaves such as {paths_b[:3]})."
        )
    return moves


def _soft_take(x: jax.Array, ref: AxisRef, s: jax.Array) -> jax.Array:
    """`take` with a soft permutation matrix: unit ``i`` becomes ``sum_j s[i, j] unit_j``."""
    shape = x.shape
    n = shape[ref.axis] // (ref.outer * ref.inner)
    y = x.reshape(shape[: ref.axis] + (ref.outer, n, ref.inner) + shape[ref.axis + 1 :])
    y = jnp.tensordot(s.astype(y.dtype), y, axes=([1], [ref.axis + 1]))
    return jnp.moveaxis(y, 0, ref.axis + 1).reshape(shape)


def _soft_permute(
    tree: PyTree, moves: dict[int, list[tuple[str, AxisRef]]], soft: dict[str, jax.Array]
) -> PyTree:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    out = list(leaves)
    for k, refs in moves.items():
        for name, ref in refs:
            out[k] = _soft_take(out[k], ref, soft[name])
    return jax.tree_util.tree_unflatten(treedef, out)
