"""`weight_matching`: the permutation that aligns one network's units to another's."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from jaxprune import _tree
from jaxprune.rebasin._spec import AxisRef, PermutationSpec, spec_leaf
from jaxprune.typing import PyTree

__all__ = ["MatchingInfo", "weight_matching"]

# Sweeps without a better objective before weight matching gives up (see the loop).
_PATIENCE = 10


class MatchingInfo(NamedTuple):
    """How `weight_matching` ended: the sweeps it ran and the objective it reached.

    ``objective`` is ``sum_l <W_l^a, P_l W_l^b P_{l-1}^T>`` over the matched leaves
    (masked entries count as zeros), in float64.
    """

    sweeps: int
    objective: float


class _Slot(NamedTuple):
    """One axis a group moves, prepared for the sweeps.

    ``a`` is ``unit_view(w_a, ref)``; ``b`` is ``w_b`` with the unit axis first (still
    unflattened) and ``others`` the (group, axis of ``b``) pairs of the leaf's other
    permuted axes, applied to ``b`` before the product.
    """

    a: np.ndarray
    b: np.ndarray
    others: tuple[tuple[str, int], ...]


def weight_matching(
    spec: PermutationSpec,
    a: PyTree,
    b: PyTree,
    *,
    key: jax.Array | None = None,
    max_iter: int = 100,
    masks: tuple[PyTree, PyTree] | None = None,
    return_info: bool = False,
) -> dict[str, jax.Array] | tuple[dict[str, jax.Array], MatchingInfo]:
    """The permutation of ``b``'s hidden units that best matches ``a``'s weights.

    Git Re-Basin's weight matching (Ainsworth et al., 2023, Algorithm 1): maximises
    ``sum_l <W_l^a, P_l W_l^b P_{l-1}^T>`` by coordinate descent. Every permutation
    starts at the identity; a sweep visits them in a random order and solves, for each,
    the linear assignment of ``sum over its axes of unit_view(w_a) @ unit_view(w_b)^T``
    (``w_b`` with the other permutations applied); the sweeps stop when one improves no
    assignment (by more than 1e-12). Runs in float64 on the host.

    Args:
      spec: from `permutation_spec`.
      a: the reference variables: the tree the spec was traced from or a tree holding
        some of its leaves (e.g. params only).
      b: the variables to align, with the same structure as ``a``.
      key: draws the order of the permutations in each sweep; None means
        ``jax.random.key(0)``.
      max_iter: the most sweeps.
      masks: optional ``(mask_a, mask_b)``: masked weights count as zeros (0-d
        stand-ins, and leaves the masks lack, count as all ones).
      return_info: also return a `MatchingInfo`.

    Returns:
      Group name -> int32 permutation: ``permute(spec, perm, b)`` is ``b`` aligned to
      ``a``. With ``return_info``, ``(perm, info)``.

    Raises:
      ValueError: ``a`` and ``b`` differ in structure or shapes, no floating leaf of
        them is one the spec moves, a mask leaf has another shape, or ``max_iter < 1``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> apply = lambda v, x: jnp.maximum(x @ v["w1"], 0) @ v["w2"]
      >>> v = {"w1": jax.random.normal(jax.random.key(0), (3, 8)),
      ...      "w2": jax.random.normal(jax.random.key(1), (8, 2))}
      >>> spec = rebasin.permutation_spec(apply, v, jnp.ones((1, 3)))
      >>> p = rebasin.random_permutation(jax.random.key(2), spec)
      >>> q = rebasin.weight_matching(spec, v, rebasin.permute(spec, p, v))
      >>> bool((rebasin.permute(spec, q, rebasin.permute(spec, p, v))["w1"] == v["w1"]).all())
      True
    """
    if not isinstance(spec, PermutationSpec):
        raise TypeError(
            f"weight_matching: spec must be a PermutationSpec (from permutation_spec); "
            f"got {type(spec).__name__}."
        )
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"weight_matching: max_iter must be an int >= 1; got {max_iter!r}.")
    leaves = _matched_leaves(spec, a, b, masks)
    slots = _slots(spec, leaves)
    perm = {name: np.arange(g.size) for name, g in spec.groups.items()}
    names = [n for n in spec.groups if slots[n]]
    rng = np.random.default_rng(_seed(key))

    sweeps, progress, stale = 0, True, 0
    best, best_perm = _objective(spec, leaves, perm), dict(perm)
    while progress and sweeps < max_iter and stale < _PATIENCE:
        sweeps += 1
        progress = False
        for k in rng.permutation(len(names)):
            name = names[k]
            n = spec.groups[name].size
            cost = np.zeros((n, n))
            for slot in slots[name]:
                wb = slot.b
                for other, axis in slot.others:
                    wb = np.take(wb, perm[other], axis=axis)
                cost += slot.a @ wb.reshape(n, -1).T
            _, cols = linear_sum_assignment(cost, maximize=True)
            rows = np.arange(n)
            old, new = cost[rows, perm[name]].sum(), cost[rows, cols].sum()
            progress = progress or new > old + 1e-12
            perm[name] = cols
        # A permutation moving two axes of one leaf (P W P^T in a residual stream) makes
        # the objective quadratic in it: an assignment that improves its linearisation
        # need not improve the objective, and the sweeps can wander without settling.
        # Keep the best permutation seen; stop after _PATIENCE sweeps that do not beat it.
        # (Without such a group the objective rises with every improving sweep, and this
        # is Git Re-Basin's algorithm exactly.)
        now = _objective(spec, leaves, perm)
        if now > best + 1e-12:
            best, best_perm, stale = now, dict(perm), 0
        else:
            stale += 1
    perm = best_perm
    out = {name: jnp.asarray(p, jnp.int32) for name, p in perm.items()}
    if not return_info:
        return out
    return out, MatchingInfo(sweeps, best)


def _seed(key: jax.Array | None) -> np.ndarray:
    if key is None:
        key = jax.random.key(0)
    if jnp.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.key_data(key)
    return np.asarray(key, np.uint32).ravel()


def _matched_leaves(
    spec: PermutationSpec, a: PyTree, b: PyTree, masks: tuple[PyTree, PyTree] | None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Spec path -> (w_a, w_b) in float64, masked, for the floating leaves both hold."""
    paths_a, leaves_a, _ = _tree.leaves_with_paths(a)
    paths_b, leaves_b, _ = _tree.leaves_with_paths(b)
    if paths_a != paths_b:
        diff = sorted(set(paths_a) ^ set(paths_b))
        raise ValueError(
            f"weight_matching: a and b differ in structure (e.g. {diff[:3] or paths_a[:3]}); "
            f"pass two trees of the same model, both full or both params only."
        )
    mask_of: list[dict[str, Any]] = [{}, {}]
    if masks is not None:
        if not isinstance(masks, tuple | list) or len(masks) != 2:
            raise TypeError("weight_matching: masks must be a pair (mask_a, mask_b).")
        for k, m in enumerate(masks):
            mask_of[k] = dict(zip(*_tree.leaves_with_paths(m)[:2]))

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for path, x, y in zip(paths_a, leaves_a, leaves_b):
        if not jnp.issubdtype(getattr(x, "dtype", np.int32), jnp.floating):
            continue
        key = spec_leaf(path, x, spec)
        if key is None:
            continue
        if np.shape(y) != np.shape(x):
            raise ValueError(
                f"weight_matching: the leaf at {path!r} has shape {np.shape(x)} in a and "
                f"{np.shape(y)} in b; pass two trees of the same model."
            )
        pair = []
        for k, w in enumerate((x, y)):
            w = np.asarray(w, np.float64)
            m = mask_of[k].get(path)
            if m is not None and not _tree.is_stand_in(m):
                if np.shape(m) != w.shape:
                    raise ValueError(
                        f"weight_matching: mask_{'ab'[k]} at {path!r} has shape "
                        f"{np.shape(m)}; the weight has {w.shape}. Pass masks of these trees."
                    )
                w = w * np.asarray(m, np.float64)
            pair.append(w)
        out[key] = (pair[0], pair[1])
    if not out:
        raise ValueError(
            f"weight_matching: no floating leaf of a and b is one the spec moves (spec "
            f"leaves such as {sorted(spec.shapes)[:3]}; tree leaves such as {paths_a[:3]}). "
            f"Pass the variables the spec was traced from, or a tree holding some of them."
        )
    return out


