"""A traced function as one flat list of primitive equations (calls inlined)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend as jex

# Call-like primitives whose body is inlined: one program, every axis visible.
_CALLS = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "remat": "jaxpr",
    "checkpoint": "jaxpr",
}


@dataclasses.dataclass
class Eqn:
    """One primitive application: its inputs and outputs as value ids."""

    primitive: Any
    params: dict[str, Any]
    ins: list[int]
    outs: list[int]


@dataclasses.dataclass
class Program:
    """A flat program: its equations, the shape of every value, and which values are
    the variables' leaves, the other inputs, the outputs and the constants (literals and
    captured arrays, with their values)."""

    eqns: list[Eqn]
    shapes: dict[int, tuple[int, ...]]
    dtypes: dict[int, Any]
    leaves: list[int]
    inputs: list[int]
    outputs: list[int]
    out_tree: Any
    values: dict[int, Any]

    @property
    def consts(self) -> list[int]:
        return list(self.values)


def trace(fn: Callable[..., Any], leaves: Sequence[Any], args: Sequence[Any]) -> Program:
    """Traces ``fn(leaves, *args)`` and inlines every call into one flat `Program`."""
    closed, out_shape = jax.make_jaxpr(fn, return_shape=True)(list(leaves), *args)
    counter = itertools.count()
    prog = Program([], {}, {}, [], [], [], jax.tree_util.tree_structure(out_shape), {})

    def new(aval: Any) -> int:
        vid = next(counter)
        prog.shapes[vid] = tuple(getattr(aval, "shape", ()))
        prog.dtypes[vid] = getattr(aval, "dtype", None)
        return vid

    def constant(aval: Any, value: Any) -> int:
        vid = new(aval)
        prog.values[vid] = value
        return vid

    def read(env: dict, atom: Any) -> int:
        if isinstance(atom, jex.core.Literal):
            return constant(atom.aval, atom.val)
        return env[atom]

    def inline(jaxpr: Any, consts: Sequence[Any], ins: list[int]) -> list[int]:
        env: dict[Any, int] = {}
        for var, value in zip(jaxpr.constvars, consts):
            env[var] = constant(var.aval, value)
        env.update(zip(jaxpr.invars, ins))
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            sub = eqn.params.get(_CALLS.get(name, ""), None)
            in_ids = [read(env, a) for a in eqn.invars]
            if sub is not None:
                inner = sub.jaxpr if hasattr(sub, "jaxpr") else sub
                if len(inner.invars) == len(in_ids):
                    results = inline(inner, getattr(sub, "consts", ()), in_ids)
                    env.update(zip(eqn.outvars, results))
                    continue
            outs = [new(v.aval) for v in eqn.outvars]
            env.update(zip(eqn.outvars, outs))
            prog.eqns.append(Eqn(eqn.primitive, dict(eqn.params), in_ids, outs))
        return [read(env, a) for a in jaxpr.outvars]

    jaxpr = closed.jaxpr
    top_ins = [new(v.aval) for v in jaxpr.invars]
    prog.leaves = top_ins[: len(leaves)]
    prog.inputs = top_ins[len(leaves) :]
    prog.outputs = inline(jaxpr, closed.consts, top_ins)
    return prog


def evaluate(
    prog: Program,
    leaves: Sequence[Any],
    args: Sequence[Any],
    hook: Callable[[int, Any], Any] | None = None,
) -> Any:
    """Runs ``prog`` on new leaves and arguments (same shapes as traced); ``hook(k, value)``
    may replace the inputs of equation ``k`` (its first input) before it runs."""
    env: dict[int, Any] = dict(prog.values)
    env.update(zip(prog.leaves, leaves))
    env.update(zip(prog.inputs, jax.tree_util.tree_leaves(list(args))))
    for k, eqn in enumerate(prog.eqns):
        vals = [env[v] for v in eqn.ins]
        if hook is not None:
            vals = hook(k, vals)
        out = eqn.primitive.bind(*vals, **eqn.params)
        env.update(zip(eqn.outs, out if eqn.primitive.multiple_results else [out]))
    return jax.tree_util.tree_unflatten(prog.out_tree, [env[v] for v in prog.outputs])
