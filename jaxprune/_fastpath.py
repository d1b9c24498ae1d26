"""The XLA-specific fast paths, fenced in one place, each with a plain reference path.

Everything here computes what a straightforward formula computes (``lax.cond``,
``where``), only faster on some backend. ``with reference_paths():`` turns every
fast path off while a step is traced, so tests can check that both agree; select
and the transforms ask :func:`backend` (not ``jax.default_backend``) which backend
they trace for.

Steps that happen now and then, without copying the optimizer state every step.

A transform that sometimes does something else instead of the inner optimizer's
step (RigL rewires its mask and skips the step) must not slow the ordinary steps.
Two patterns cost a copy of every per-parameter state leaf on every step when the
state is donated, as it is in a jitted training step:

- ``lax.cond(do, rare, lambda: state)`` when the old state is read again after
  it (RigL needs the old mask to zero the statistics of changed entries): the
  conditional's outputs are new buffers, so the donated state is copied;
- ``where(skip, old_state, inner.update(...).state)``: the update ``u`` and the
  selection both read the old state, while the selection overwrites it in place,
  so XLA first copies it.

:func:`run_if` runs the rare work in a ``while_loop`` of at most one iteration
(a loop's carry is updated in place; on a GPU a ``lax.cond``, see there), and
:func:`skippable_update` computes ``u`` from the selected state wherever the inner
optimizer's ``u`` depends on its old state only through the new state (SGD with
momentum, Adam, AdamW, ...), so the ordinary step is the plain optimizer step; other
optimizers (Lion, whose update reads the old momentum) run their step in a
:func:`run_if` instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import optax

Carry = TypeVar("Carry")

_REFERENCE = [False]


@contextlib.contextmanager
def reference_paths() -> Iterator[None]:
    """While active, steps traced take the plain reference paths (no fast path).

    Example:
      >>> with reference_paths():
      ...     backend()
      'reference'
    """
    _REFERENCE.append(True)
    try:
        yield
    finally:
        _REFERENCE.pop()


def backend() -> str:
    """The backend a fast path is chosen for: ``jax.default_backend()`` (read when a
    step is traced), or ``"reference"`` inside :func:`reference_paths`."""
    return "reference" if _REFERENCE[-1] else jax.default_backend()


def on_cpu() -> bool:
    """Whether the CPU's fast paths apply (False inside :func:`reference_paths`)."""
    return backend() == "cpu"


def on_accelerator() -> bool:
    """Whether an accelerator's fast paths apply (False inside :func:`reference_paths`)."""
    return backend() not in ("cpu", "reference")


def run_if(pred: Any, fn: Callable[[Carry], Carry], carry: Carry) -> Carry:
    """``fn(carry)`` if ``pred`` else ``carry``, updating ``carry`` in place.

    A ``while_loop`` of at most one iteration: unlike ``lax.cond`` it reuses the
    carry's buffers, so when ``pred`` is False nothing is copied. ``fn`` must
    return a carry of the same structure, shapes and dtypes.

    On a GPU it is a ``lax.cond``: XLA:GPU copies a loop's predicate to the host
    before every iteration and waits for it, which stalls the launch of the rest of
    the step, and the cond measured faster there (BENCHMARKS.md). The backend is
    :func:`backend`, read when the step is traced. The cond still waits for its
    predicate on the host: where ``fn`` reads values made late in the step (RigL's
    gradients), the host waits for the forward and backward passes before it
    launches the rest of the step.

    Example:
      >>> import jax.numpy as jnp
      >>> run_if(jnp.array(True), lambda x: x + 1, jnp.zeros(2)).tolist()
      [1.0, 1.0]
      >>> run_if(jnp.array(False), lambda x: x + 1, jnp.zeros(2)).tolist()
      [0.0, 0.0]
    """

    if backend() in ("gpu", "reference"):
        return jax.lax.cond(pred, fn, lambda c: c, carry)

    def body(c):
        return jnp.zeros((), bool), fn(c[1])

    return jax.lax.while_loop(lambda c: c[0], body, (jnp.asarray(pred, bool), carry))[1]


