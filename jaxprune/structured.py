"""Structured sparsity: whole hidden units pruned in every layer they touch, and slimming.

The coupled unit groups are the hidden-unit permutations of :mod:`jaxprune.rebasin`:
pruning unit ``i`` of a group removes slice ``i`` of every axis the group moves (a
layer's output column, its bias, the norm's scale, bias and running statistics, the next
layer's input rows, every layer adding into a residual stream). `unit_scores` scores the
units, `unit_mask` keeps exact counts of them and `slim` turns the pruned variables into
smaller dense ones that the same function runs.

Two one-shot methods score units as their papers do: `filter_scores`, the L1 norm of each
unit's own filters (Li, Kadav, Durdanovic, Samet & Graf, 2017, "Pruning filters for
efficient ConvNets"; pruned per layer), and `bn_scale_scores`, the batch-norm scales
``|gamma|`` that `bn_l1`'s penalty drives down during training (Liu, Li, Shen, Huang, Yan
& Zhang, 2017, "Learning efficient convolutional networks through network slimming";
pruned with one global threshold).

``slim``'s output equals the masked model's wherever the function treats units apart or
sums over them (Dense, Conv, BatchNorm in eval mode, residual adds, pooling, flattening).
A normalisation over the units (LayerNorm over channels) averages over the units
present, so the slimmed model is the one that never had the pruned units, not the
masked one.

Example:
  >>> import jax, jax.numpy as jnp, jaxprune
  >>> from jaxprune import rebasin
  >>> def mlp(v, x):
  ...     return jnp.maximum(x @ v["w1"] + v["b1"], 0) @ v["w2"]
  >>> v = {"w1": jax.random.normal(jax.random.key(0), (3, 8)), "b1": jnp.ones(8),
  ...      "w2": jax.random.normal(jax.random.key(1), (8, 2))}
  >>> spec = rebasin.permutation_spec(mlp, v, jnp.ones((1, 3)))
  >>> mask = jaxprune.unit_mask(spec, jaxprune.unit_scores(spec, v), 0.5, tree=v)
  >>> small = jaxprune.slim(spec, v, mask)
  >>> small["w1"].shape, small["b1"].shape, small["w2"].shape
  ((3, 4), (4,), (4, 2))
  >>> x = jnp.ones((5, 3))
  >>> bool(jnp.allclose(mlp(small, x), mlp(jaxprune.apply_mask(v, mask), x)))
  True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxprune import _checks, _counts, filters
from jaxprune._tree import is_stand_in, leaves_with_paths, stand_in
from jaxprune.rebasin._spec import AxisRef, PermutationSpec, spec_leaf, take, unit_view
from jaxprune.select._engine import select
from jaxprune.typing import Distribution, FilterLike, Mask, Override, PyTree

__all__ = [
    "BnL1State",
    "bn_l1",
    "bn_scale_scores",
    "filter_scores",
    "norm_scales",
    "slim",
    "unit_mask",
    "unit_scores",
]

NORMS = ("l1", "l2", "sum")


def _refs_by_path(spec: PermutationSpec) -> dict[str, list[tuple[str, AxisRef]]]:
    """Spec leaf path -> the (group name, AxisRef) pairs that move its axes."""
    by_path = {path: spec.moves(path) for path in spec.shapes if spec.moves(path)}
    for path, refs in by_path.items():
        axes = [ref.axis for _, ref in refs]
        if len(set(axes)) != len(axes):
            raise ValueError(
                f"the spec moves one axis of {path!r} by two groups "
                f"({', '.join(f'{n}: {r}' for n, r in refs)}); structured pruning "
                "needs one group per axis."
            )
    return by_path


def _pooled(
    spec: PermutationSpec,
    tree: PyTree,
    norm: str,
    who: str,
    use: Callable[[str, Any, AxisRef], bool],
    hint: str,
) -> dict[str, jax.Array]:
    """Per group, the norm of the unit slices of the leaves of ``tree`` that ``use`` keeps."""
    _checks.check_choice(norm, NORMS, "norm")
    by_path = _refs_by_path(spec)
    totals: dict[str, jax.Array] = {}
    for path, leaf in zip(*leaves_with_paths(tree)[:2]):
        key = spec_leaf(path, leaf, spec)
        if key is None:
            continue
        for name, ref in by_path[key]:
            if not use(path, leaf, ref):
                continue
            rows = unit_view(jnp.asarray(leaf, jnp.float32), ref)
            part = {"l1": jnp.abs(rows), "l2": jnp.square(rows), "sum": rows}[norm].sum(axis=1)
            totals[name] = totals[name] + part if name in totals else part
    missing = [name for name in spec.groups if name not in totals]
    if missing:
        raise ValueError(
            f"{who}: no leaf of the groups {missing} is in the tree{hint} (their leaves: "
            f"{[str(r) for r in spec.groups[missing[0]].axes][:4]}). Pass the parameters "
            "the spec was traced from, or scores holding those leaves."
        )
    return {name: jnp.sqrt(t) if norm == "l2" else t for name, t in totals.items()}


def unit_scores(spec: PermutationSpec, tree: PyTree, *, norm: str = "l1") -> dict[str, jax.Array]:
    """One score per unit of every group, pooled over every axis of the group in ``tree``.

    Args:
      spec: from :func:`jaxprune.rebasin.permutation_spec`.
      tree: the parameters (a params-only tree is fine; pass the full variables and
        the running statistics count too) or scores shaped like them (0-d stand-ins
        are skipped). Every leaf the group moves that ``tree`` holds contributes: the
        layer's output columns and its bias, the next layer's input rows, ...
      norm: ``"l1"`` (sum of absolute values, the default), ``"l2"`` (square root of
        the sum of squares) or ``"sum"`` (plain sum: for saliency scores).

    Returns:
      Group name -> float32 array of the group's size.

    Raises:
      ValueError: an unknown ``norm``, or a group with no leaf in ``tree``.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> apply = lambda v, x: jnp.maximum(x @ v["w1"], 0) @ v["w2"]
      >>> v = {"w1": jnp.ones((3, 4)), "w2": jnp.arange(8.0).reshape(4, 2)}
      >>> spec = rebasin.permutation_spec(apply, v, jnp.ones((1, 3)))
      >>> unit_scores(spec, v)["w1"].tolist()
      [4.0, 8.0, 12.0, 16.0]
    """
    return _pooled(spec, tree, norm, "unit_scores", lambda *_: True, "")


def filter_scores(
    spec: PermutationSpec,
    params: PyTree,
    *,
    norm: str = "l1",
    which: FilterLike = None,
) -> dict[str, jax.Array]:
    """L1-norm filter scores (Li et al., 2017): each unit's norm over its own filters only.

    A unit's score is the norm of the slices of the kernels whose *output* axis (the
    last one, as Flax lays out Dense ``(in, out)`` and Conv ``(kh, kw, in, out)``
    kernels) the group moves: not the next layer's input rows, biases or norm
    parameters. A residual-stream group sums the filters of every layer writing into it.

    Args:
      spec: from :func:`jaxprune.rebasin.permutation_spec`.
      params: the parameters (or the full variables) the spec was traced from.
      norm: ``"l1"`` (the paper's, the default), ``"l2"`` or ``"sum"``.
      which: the kernels (a filter or path regex, :mod:`jaxprune.filters`); default
        :func:`jaxprune.filters.kernels` (two or more dimensions, not named bias).

    Returns:
      Group name -> float32 array of the group's size; prune per layer with
      ``unit_mask(spec, scores, sparsity, "uniform", tree=params)``.

    Raises:
      ValueError: a group whose units no kernel outputs (naming it).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> f = lambda v, x: jnp.tanh(x @ v["k"] + v["b"]) @ v["out"]
      >>> v = {"k": -jnp.arange(12.0).reshape(3, 4), "b": jnp.ones(4), "out": jnp.ones((4, 2))}
      >>> spec = rebasin.permutation_spec(f, v, jnp.ones((1, 3)))
      >>> filter_scores(spec, v)["k"].tolist()  # |k|'s column sums: not b, not out's rows
      [12.0, 15.0, 18.0, 21.0]
    """
    keep = filters.as_filter(which)

    def output_kernel(path: str, leaf: Any, ref: AxisRef) -> bool:
        last = ref.axis == leaf.ndim - 1 and ref.outer == ref.inner == 1
        return last and bool(keep(path, leaf))

    hint = " as the output axis of a kernel"
    return _pooled(spec, params, norm, "filter_scores", output_kernel, hint)


def norm_scales(path: str, leaf: Any) -> bool:
    """The filter of normalisation scales: one-dimensional leaves named ``scale``.

    Example:
      >>> import numpy as np
      >>> norm_scales("norms/0/scale", np.ones(8)), norm_scales("conv/kernel", np.ones((3, 8)))
      (True, False)
    """
    return getattr(leaf, "ndim", 0) == 1 and path.rsplit("/", 1)[-1] == "scale"


def bn_scale_scores(
    spec: PermutationSpec, params: PyTree, *, which: FilterLike = norm_scales
) -> dict[str, jax.Array]:
    """Network slimming's scores (Liu et al., 2017): each unit's batch-norm scale ``|gamma|``.

    A group with several scales (a residual stream normalised after each layer writing
    into it) takes their mean. A group with no scale (a layer with no normalisation
    after it) is an error, not skipped: slimming has nothing to rank it by. Prune with
    one threshold over all groups, as the paper:
    ``unit_mask(spec, scores, sparsity, "global", tree=params)``.

    Args:
      spec: from :func:`jaxprune.rebasin.permutation_spec`.
      params: the parameters (or the full variables) the spec was traced from.
      which: the scale leaves (a filter or path regex); default :func:`norm_scales`.

    Returns:
      Group name -> float32 array of the group's size.

    Raises:
      ValueError: a group that no scale leaf moves (naming it and its leaves).

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> def f(v, x):
      ...     return jnp.maximum((x @ v["w1"]) * v["bn"]["scale"], 0) @ v["w2"]
      >>> v = {"w1": jnp.ones((3, 4)), "bn": {"scale": jnp.array([0.5, -2.0, 1.0, 0.1])},
      ...      "w2": jnp.ones((4, 2))}
      >>> spec = rebasin.permutation_spec(f, v, jnp.ones((1, 3)))
      >>> bn_scale_scores(spec, v)["w1"].tolist()
      [0.5, 2.0, 1.0, 0.10000000149011612]
    """
    keep = filters.as_filter(which)
    counts: dict[str, int] = {}

    def scale(path: str, leaf: Any, ref: AxisRef) -> bool:
        del ref
        return bool(keep(path, leaf))

    hint = " as a normalisation scale (slimming needs one after every pruned layer)"
    sums = _pooled(spec, params, "l1", "bn_scale_scores", scale, hint)
    for path, leaf in zip(*leaves_with_paths(params)[:2]):
        key = spec_leaf(path, leaf, spec)
        if key is not None and keep(path, leaf):
            for name, _ in spec.moves(key):
                counts[name] = counts.get(name, 0) + 1
    return {name: s / counts[name] for name, s in sums.items()}


class BnL1State(NamedTuple):
    """bn_l1 holds no state."""


def bn_l1(penalty: float, *, which: FilterLike = norm_scales) -> optax.GradientTransformation:
    """Network slimming's sparsity penalty: adds ``penalty * sign(gamma)`` to the scale gradients.

    The subgradient of ``penalty * sum |gamma|`` over the normalisation scales (Liu et
    al., 2017: 1e-4 for VGG, 1e-5 for ResNet), every other gradient unchanged. Chain it
    before the optimizer: ``optax.chain(jaxprune.bn_l1(1e-4), optax.sgd(0.1, 0.9))``.

    Args:
      penalty: the L1 coefficient (non-negative).
      which: the scale leaves (a filter or path regex); default :func:`norm_scales`.

    Returns:
      An optax ``GradientTransformation`` with an empty state; its update needs ``params``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"bn": {"scale": jnp.array([0.5, -2.0])}, "w": jnp.ones((2, 2))}
      >>> tx = bn_l1(0.1)
      >>> grads = {"bn": {"scale": jnp.zeros(2)}, "w": jnp.zeros((2, 2))}
      >>> out, _ = tx.update(grads, tx.init(params), params)
      >>> out["bn"]["scale"].tolist(), out["w"].tolist()
      ([0.10000000149011612, -0.10000000149011612], [[0.0, 0.0], [0.0, 0.0]])
    """
    if not penalty >= 0:
        raise ValueError(f"bn_l1: penalty={penalty!r}; give a non-negative number, e.g. 1e-4.")
    keep = filters.as_filter(which)

    def init_fn(params: PyTree) -> BnL1State:
        del params
        return BnL1State()

    def update_fn(
        updates: PyTree, state: BnL1State, params: PyTree | None = None
    ) -> tuple[PyTree, BnL1State]:
        if params is None:
            raise ValueError(
                "bn_l1: the update needs the parameters: tx.update(grads, state, params)."
            )
        paths, grads, treedef = leaves_with_paths(updates)
        values = leaves_with_paths(params)[1]
        out = [
            g + penalty * jnp.sign(p).astype(g.dtype) if keep(path, p) else g
            for path, g, p in zip(paths, grads, values)
        ]
        return treedef.unflatten(out), state

    return optax.GradientTransformation(init_fn, update_fn)


def _check_scores(spec: PermutationSpec, scores: Mapping[str, Any]) -> list[jax.Array]:
    missing = [n for n in spec.groups if n not in scores]
    extra = [n for n in scores if n not in spec.groups]
    if missing or extra:
        raise ValueError(
            f"unit_mask: the unit scores do not match the spec: missing {missing}, unknown "
            f"{extra}. Build them with jaxprune.unit_scores(spec, params)."
        )
    out = []
    for name, g in spec.groups.items():
        s = jnp.asarray(scores[name])
        if s.shape != (g.size,):
            raise ValueError(
                f"unit_mask: the scores of group {name!r} have shape {s.shape}; the group "
                f"has {g.size} units, so expected ({g.size},)."
            )
        out.append(s)
    return out


def _spread(keep: jax.Array, ref: AxisRef, shape: tuple[int, ...]) -> jax.Array:
    """A group's keep vector laid along ``ref``'s axis of a leaf of ``shape``."""
    line = jnp.broadcast_to(keep[None, :, None], (ref.outer, keep.shape[0], ref.inner))
    view = [1] * len(shape)
    view[ref.axis] = shape[ref.axis]
    return jnp.broadcast_to(line.reshape(view), shape)


def _leaf_masks(
    spec: PermutationSpec, keep: Mapping[str, jax.Array], tree: PyTree
) -> tuple[list[str], list[Any], list[Any], Any]:
    """Paths, leaves, the unit mask of every leaf (stand-ins off the spec) and the treedef."""
    by_path = _refs_by_path(spec)
    paths, leaves, treedef = leaves_with_paths(tree)
    masks = []
    for path, leaf in zip(paths, leaves):
        key = spec_leaf(path, leaf, spec)
        if key is None:
            masks.append(stand_in())
            continue
        shape = tuple(leaf.shape)
        m = jnp.ones(shape, jnp.bool_)
        for name, ref in by_path[key]:
            m = m & _spread(keep[name], ref, shape)
        masks.append(m)
    return paths, leaves, masks, treedef


def unit_mask(
    spec: PermutationSpec,
    unit_scores: Mapping[str, Any],
    sparsity: Any,
    distribution: Distribution = "uniform",
    *,
    tree: PyTree,
    overrides: Mapping[str, Override] | None = None,
    method: str = "auto",
) -> Mask:
    """Keeps the highest-scoring units of every group, removed in every leaf of their group.

    Args:
      spec: from :func:`jaxprune.rebasin.permutation_spec`.
      unit_scores: group name -> scores of its units (:func:`unit_scores`).
      sparsity: the fraction of units to prune, in [0, 1).
      distribution: ``"uniform"`` (exactly ``round((1 - s) * size)`` units kept per
        group), ``"global"`` (one ranking over the units of all groups, exactly
        ``round((1 - s) * total)`` kept) or a mapping from group-name regex to sparsity.
        Ties go to the earlier group, then the earlier unit.
      tree: the parameters (or the full variables) the mask is for.
      overrides: group-name regex -> sparsity or ``f(sparsity)``, as in
        :func:`jaxprune.topk_mask`.
      method: the selection method, as in :func:`jaxprune.topk_mask`.

    Returns:
      A mask shaped like ``tree``: every leaf the spec moves (kernels, biases, norm
      parameters, running statistics) has a real mask, False across every removed unit;
      the others have the 0-d stand-in.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> apply = lambda v, x: jnp.maximum(x @ v["w1"] + v["b1"], 0) @ v["w2"]
      >>> v = {"w1": jax.random.normal(jax.random.key(0), (3, 4)), "b1": jnp.zeros(4),
      ...      "w2": jnp.ones((4, 2))}
      >>> spec = rebasin.permutation_spec(apply, v, jnp.ones((1, 3)))
      >>> m = unit_mask(spec, unit_scores(spec, v), 0.5, tree=v)
      >>> m["b1"].sum().item(), m["w2"].all(axis=1).tolist() == m["b1"].tolist()
      (2, True)
    """
    if isinstance(distribution, str) and distribution in ("er", "erk"):
        raise ValueError(
            f"unit_mask: distribution {distribution!r} sizes layers by their kernels' "
            "shapes, which a unit group does not have. Use 'uniform', 'global', or a "
            "mapping from group-name regex to sparsity."
        )
    scores = _check_scores(spec, unit_scores)
    names = list(spec.groups)
    sizes = [g.size for g in spec.groups.values()]
    groups = _counts.plan(names, [(n,) for n in sizes], sizes, sparsity, distribution, overrides)
    kept = select(scores, [None] * len(scores), groups, method)
    _, _, masks, treedef = _leaf_masks(spec, dict(zip(names, kept)), tree)
    return treedef.unflatten(masks)


def _kept_units(
    spec: PermutationSpec, variables: PyTree, mask: Mask
) -> tuple[dict[str, np.ndarray], list[str], list[Any], Any]:
    """Each group's kept units, read from ``mask`` and checked to be whole units."""
    by_path = _refs_by_path(spec)
    paths, leaves, treedef = leaves_with_paths(variables)
    m_paths, m_leaves, _ = leaves_with_paths(mask)
    unknown = sorted(set(m_paths) - set(paths))
    if unknown:
        raise ValueError(
            f"slim: the mask has leaves the variables do not have: {unknown[:4]}. Build the "
            "mask from the same tree (or a part of it, e.g. the parameters)."
        )
    # A stand-in keeps its leaf whole (every unit kept there); a leaf the mask does not
    # hold tells nothing.
    given = {p: None if is_stand_in(m) else np.asarray(m) for p, m in zip(m_paths, m_leaves)}
    keys = {p: spec_leaf(p, v, spec) for p, v in zip(paths, leaves)}
    keep: dict[str, np.ndarray] = {}
    seen: dict[str, str] = {}
    for path, v in zip(paths, leaves):
        if path not in given or (given[path] is None and keys[path] is None):
            continue
        m = np.ones(tuple(v.shape), bool) if given[path] is None else given[path]
        if m.shape != tuple(v.shape):
            raise ValueError(
                f"slim: the mask at {path!r} has shape {m.shape}, the variable {tuple(v.shape)}."
            )
        if keys[path] is None:
            if not m.all():
                raise ValueError(
                    f"slim: the mask prunes entries of {path!r} (shape {m.shape}), which no "
                    "unit group of the spec moves; slim removes whole units only. Build "
                    "the mask with jaxprune.unit_mask."
                )
            continue
        for name, ref in by_path[keys[path]]:
            alive = np.asarray(unit_view(jnp.asarray(m), ref).any(axis=1))
            if name not in keep:
                keep[name], seen[name] = alive, path
            elif not np.array_equal(keep[name], alive):
                unit = int(np.flatnonzero(keep[name] != alive)[0])
                raise ValueError(
                    f"slim: group {name!r} is not pruned the same in every leaf: unit {unit} "
                    f"is {'kept' if keep[name][unit] else 'pruned'} in {seen[name]!r} but "
                    f"{'kept' if alive[unit] else 'pruned'} in {path!r}. A unit mask removes "
                    "a unit in every leaf of its group (jaxprune.unit_mask)."
                )
    keep = {name: keep.get(name, np.ones(g.size, bool)) for name, g in spec.groups.items()}
    for path, v in zip(paths, leaves):
        if given.get(path) is None or keys[path] is None:
            continue
        m, shape = given[path], tuple(v.shape)
        want = np.ones(shape, bool)
        for name, ref in by_path[keys[path]]:
            want &= np.asarray(_spread(jnp.asarray(keep[name]), ref, shape))
        if np.array_equal(m, want):
            continue
        for name, ref in by_path[keys[path]]:
            bad = np.asarray(unit_view(jnp.asarray(m != want), ref).any(axis=1)) & keep[name]
            if bad.any():
                raise ValueError(
                    f"slim: the mask at {path!r} (shape {shape}) prunes part of unit "
                    f"{int(np.flatnonzero(bad)[0])} of group {name!r}; slim removes whole "
                    "units, the same ones in every leaf of their group. Build the mask "
                    "with jaxprune.unit_mask (or topk_mask's granularity='unit' is per "
                    "layer, not coupled)."
                )
    kept = {name: np.flatnonzero(k) for name, k in keep.items()}
    return kept, paths, leaves, treedef


