"""`permutation_spec`: the hidden-unit groups of a function, found in its jaxpr."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import _tree
from jaxprune.rebasin import _rules
from jaxprune.rebasin._jaxpr import Program, trace
from jaxprune.rebasin._spec import AxisRef, PermutationGroup, PermutationSpec
from jaxprune.typing import PyTree

__all__ = ["permutation_spec"]

Node = _rules.Node
_INPUT, _OUTPUT = "reaches an input of the function", "reaches the function's output"
_BOUNDARY = (_INPUT, _OUTPUT)


def permutation_spec(
    apply_fn: Callable[..., Any], variables: PyTree, *example_args: Any
) -> PermutationSpec:
    """The hidden-unit permutations under which ``apply_fn(variables, *args)`` is unchanged.

    Traces the function once (a jaxpr, every call inlined) and ties together the axes
    one permutation must move: a Dense or Conv layer's output axis with its bias, the
    norm's scale, bias and running statistics, and the next layer's input axis; every
    layer that adds into one residual stream; a channel permutation through a flatten
    (the Dense kernel after it gets a strided slot, see `AxisRef`). An axis that meets
    anything not known to preserve the order of units (the inputs, the outputs, a
    constant array, a pad or slice along it, a concatenation, control flow, an unknown
    primitive) is left out together with everything tied to it, so the spec is smaller,
    never wrong; ``spec.left_out`` says what was left out and why.

    Args:
      apply_fn: ``apply_fn(variables, *example_args)``, e.g. a Linen ``model.apply``, or
        ``lambda state, x: nnx.merge(graphdef, state)(x)`` for an NNX model (trace it in
        eval mode). Plain jax functions of a dict work too.
      variables: the pytree the function reads: a Linen variables dict (``params`` and
        ``batch_stats``), an NNX ``State``, a dict of arrays.
      *example_args: example inputs (a batch); only their shapes and dtypes matter.

    Returns:
      A `PermutationSpec`; ``print(spec)`` lists every permutation, its size and the
      ``(path, axis)`` pairs it moves.

    Example:
      >>> import jax.numpy as jnp
      >>> from jaxprune import rebasin
      >>> def mlp(v, x):
      ...     h = jnp.maximum(x @ v["l1"]["w"] + v["l1"]["b"], 0)
      ...     return h @ v["l2"]["w"]
      >>> v = {"l1": {"w": jnp.ones((3, 8)), "b": jnp.ones(8)}, "l2": {"w": jnp.ones((8, 2))}}
      >>> print(rebasin.permutation_spec(mlp, v, jnp.ones((1, 3))))
      PermutationSpec: 1 permutations
        l1: size 8, moves 3 axes
          l1/b[0]
          l1/w[1]
          l2/w[0]
    """
    if not callable(apply_fn):
        raise TypeError(
            f"permutation_spec: apply_fn must be callable as apply_fn(variables, *args); "
            f"got {type(apply_fn).__name__}."
        )
    if not example_args:
        raise ValueError(
            "permutation_spec needs at least one example input (a batch) after the "
            "variables: permutation_spec(apply_fn, variables, x)."
        )
    if not jax.tree_util.tree_leaves(variables):
        raise ValueError("permutation_spec: `variables` has no leaves.")
    return analyse(apply_fn, variables, example_args)[0]


def analyse(
    apply_fn: Callable[..., Any], variables: PyTree, args: tuple[Any, ...]
) -> tuple[PermutationSpec, Program, dict[Node, str], Callable[[Node], Node | None]]:
    """The spec, the flat program, group name by union-find root, and the root of a node
    (None for a node no permutation reaches): what the probes of `_probe` need."""
    paths, leaves, treedef = _tree.leaves_with_paths(variables)
    prog = trace(
        lambda ls, *a: apply_fn(jax.tree_util.tree_unflatten(treedef, ls), *a), leaves, args
    )
    spec, found, names = _groups(prog, paths)
    return spec, prog, names, lambda n: found.find(n) if n in found.parent else None


def _groups(prog: Program, paths: list[str]) -> tuple[PermutationSpec, _Propagation, dict]:
    found = _Propagation(prog)
    for vid in prog.leaves:
        if jnp.issubdtype(prog.dtypes[vid], jnp.inexact):
            for axis, size in enumerate(prog.shapes[vid]):
                if size > 1:
                    found.visit((vid, axis, 1, 1))
    found.run()

    path_of = {vid: paths[k] for k, vid in enumerate(prog.leaves)}
    order = {p: k for k, p in enumerate(paths)}
    components: dict[Node, list[Node]] = {}
    for node in found.parent:
        components.setdefault(found.find(node), []).append(node)
    groups, left_out = [], []
    for nodes in components.values():
        members = sorted(
            (n for n in nodes if n[0] in path_of), key=lambda n: (order[path_of[n[0]]], n[1])
        )
        if not members:
            continue
        refs = [AxisRef(path_of[v], a, o, i) for v, a, o, i in members]
        reasons = [found.poisoned[n] for n in nodes if n in found.poisoned]
        if reasons:
            # Axes that meet the function's inputs or outputs are not hidden: no note.
            hidden = [r for r in reasons if r not in _BOUNDARY and not r.startswith(_rules.SILENT)]
            if hidden and len(reasons) == len(hidden):
                left_out.append((refs, hidden[0]))
            continue
        size = prog.shapes[members[0][0]][members[0][1]] // (members[0][2] * members[0][3])
        first_use = min(found.first_use.get(n[0], len(prog.eqns)) for n in members)
        groups.append((first_use, refs, size, found.find(members[0])))

    # A leaf axis moved by two groups (or twice by one) would be permuted twice: drop them.
    counts: dict[tuple[str, int], list[int]] = {}
    for k, (_, refs, _, _) in enumerate(groups):
        for ref in refs:
            counts.setdefault((ref.path, ref.axis), []).append(k)
    clash = {k for ks in counts.values() if len(ks) > 1 for k in ks}
    for k in sorted(clash):
        left_out.append((groups[k][1], "the same axis is moved by two permutations"))
    groups = sorted((g for k, g in enumerate(groups) if k not in clash), key=lambda g: g[0])

    named: dict[str, PermutationGroup] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    names: dict[Node, str] = {}
    for _, refs, size, root in groups:
        for ref in refs:
            shapes[ref.path] = prog.shapes[prog.leaves[order[ref.path]]]
        used = {
            r.path: found.first_use.get(prog.leaves[order[r.path]], len(prog.eqns)) for r in refs
        }
        name = _name(sorted(refs, key=lambda r: used[r.path]), shapes)
        base, k = name, 1
        while name in named:
            k += 1
            name = f"{base}#{k}"
        named[name] = PermutationGroup(name, size, tuple(refs))
        names[root] = name
    # A leaf axis that some group moves through a slot (a flatten) needs no note.
    covered = {(r.path, r.axis) for _, refs, _, _ in groups for r in refs}
    left_out = [
        (refs, why) for refs, why in left_out if any((r.path, r.axis) not in covered for r in refs)
    ]
    notes = tuple(
        f"{', '.join(map(str, refs[:3]))}{' ...' if len(refs) > 3 else ''}: {why}"
        for refs, why in left_out
    )
    return PermutationSpec(named, shapes, notes), found, names


def _name(refs: list[AxisRef], shapes: dict[str, tuple[int, ...]]) -> str:
    """A readable name: the module whose kernel output axis the group is (``refs`` in the
    order the function meets them: a residual stream is named after its first layer)."""
    for ref in refs:
        shape = shapes[ref.path]
        if len(shape) >= 2 and ref.axis == len(shape) - 1:
            parts = ref.path.split("/")
            return "/".join(parts[:-1]) if len(parts) > 1 else ref.path
    return f"{refs[0].path}[{refs[0].axis}]"


class _Propagation:
    """Union-find over nodes, grown from the leaves' axes through every equation."""

    def __init__(self, prog: Program):
        self.prog = prog
        self.parent: dict[Node, Node] = {}
        self.poisoned: dict[Node, str] = {}
        self.todo: list[Node] = []
        self.uses: dict[int, list[tuple[int, str, int]]] = {}
        self.first_use: dict[int, int] = {}
        for k, eqn in enumerate(prog.eqns):
            for pos, v in enumerate(eqn.ins):
                if v is not None:
                    self.uses.setdefault(v, []).append((k, "in", pos))
                    self.first_use.setdefault(v, k)
            for pos, v in enumerate(eqn.outs):
                self.uses.setdefault(v, []).append((k, "out", pos))
        self.boundary = {
            **{v: _INPUT for v in prog.inputs},
            **{v: "reaches a constant array" for v in prog.consts},
            **{v: _OUTPUT for v in prog.outputs},
        }

    def find(self, node: Node) -> Node:
        root = node
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[node] != root:
            self.parent[node], node = root, self.parent[node]
        return root

    def visit(self, node: Node) -> None:
        if node not in self.parent:
            self.parent[node] = node
            self.todo.append(node)

    def union(self, a: Node, b: Node) -> None:
        self.visit(b)
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def run(self) -> None:
        shapes = self.prog.shapes
        while self.todo:
            node = self.todo.pop()
            vid = node[0]
            if vid in self.boundary:
                self.poisoned[node] = self.boundary[vid]
            elif vid not in self.uses:
                self.poisoned[node] = "not used by the function"
            for k, side, pos in self.uses.get(vid, ()):
                eqn = self.prog.eqns[k]
                tied = _rules.related(eqn, shapes, node, side, pos)
                if isinstance(tied, str):
                    self.poisoned.setdefault(node, tied)
                    continue
                for other in tied:
                    if other != node:
                        self.union(node, other)
