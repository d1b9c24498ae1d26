"""How each primitive ties the hidden-unit axes of its inputs and outputs.

A node is ``(value, axis, outer, inner)``: the middle factor of ``axis`` read as
``(outer, n, inner)``. For a node met at one side of an equation a rule returns the
nodes that must carry the same permutation (the equation is then equivariant to it),
or a string: why the equation is not equivariant, and the node is left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from jaxprune.rebasin._jaxpr import Eqn

Node = tuple[int, int, int, int]
# A reason that starts with SILENT marks an axis that is not a hidden-unit axis at all (a
# conv window, a spatial axis): left out without a note.
SILENT = "~"
Result = list[Node] | str

ELEMENTWISE = frozenset(
    """abs acos acosh add and asin asinh atan atan2 atanh cbrt ceil clamp conj convert_element_type
    copy copy_p cos cosh digamma div eq erf erf_inv erfc exp exp2 expm1 floor ge gt imag
    integer_pow is_finite le lgamma log log1p logistic lt max min mul ne neg nextafter not or
    pow real reduce_precision rem round rsqrt select_n sign sin sinh sqrt square stop_gradient
    sub tan tanh xor""".split()
)
# Reductions invariant to any order of the reduced axes.
REDUCTIONS = frozenset(
    "reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor".split()
)


def related(
    eqn: Eqn, shapes: dict[int, tuple[int, ...]], node: Node, side: str, pos: int
) -> Result:
    """The nodes tied to ``node``, which is input (``side="in"``) or output ``pos`` of ``eqn``."""
    name = eqn.primitive.name
    _, axis, o, i = node
    if name in ELEMENTWISE:
        return _same_axis(eqn, shapes, node)
    rule = _RULES.get(name)
    if rule is None:
        return f"{name} (not known to preserve unit order)"
    return rule(eqn, shapes, node, side, pos)


def _map(
    eqn: Eqn, node: Node, side: str, fwd: dict[int, int | None], bwd: dict[int, int]
) -> Result:
    """A rule from an axis map between input 0 and output 0: ``fwd`` input -> output axis
    (None: accepted without a tie), ``bwd`` output -> input axis (missing: accepted)."""
    _, axis, o, i = node
    if side == "in":
        if axis not in fwd:
            return f"{eqn.primitive.name} reorders axis {axis}"
        out = fwd[axis]
        return [] if out is None else [(eqn.outs[0], out, o, i)]
    if axis not in bwd:
        return []
    return [(eqn.ins[0], bwd[axis], o, i)]


def _transpose(eqn, shapes, node, side, pos):
    perm = eqn.params["permutation"]
    return _map(
        eqn, node, side, {a: j for j, a in enumerate(perm)}, {j: a for j, a in enumerate(perm)}
    )


def _reduce(eqn, shapes, node, side, pos):
    axes = set(eqn.params["axes"])
    keep = [a for a in range(len(shapes[eqn.ins[0]])) if a not in axes]
    fwd: dict[int, int | None] = {a: j for j, a in enumerate(keep)}
    fwd.update({a: None for a in axes})
    return _map(eqn, node, side, fwd, {j: a for j, a in enumerate(keep)})


def _argreduce(eqn, shapes, node, side, pos):
    axes = set(eqn.params["axes"])
    keep = [a for a in range(len(shapes[eqn.ins[0]])) if a not in axes]
    return _map(
        eqn, node, side, {a: j for j, a in enumerate(keep)}, {j: a for j, a in enumerate(keep)}
    )


def _squeeze(eqn, shapes, node, side, pos):
    dims = set(eqn.params["dimensions"])
    keep = [a for a in range(len(shapes[eqn.ins[0]])) if a not in dims]
    return _map(
        eqn, node, side, {a: j for j, a in enumerate(keep)}, {j: a for j, a in enumerate(keep)}
    )


def _broadcast(eqn, shapes, node, side, pos):
    if side == "in" and pos > 0:
        return "broadcast_in_dim with a dynamic shape"
    src, dst = shapes[eqn.ins[0]], shapes[eqn.outs[0]]
    fwd, bwd = {}, {}
    for a, b in enumerate(eqn.params["broadcast_dimensions"]):
        if src[a] == dst[b]:
            fwd[a], bwd[b] = b, a
    return _map(eqn, node, side, fwd, bwd)


def _axiswise(eqn, shapes, node, side, pos, touched: Sequence[int]) -> Result:
    """Every axis not in ``touched`` passes through unchanged between all the operands and
    results of the same rank (slices, pads, concatenations, cumulative ops)."""
    _, axis, o, i = node
    if axis in touched:
        return f"{eqn.primitive.name} along axis {axis}"
    return _same_axis(eqn, shapes, node)


def _same_axis(eqn: Eqn, shapes: dict[int, tuple[int, ...]], node: Node) -> list[Node]:
    """The node's axis in every operand and result of the same rank and size there; a
    scalar, or a size-1 axis broadcast against it, is constant along the units."""
    v0, axis, o, i = node
    rank, size = len(shapes[v0]), shapes[v0][axis]
    vals = list(eqn.ins) + eqn.outs
    return [(v, axis, o, i) for v in vals if len(shapes[v]) == rank and shapes[v][axis] == size]


def _slice(eqn, shapes, node, side, pos):
    shape = shapes[eqn.ins[0]]
    p = eqn.params
    strides = p.get("strides") or (1,) * len(shape)
    touched = [
        a
        for a in range(len(shape))
        if p["start_indices"][a] != 0 or p["limit_indices"][a] != shape[a] or strides[a] != 1
    ]
    return _axiswise(eqn, shapes, node, side, pos, touched)


def _pad(eqn, shapes, node, side, pos):
    if side == "in" and pos == 1:
        return []  # the padding value is a scalar
    touched = [a for a, cfg in enumerate(eqn.params["padding_config"]) if tuple(cfg) != (0, 0, 0)]
    r = _axiswise(eqn, shapes, node, side, pos, touched)
    return r if isinstance(r, str) else [n for n in r if n[0] in (eqn.ins[0], eqn.outs[0])]


def _concatenate(eqn, shapes, node, side, pos):
    return _axiswise(eqn, shapes, node, side, pos, [eqn.params["dimension"]])


def _cumulative(eqn, shapes, node, side, pos):
    return _axiswise(eqn, shapes, node, side, pos, [eqn.params["axis"]])


def _split(eqn, shapes, node, side, pos):
    return _axiswise(eqn, shapes, node, side, pos, [eqn.params["axis"]])


def _sort(eqn, shapes, node, side, pos):
    return _axiswise(eqn, shapes, node, side, pos, [eqn.params["dimension"]])


def _rev(eqn, shapes, node, side, pos):
    return _axiswise(eqn, shapes, node, side, pos, list(eqn.params["dimensions"]))


def _dot_general(eqn, shapes, node, side, pos):
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    lhs, rhs = eqn.ins
    lr, rr = len(shapes[lhs]), len(shapes[rhs])
    lfree = [a for a in range(lr) if a not in lc and a not in lb]
    rfree = [a for a in range(rr) if a not in rc and a not in rb]
    out = eqn.outs[0]
    # (value, axis) pairs that carry one unit order together.
    ties = [[(lhs, a), (rhs, b)] for a, b in zip(lc, rc)]
    ties += [[(lhs, a), (rhs, b), (out, j)] for j, (a, b) in enumerate(zip(lb, rb))]
    ties += [[(lhs, a), (out, len(lb) + j)] for j, a in enumerate(lfree)]
    ties += [[(rhs, a), (out, len(lb) + len(lfree) + j)] for j, a in enumerate(rfree)]
    return _from_ties(eqn, ties, node, side, pos)


def _from_ties(eqn, ties, node, side, pos, silent: bool = False) -> Result:
    v = (eqn.ins if side == "in" else eqn.outs)[pos]
    _, axis, o, i = node
    for tie in ties:
        if (v, axis) in tie:
            return [(w, b, o, i) for w, b in tie if w is not None]
    return (SILENT if silent else "") + f"{eqn.primitive.name} mixes axis {axis}"


def _conv(eqn, shapes, node, side, pos):
    dn = eqn.params["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    lhs, rhs = eqn.ins
    out = eqn.outs[0]
    groups = eqn.params["feature_group_count"]
    if eqn.params["batch_group_count"] != 1:
        return "conv_general_dilated with batch groups"
    ties = [[(lhs, lhs_spec[0]), (out, out_spec[0])]]
    if groups == 1:
        ties += [[(lhs, lhs_spec[1]), (rhs, rhs_spec[1])], [(rhs, rhs_spec[0]), (out, out_spec[1])]]
    elif (
        shapes[rhs][rhs_spec[1]] == 1
        and shapes[rhs][rhs_spec[0]] == groups == shapes[lhs][lhs_spec[1]]
    ):
        ties += [[(lhs, lhs_spec[1]), (rhs, rhs_spec[0]), (out, out_spec[1])]]  # depthwise
    else:
        return "grouped conv_general_dilated"
    return _from_ties(eqn, ties, node, side, pos, silent=True)  # the rest: window, spatial


def _window(eqn, shapes, node, side, pos):
    """Pooling: axes whose window is one element wide pass through; the others are spatial."""
    p = eqn.params
    if len(eqn.ins) != 1 or len(eqn.outs) != 1:
        return "reduce_window over several operands"
    rank = len(shapes[eqn.ins[0]])
    through = {
        a: a
        for a in range(rank)
        if p["window_dimensions"][a] == 1
        and p["window_strides"][a] == 1
        and tuple(p["padding"][a]) == (0, 0)
        and p["base_dilation"][a] == 1
        and p["window_dilation"][a] == 1
    }
    if node[1] not in through:
        return SILENT + "a pooled axis"
    return _map(eqn, node, side, through, through)


def _reshape(eqn, shapes, node, side, pos):
    if side == "in" and pos > 0:
        return "reshape with a dynamic shape"
    src, dst = shapes[eqn.ins[0]], shapes[eqn.outs[0]]
    if side == "out":
        src, dst = dst, src
    target = eqn.outs[0] if side == "in" else eqn.ins[0]
    found = _reshape_slot(src, dst, node[1], node[2], node[3])
    if found is None:
        return f"reshape {src} -> {dst} splits the units of axis {node[1]}"
    return [(target, *found)]


def _reshape_slot(src, dst, axis, outer, inner) -> tuple[int, int, int] | None:
    """Where the unit slot ``(outer, n, inner)`` of ``src[axis]`` lands in ``dst``."""
    n = src[axis] // (outer * inner)
    # Flat element strides: the slot occupies stride `inner * after(axis)` in the
    # row-major flattening, with `n` values.
    after_src = math.prod(src[axis + 1 :])
    stride = inner * after_src
    for b in range(len(dst)):
        after_dst = math.prod(dst[b + 1 :])
        if stride % after_dst:
            continue
        inner_b = stride // after_dst
        if dst[b] % (inner_b * n):
            continue
        outer_b = dst[b] // (inner_b * n)
        # The blocks above the slot must also agree: same number of flat elements before.
        if math.prod(src[:axis]) * outer == math.prod(dst[:b]) * outer_b:
            return b, outer_b, inner_b
    return None


_RULES = {
    "reduce_window_max": _window,
    "reduce_window_min": _window,
    "reduce_window_sum": _window,
    "transpose": _transpose,
    "broadcast_in_dim": _broadcast,
    "reshape": _reshape,
    "squeeze": _squeeze,
    "dot_general": _dot_general,
    "conv_general_dilated": _conv,
    "slice": _slice,
    "pad": _pad,
    "concatenate": _concatenate,
    "cumsum": _cumulative,
    "cumprod": _cumulative,
    "cummax": _cumulative,
    "cummin": _cumulative,
    "cumlogsumexp": _cumulative,
    "split": _split,
    "sort": _sort,
    "rev": _rev,
    "argmax": _argreduce,
    "argmin": _argreduce,
    **{name: _reduce for name in REDUCTIONS},
}