def _split(shape: tuple[int, ...], refs: list[AxisRef]) -> tuple[tuple[int, ...], dict[int, int]]:
    """The leaf's shape with each ref's axis split into (outer, n, inner); ref axis -> its
    unit axis in that shape."""
    new, where = [], {}
    for axis, size in enumerate(shape):
        ref = next((r for r in refs if r.axis == axis), None)
        if ref is None:
            new.append(size)
            continue
        where[axis] = len(new) + 1
        new += [ref.outer, size // (ref.outer * ref.inner), ref.inner]
    return tuple(new), where


def _slots(
    spec: PermutationSpec, leaves: dict[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, list[_Slot]]:
    """Group name -> the prepared axes it moves in the matched leaves."""
    refs_of = {path: spec.moves(path) for path in leaves if spec.moves(path)}
    slots: dict[str, list[_Slot]] = {name: [] for name in spec.groups}
    for path, named in refs_of.items():
        wa, wb = leaves[path]
        shape, where = _split(wa.shape, [r for _, r in named])
        wa, wb = wa.reshape(shape), wb.reshape(shape)
        for name, ref in named:
            d = where[ref.axis]
            n = shape[d]
            # After moving axis d to the front, axes before d shift by one.
            others = tuple(
                (o, where[r.axis] + (where[r.axis] < d)) for o, r in named if r.axis != ref.axis
            )
            a_view = np.ascontiguousarray(np.moveaxis(wa, d, 0).reshape(n, -1))
            b_first = np.ascontiguousarray(np.moveaxis(wb, d, 0))
            slots[name].append(_Slot(a_view, b_first, others))
    return slots


def _objective(
    spec: PermutationSpec,
    leaves: dict[str, tuple[np.ndarray, np.ndarray]],
    perm: dict[str, np.ndarray],
) -> float:
    total = 0.0
    for path, (wa, wb) in leaves.items():
        named = spec.moves(path)
        shape, where = _split(wa.shape, [r for _, r in named])
        wb = wb.reshape(shape)
        for name, ref in named:
            wb = np.take(wb, perm[name], axis=where[ref.axis])
        total += float(np.vdot(wa.reshape(shape), wb))
    return total