def _same_layout(a: Any, b: Any) -> bool:
    """Same tree structure and, leaf by leaf, the same shape and dtype."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    return ta == tb and all(
        jnp.shape(x) == jnp.shape(y) and jnp.result_type(x) == jnp.result_type(y)
        for x, y in zip(la, lb)
    )


def skippable_update(
    inner: optax.GradientTransformationExtraArgs,
    skip: Any,
    grads: Any,
    state: Any,
    params: Any,
    **extra_args: Any,
) -> tuple[Any, Any]:
    """``inner.update(grads, state, params)``, or ``state`` unchanged where ``skip``.

    Returns ``(u, new_state)``. When ``skip`` is True the new state is ``state``
    and ``u`` is left unspecified: the caller discards it (``where(skip, 0, u)``).

    The inner update is traced once to a jaxpr. If its ``u`` depends on the old
    state only through the new state's values, it is evaluated with the new state
    replaced by the selected one, ``where(skip, state, new)``: the skip then costs
    nothing on the steps that do not skip. Otherwise the step runs under
    :func:`run_if`, and as a last resort (``u`` shaped unlike ``grads``) the state
    is selected, which copies it.

    Raises:
      ValueError: the inner state's structure, shapes or dtypes change in a step.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> tx = optax.with_extra_args_support(optax.sgd(1.0, momentum=0.5))
      >>> p = {"w": jnp.ones(2)}
      >>> g = {"w": jnp.ones(2)}
      >>> u, s = skippable_update(tx, jnp.array(True), g, tx.init(p), p)
      >>> s[0].trace["w"].tolist()
      [0.0, 0.0]
      >>> u, s = skippable_update(tx, jnp.array(False), g, tx.init(p), p)
      >>> u["w"].tolist(), s[0].trace["w"].tolist()
      ([-1.0, -1.0], [1.0, 1.0])
    """
    skip = jnp.asarray(skip, bool)
    if backend() == "reference":
        u, new = inner.update(grads, state, params, **extra_args)
        return u, jax.tree_util.tree_map(lambda a, b: jnp.where(skip, a, b), state, new)
    g_leaves = jax.tree_util.tree_leaves(grads)
    s_leaves = jax.tree_util.tree_leaves(state)
    p_leaves, p_tree = jax.tree_util.tree_flatten(params)
    g_tree, s_tree = jax.tree_util.tree_structure(grads), jax.tree_util.tree_structure(state)
    n_g, n_s = len(g_leaves), len(s_leaves)

    def flat_update(*leaves):
        g = g_tree.unflatten(leaves[:n_g])
        s = s_tree.unflatten(leaves[n_g : n_g + n_s])
        p = p_tree.unflatten(leaves[n_g + n_s :])
        return inner.update(g, s, p, **extra_args)

    closed, (u_shape, s_shape) = jax.make_jaxpr(flat_update, return_shape=True)(
        *g_leaves, *s_leaves, *p_leaves
    )
    if not _same_layout(s_shape, state):
        raise ValueError(
            "The inner optimizer's state changes its structure, shapes or dtypes from one "
            f"step to the next (in: {jax.tree_util.tree_map(jax.typeof, state)}, out: "
            f"{s_shape}); a step that can be skipped needs a state of fixed layout."
        )
    jaxpr = closed.jaxpr
    n_u = len(jax.tree_util.tree_leaves(u_shape))
    u_vars, s_vars = jaxpr.outvars[:n_u], jaxpr.outvars[n_u:]
    if _reads_old_state(jaxpr, jaxpr.invars[n_g : n_g + n_s], s_vars, u_vars):
        if _same_layout(u_shape, grads):

            def step(carry):
                u, new = inner.update(carry[1], carry[0], params, **extra_args)
                return new, u

            new, u = run_if(~skip, step, (state, grads))
            return u, new
        u, new = inner.update(grads, state, params, **extra_args)
        return u, jax.tree_util.tree_map(lambda a, b: jnp.where(skip, a, b), state, new)
    # Evaluate the jaxpr, replacing each new-state value by the selected one as soon
    # as it is computed, so that u is computed from what is written back.
    selected = {}
    for v, old in zip(s_vars, s_leaves):
        if isinstance(v, jex.Var):
            selected.setdefault(v, old)
    env: dict[Any, Any] = {}

    def read(v):
        return v.val if isinstance(v, jex.Literal) else env[v]

    def write(v, value):
        env[v] = jnp.where(skip, selected[v], value) if v in selected else value

    for v, c in zip(jaxpr.constvars, closed.consts):
        write(v, c)
    for v, x in zip(jaxpr.invars, [*g_leaves, *s_leaves, *p_leaves]):
        write(v, x)
    for eqn in jaxpr.eqns:
        with eqn.ctx.manager:
            out = eqn.primitive.bind(
                *map(read, eqn.invars), **eqn.primitive.get_bind_params(eqn.params)
            )
        for v, x in zip(eqn.outvars, out if eqn.primitive.multiple_results else [out]):
            write(v, x)
    u = jax.tree_util.tree_structure(u_shape).unflatten([read(v) for v in u_vars])
    # The very values u was computed from, so XLA reuses them rather than
    # recomputing the new state from the old one (which would need a copy).
    new = [
        read(v) if selected.get(v) is old else jnp.where(skip, old, read(v))
        for v, old in zip(s_vars, s_leaves)
    ]
    return u, s_tree.unflatten(new)


def _reads_old_state(jaxpr: Any, state_in: list, state_out: list, u_out: list) -> bool:
    """Whether some output in ``u_out`` depends on a non-scalar of ``state_in`` other
    than through ``state_out`` (the jaxpr's inputs and outputs for the old and the
    new state). Scalars (step counts read by schedules) cost nothing to copy."""
    cut = {v for v in state_out if isinstance(v, jex.Var)}
    tainted = {v for v in state_in if v not in cut and v.aval.ndim > 0}
    for eqn in jaxpr.eqns:
        if any(isinstance(v, jex.Var) and v in tainted for v in eqn.invars):
            tainted.update(v for v in eqn.outvars if v not in cut)
    return any(isinstance(v, jex.Var) and v in tainted for v in u_out)
