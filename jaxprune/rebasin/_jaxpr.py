"""A traced function as one flat list of primitive equations (calls inlined)."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend as jex
import numpy as np

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
    """One primitive application: inputs and outputs as value ids (None: a literal)."""

    primitive: Any
    params: dict[str, Any]
    ins: list[int | None]
    outs: list[int]


@dataclasses.dataclass
class Program:
    """A flat program: its equations, the shape of every value, and which values are
    the variables' leaves, the other inputs, the outputs and the captured constants."""

    eqns: list[Eqn]
    shapes: dict[int, tuple[int, ...]]
    dtypes: dict[int, Any]
    leaves: list[int]
    inputs: list[int]
    outputs: list[int]
    consts: list[int]
    literals: dict[int, Any]


def trace(fn: Callable[..., Any], leaves: Sequence[Any], args: Sequence[Any]) -> Program:
    """Traces ``fn(leaves, *args)`` and inlines every call into one flat `Program`."""
    closed = jax.make_jaxpr(fn)(list(leaves), *args)
    counter = itertools.count()
    prog = Program([], {}, {}, [], [], [], [], {})

    def new(var: Any) -> int:
        vid = next(counter)
        prog.shapes[vid] = tuple(getattr(var.aval, "shape", ()))
        prog.dtypes[vid] = getattr(var.aval, "dtype", None)
        return vid

    def read(env: dict, atom: Any) -> int | None:
        if isinstance(atom, jex.core.Literal):
            if np.ndim(atom.val) == 0:
                return None
            vid = new(atom)  # a non-scalar literal: a constant the permutations must not meet
            prog.consts.append(vid)
            prog.literals[vid] = atom.val
            return vid
        return env[atom]

    def inline(jaxpr: Any, consts: Sequence[Any], ins: list[int | None]) -> list[int | None]:
        env: dict[Any, int] = {}
        for var in jaxpr.constvars:
            env[var] = new(var)
            prog.consts.append(env[var])
        for var, vid in zip(jaxpr.invars, ins):
            env[var] = new(var) if vid is None else vid
            if vid is None:
                prog.consts.append(env[var])
        for eqn in jaxpr.eqns:
            name = eqn.primitive.name
            sub = eqn.params.get(_CALLS.get(name, ""), None)
            in_ids = [read(env, a) for a in eqn.invars]
            if sub is not None:
                inner = sub.jaxpr if hasattr(sub, "jaxpr") else sub
                inner_consts = getattr(sub, "consts", ())
                if len(inner.invars) == len(in_ids):
                    results = inline(inner, inner_consts, in_ids)
                    for var, vid in zip(eqn.outvars, results):
                        env[var] = new(var) if vid is None else vid
                        if vid is None:
                            prog.consts.append(env[var])
                    continue
            outs = [new(v) for v in eqn.outvars]
            env.update(zip(eqn.outvars, outs))
            prog.eqns.append(Eqn(eqn.primitive, dict(eqn.params), in_ids, outs))
        return [read(env, a) for a in jaxpr.outvars]

    jaxpr = closed.jaxpr
    top_ins = [new(v) for v in jaxpr.invars]
    prog.leaves = top_ins[: len(leaves)]
    prog.inputs = top_ins[len(leaves) :]
    outs = inline(jaxpr, closed.consts, top_ins)
    prog.outputs = [o for o in outs if o is not None]
    return prog
