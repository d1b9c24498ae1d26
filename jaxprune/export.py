"""Sparse export: masked kernels as sparse arrays, N:M compressed kernels, and their cost.

A trained mask makes most weights exactly zero; these functions give the kept
weights a layout that skips the zeros, and count what that saves:

- :func:`to_bcoo` turns every masked leaf into a ``jax.experimental.sparse.BCOO``
  and :func:`sparse_apply` runs an unchanged ``apply_fn(params, x)`` on such a tree:
  the matrix products with a sparse kernel become ``bcoo_dot_general``. Dense
  (``x @ w``, ``dot_general``) layers work; convolutions have no sparse product in
  JAX, so give :func:`to_bcoo` only the Dense kernels (``which=``) and conv kernels
  stay dense (masked).
- :func:`to_nm` stores an N:M-masked ``(in, out)`` kernel as, per group of ``m``
  inputs, the ``n`` kept values and their positions; :func:`nm_matmul` multiplies by it.
- :func:`cost_report` counts per-layer multiply-accumulates and parameter bytes,
  dense, masked and (given ``jaxprune.slim``'s smaller variables) slimmed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import sparse
from jax.extend import core as jcore

from jaxprune import _checks, filters, masks
from jaxprune._tree import is_stand_in, leaves_with_paths, matched_leaves
from jaxprune.typing import Mask, PyTree

__all__ = ["NMKernel", "cost_report", "nm_matmul", "sparse_apply", "to_bcoo", "to_nm"]


def to_bcoo(params: PyTree, mask: Mask, *, which: filters.FilterLike = None) -> PyTree:
    """The masked parameters with the chosen masked leaves as ``BCOO`` sparse arrays.

    Args:
      params: the parameters (any pytree: dicts, NNX pure state, Linen params).
      mask: a mask of ``params``; its 0-d stand-ins mark leaves left as they are.
      which: filter ``(path, leaf) -> bool`` choosing the masked leaves to make sparse
        (default: all of them); the others stay dense with pruned entries zeroed.
        Conv kernels run only dense: pass e.g. ``lambda path, leaf: leaf.ndim == 2``.

    Returns:
      A tree shaped like ``params`` whose chosen leaves are ``BCOO`` holding exactly
      the kept entries; run it with :func:`sparse_apply`.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"w": jnp.arange(4.0).reshape(2, 2), "b": jnp.ones(2)}
      >>> sp = to_bcoo(params, {"w": jnp.eye(2, dtype=bool), "b": jnp.array(True)})
      >>> sp["w"].nse, sp["w"].todense().tolist()
      (2, [[0.0, 0.0], [0.0, 3.0]])
    """
    masked = masks.apply_mask(params, mask)
    chosen = filters.as_filter(which) if which is not None else (lambda path, leaf: True)
    paths, p_leaves, m_leaves = matched_leaves(masked, mask, "params", "mask")
    out = []
    for path, p, m in zip(paths, p_leaves, m_leaves):
        if is_stand_in(m) or not chosen(path, p):
            out.append(p)
            continue
        kept = int(np.count_nonzero(np.asarray(jax.device_get(m))))
        out.append(sparse.BCOO.fromdense(jnp.where(m, p, 0), nse=kept))
    return jax.tree_util.tree_structure(masked).unflatten(out)


def sparse_apply(apply_fn: Callable[..., Any]) -> Callable[..., Any]:
    """Wraps ``apply_fn(params, *args)`` to run on a :func:`to_bcoo` tree.

    ``apply_fn`` is traced with dense stand-ins and its program evaluated with the
    ``BCOO`` leaves in place: a ``dot_general`` with a sparse operand becomes
    ``bcoo_dot_general`` (transposes and dtype casts of a sparse kernel stay sparse);
    everything else runs as traced. Works under ``jax.jit``. Unlike
    ``jax.experimental.sparse.sparsify``, it runs Flax NNX models (their ``relu`` is a
    ``custom_jvp``, which ``sparsify`` fails on).

    Raises:
      NotImplementedError: an operation other than those on a sparse leaf (a
        convolution, say); the message names it and says to keep that leaf dense.

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"w": jnp.arange(4.0).reshape(2, 2)}
      >>> sp = to_bcoo(params, {"w": jnp.eye(2, dtype=bool)})
      >>> sparse_apply(lambda p, x: jax.nn.relu(x @ p["w"]))(sp, jnp.ones((1, 2))).tolist()
      [[0.0, 3.0]]
    """

    def run(params: PyTree, *args: Any) -> Any:
        is_bcoo = lambda x: isinstance(x, sparse.BCOO)
        leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=is_bcoo)
        stand_ins = [jax.ShapeDtypeStruct(l.shape, l.dtype) if is_bcoo(l) else l for l in leaves]
        arg_leaves, arg_def = jax.tree_util.tree_flatten(args)
        closed, out_shape = jax.make_jaxpr(
            lambda p, a: apply_fn(treedef.unflatten(p), *arg_def.unflatten(a)),
            return_shape=True,
        )(stand_ins, arg_leaves)
        outs = _eval_sparse(closed.jaxpr, closed.consts, [*leaves, *arg_leaves])
        return jax.tree_util.tree_structure(out_shape).unflatten(outs)

    return run


def _eval_sparse(jaxpr: Any, consts: list[Any], inputs: list[Any]) -> list[Any]:
    env: dict[Any, Any] = {}
    read = lambda v: v.val if isinstance(v, jcore.Literal) else env[v]
    env.update(zip(jaxpr.constvars, consts))
    env.update(zip(jaxpr.invars, inputs))
    for eqn in jaxpr.eqns:
        ins = [read(v) for v in eqn.invars]
        if any(isinstance(x, sparse.BCOO) for x in ins):
            outs = [_sparse_rule(eqn, ins)]
        else:
            params = eqn.primitive.get_bind_params(eqn.params)
            subfuns, params = params if isinstance(params, tuple) else ((), params)  # jax < 0.7
            outs = eqn.primitive.bind(*subfuns, *ins, **params)
            outs = outs if eqn.primitive.multiple_results else [outs]
        env.update(zip(eqn.outvars, outs))
    return [read(v) for v in jaxpr.outvars]


def _sparse_rule(eqn: Any, ins: list[Any]) -> Any:
    name, p = eqn.primitive.name, eqn.params
    if name == "dot_general":
        return sparse.bcoo_dot_general(
            *ins,
            dimension_numbers=p["dimension_numbers"],
            precision=p.get("precision"),
            preferred_element_type=p.get("preferred_element_type"),
        )
    if name == "transpose":
        return sparse.bcoo_transpose(ins[0], permutation=p["permutation"])
    if name == "convert_element_type":
        return sparse.BCOO((ins[0].data.astype(p["new_dtype"]), ins[0].indices), shape=ins[0].shape)
    raise NotImplementedError(
        f"sparse_apply: a sparse (BCOO) leaf reaches '{name}', which has no sparse rule "
        "(only matrix products, transposes and dtype casts do). Keep that leaf dense: "
        "to_bcoo(params, mask, which=lambda path, leaf: leaf.ndim == 2) converts only "
        "Dense kernels."
    )


@dataclasses.dataclass(frozen=True)
class NMKernel:
    """An N:M-sparse ``(in, out)`` kernel: per group of ``m`` inputs, ``n`` values and positions.

    Attributes:
      values: ``(in // m, n, out)`` the kept weights of each group and output.
      indices: ``(in // m, n, out)`` uint8 positions (``0 .. m-1``) of those weights
        in their group.
      n: kept entries per group.
      m: group length.
    """

    values: jax.Array
    indices: jax.Array
    n: int
    m: int

    @property
    def shape(self) -> tuple[int, int]:
        """The dense kernel's shape ``(in, out)``."""
        groups, _, out = self.values.shape
        return (groups * self.m, out)


jax.tree_util.register_dataclass(
    NMKernel, data_fields=["values", "indices"], meta_fields=["n", "m"]
)


def to_nm(kernel: jax.Array, mask: jax.Array, n: int, m: int) -> NMKernel:
    """Compresses an N:M-masked ``(in, out)`` kernel (groups of ``m`` along ``in``).

    Args:
      kernel: the ``(in, out)`` weights (a Flax Dense kernel).
      mask: boolean ``(in, out)`` with at most ``n`` kept in every group of ``m``
        consecutive inputs (``jaxprune.nm_mask(..., n, m)``, whose default axis this is).
      n: kept entries per group.
      m: group length; ``in`` must be a multiple of it.

    Returns:
      An :class:`NMKernel` (a group with fewer than ``n`` kept is padded with zeros).

    Raises:
      ValueError: a kernel that is not 2-D, ``in`` not a multiple of ``m``, or a group
        with more than ``n`` kept (the first such group is named).

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.arange(8.0).reshape(4, 2)
      >>> packed = to_nm(w, jnp.array([[1, 0], [0, 1], [1, 1], [0, 0]], bool), 2, 4)
      >>> packed.values[0].tolist(), packed.indices[0].tolist()
      ([[0.0, 3.0], [4.0, 5.0]], [[0, 1], [2, 2]])
    """
    n, m = _checks.check_nm(n, m)
    kernel, mask = jnp.asarray(kernel), jnp.asarray(mask, jnp.bool_)
    if kernel.ndim != 2 or mask.shape != kernel.shape or kernel.shape[0] % m:
        raise ValueError(
            f"to_nm: needs a 2-D (in, out) kernel with in a multiple of m={m} and a mask of "
            f"its shape; got kernel {tuple(kernel.shape)}, mask {tuple(mask.shape)}. For a "
            "conv kernel, reshape it to (kh * kw * in, out) first."
        )
    groups = mask.reshape(-1, m, mask.shape[1])
    counts = np.asarray(groups.sum(axis=1))
    if (counts > n).any():
        g, o = np.argwhere(counts > n)[0]
        raise ValueError(
            f"to_nm: the mask keeps {counts[g, o]} of the {m} inputs {g * m}..{g * m + m - 1} "
            f"of output {o}; an {n}:{m} mask keeps at most {n}. Build it with "
            f"jaxprune.nm_mask(scores, {n}, {m})."
        )
    # Kept positions first (stable: ascending), then pruned ones as zero padding.
    idx = jnp.argsort(~groups, axis=1, stable=True)[:, :n, :]
    w = jnp.where(mask, kernel, 0).reshape(groups.shape)
    return NMKernel(jnp.take_along_axis(w, idx, axis=1), idx.astype(jnp.uint8), n, m)


def nm_matmul(x: jax.Array, packed: NMKernel) -> jax.Array:
    """``x @ (kernel * mask)`` from an :class:`NMKernel`: ``n / m`` of the dense products.

    Args:
      x: ``(..., in)`` inputs.
      packed: :func:`to_nm`'s output.

    Returns:
      ``(..., out)``, equal to the dense masked product up to summation order.

    Example:
      >>> import jax.numpy as jnp
      >>> w = jnp.arange(8.0).reshape(4, 2)
      >>> mask = jnp.array([[1, 0], [0, 1], [1, 1], [0, 0]], bool)
      >>> nm_matmul(jnp.ones((1, 4)), to_nm(w, mask, 2, 4)).tolist()
      [[4.0, 8.0]]
    """
    groups = packed.values.shape[0]
    if x.shape[-1] != groups * packed.m:
        raise ValueError(
            f"nm_matmul: x has {x.shape[-1]} features; the kernel takes {groups * packed.m}."
        )
    where = packed.indices.astype(jnp.int32) + packed.m * jnp.arange(groups)[:, None, None]
    picked = jnp.take(x, where, axis=-1)  # (..., groups, n, out)
    return jnp.einsum("...gko,gko->...o", picked, packed.values.astype(x.dtype))


def cost_report(
    apply_fn: Callable[[PyTree, Any], Any],
    params: PyTree,
    mask: Mask,
    x: Any,
    *,
    slimmed: PyTree | None = None,
) -> masks.SparsityReport:
    """:func:`jaxprune.sparsity_report` plus multiply-accumulates and bytes per masked layer.

    Traces ``apply_fn(params, x)`` (nothing runs) and counts, for every masked leaf,
    the MACs of the matrix products and convolutions it is an operand of (a
    convolution: output elements x input features per group x kernel window, so
    grouped and depthwise convolutions count only their groups' inputs): dense, and
    masked (times the leaf's kept fraction); and its bytes: dense and of the kept
    values alone (the packed mask, ``ceil(size / 8)`` bytes, comes on top). With
    ``slimmed``, it traces ``apply_fn(slimmed, x)`` too and adds the slimmed model's
    own MACs and bytes of every leaf, on the row of the dense leaf at the same path.
    Counts are for the batch ``x`` as given: pass one example for per-example counts.
    Layers whose leaves the mask leaves out (0-d stand-ins) have no row.

    Args:
      apply_fn: ``apply_fn(params, x)``, the network (for a Flax NNX model,
        ``lambda v, x: nnx.merge(graphdef, v)(x)``).
      params: its parameters (or all its variables).
      mask: a mask of ``params``.
      x: an input (arrays or ``jax.ShapeDtypeStruct``).
      slimmed: the smaller variables of the same structure that ``apply_fn`` also
        runs, e.g. ``jaxprune.slim(spec, params, mask)`` of a unit mask.

    Returns:
      A :class:`jaxprune.SparsityReport` with ``macs``, ``kept_macs``, ``nbytes`` and
      ``kept_nbytes`` (and with ``slimmed``, ``slimmed_macs`` and ``slimmed_nbytes``)
      filled in per leaf and in total.

    Raises:
      ValueError: ``slimmed`` lacks a leaf of the mask (naming its path).

    Example:
      >>> import jax.numpy as jnp
      >>> params = {"w": jnp.ones((4, 3))}
      >>> mask = {"w": jnp.arange(12).reshape(4, 3) < 6}
      >>> r = cost_report(lambda p, x: x @ p["w"], params, mask, jnp.ones((1, 4)))
      >>> r.macs, r.kept_macs, r.nbytes, r.kept_nbytes
      (12, 6, 48, 24)
      >>> small = {"w": jnp.ones((2, 3))}  # the two kept input rows
      >>> r = cost_report(lambda p, x: x[:, : p["w"].shape[0]] @ p["w"], params, mask,
      ...                 jnp.ones((1, 4)), slimmed=small)
      >>> r.slimmed_macs, r.slimmed_nbytes
      (6, 24)
    """
    report = masks.sparsity_report(mask)
    if slimmed is not None:
        have = set(leaves_with_paths(slimmed)[0])
        missing = [l.path for l in report.leaves if l.path not in have]
        if missing:
            raise ValueError(
                f"cost_report: the slimmed variables have no leaf {missing[0]!r}, which the "
                "mask holds. Pass slimmed=jaxprune.slim(spec, params, mask): the structure "
                "of params with fewer units."
            )
    costs = _leaf_costs(apply_fn, params, x)
    slim_costs = None if slimmed is None else _leaf_costs(apply_fn, slimmed, x)
    rows = []
    for l in report.leaves:
        macs, nbytes = costs[l.path]
        extra = {}
        if slim_costs is not None:
            extra = dict(zip(("slimmed_macs", "slimmed_nbytes"), slim_costs[l.path]))
        rows.append(
            dataclasses.replace(
                l,
                macs=macs,
                kept_macs=macs * l.kept // l.size if l.size else 0,
                nbytes=nbytes,
                kept_nbytes=l.kept * nbytes // l.size if l.size else 0,
                **extra,
            )
        )
    return masks.SparsityReport(tuple(rows))


def _leaf_costs(
    apply_fn: Callable[[PyTree, Any], Any], params: PyTree, x: Any
) -> dict[str, tuple[int, int]]:
    """Leaf path -> (MACs of the products it is an operand of in ``apply_fn(params, x)``, bytes)."""
    paths, leaves, _ = leaves_with_paths(params)
    closed = jax.make_jaxpr(apply_fn)(params, x)
    macs = dict.fromkeys(paths, 0)
    _count_macs(closed.jaxpr, dict(zip(closed.jaxpr.invars, paths)), macs, 1)
    return {
        p: (macs[p], int(np.prod(l.shape)) * np.dtype(l.dtype).itemsize)
        for p, l in zip(paths, leaves)
    }


# Operations through which a parameter is still "that parameter" for counting.
_PASS = frozenset({"convert_element_type", "transpose", "reshape", "copy", "copy_p", "squeeze"})


def _count_macs(jaxpr: Any, owner: dict[Any, str], macs: dict[str, int], times: int) -> None:
    """Adds to ``macs[path]`` the MACs of the products whose operand ``owner`` names."""
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        owners = [owner.get(v) if not isinstance(v, jcore.Literal) else None for v in eqn.invars]
        out = eqn.outvars[0].aval
        if name == "dot_general" and any(owners):
            (lc, _), _ = eqn.params["dimension_numbers"]
            inner = int(np.prod([eqn.invars[0].aval.shape[d] for d in lc]))
            for o in set(filter(None, owners)):
                macs[o] += times * int(np.prod(out.shape)) * inner
        elif name == "conv_general_dilated" and owners[1]:
            rhs = eqn.invars[1].aval.shape
            out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
            per_output = int(np.prod(rhs)) // out_features
            macs[owners[1]] += times * int(np.prod(out.shape)) * per_output
        elif name in _PASS and owners[0]:
            owner[eqn.outvars[0]] = owners[0]
        for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
            sub = eqn.params.get(key)
            if sub is not None and any(owners):
                sub = getattr(sub, "jaxpr", sub)
                inner_owner = {v: o for v, o in zip(sub.invars, owners) if o}
                _count_macs(sub, inner_owner, macs, times * eqn.params.get("length", 1))