def slim(
    spec: PermutationSpec, variables: PyTree, mask: Mask, *, return_kept: bool = False
) -> PyTree | tuple[PyTree, dict[str, np.ndarray]]:
    """Smaller dense variables holding only the kept units of every group.

    Every axis the spec moves keeps the kept units' slices (in every outer/inner slot,
    e.g. the rows of a Dense kernel after a flatten of conv channels), so the function
    the spec was traced from runs on the result (for Flax NNX, merge it with the same
    graphdef: its layers compute from the kernels' shapes). Runs outside ``jit``: the
    shapes follow the mask.

    Args:
      spec: from :func:`jaxprune.rebasin.permutation_spec`.
      variables: the variables the spec was traced from (or a tree with the same
        spec leaves, e.g. the parameters).
      mask: a unit mask (:func:`unit_mask`) over ``variables`` or a part of it (its
        paths a subset, e.g. the parameters only: the leaves it does not hold follow
        their groups). A 0-d stand-in keeps its leaf whole, so every unit of its groups.
      return_kept: also return group name -> the sorted indices of its kept units.

    Returns:
      The slimmed variables (the structure of ``variables``), and with
      ``return_kept=True`` the kept indices too.

    Raises:
      ValueError: the mask prunes part of a unit (naming the group, leaf and unit),
        prunes a unit in one leaf of its group and not in another (a stand-in keeps
        them all), or prunes a leaf no group moves.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> apply = lambda v, x: jnp.maximum(x @ v["w1"], 0) @ v["w2"]
      >>> v = {"w1": jax.random.normal(jax.random.key(0), (3, 4)), "w2": jnp.ones((4, 2))}
      >>> spec = rebasin.permutation_spec(apply, v, jnp.ones((1, 3)))
      >>> mask = unit_mask(spec, {"w1": jnp.arange(4.0)}, 0.5, tree=v)
      >>> small, kept = slim(spec, v, mask, return_kept=True)
      >>> small["w2"].shape, kept["w1"].tolist()
      ((2, 2), [2, 3])
    """
    kept, paths, leaves, treedef = _kept_units(spec, variables, mask)
    by_path = _refs_by_path(spec)
    out = []
    for path, leaf in zip(paths, leaves):
        key = spec_leaf(path, leaf, spec)
        if key is not None:
            for name, ref in by_path[key]:
                leaf = take(leaf, ref, kept[name])
        out.append(leaf)
    slimmed = treedef.unflatten(out)
    return (slimmed, kept) if return_kept else slimmed
